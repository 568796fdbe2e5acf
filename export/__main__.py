"""`python -m export --model DIR_OR_KERAS --out DIR [--formats ...] [--quantize ...] [--eval_data ...] [--overwrite]`."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from efficientnet_tf.errors import one_line
from efficientnet_tf.files import check_filesystem
from efficientnet_tf.training.loading import load_trained
from export.artifacts import FORMATS, QUANTIZE_CHOICES, check_min_agreement, export_trained, parse_list
from export.litert import QUANTIZATIONS
from export.source import calibration_images, held_out_images


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--model", "--model_dir", dest="model", required=True,
                        help="a training directory (its EMA weights) or a .keras file")
    parser.add_argument("--out", required=True, help="directory to create (atomically) with the artifacts")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {','.join(FORMATS)}")
    parser.add_argument("--quantize", default=",".join(QUANTIZATIONS),
                        help=f"LiteRT variants, comma-separated subset of {','.join(QUANTIZE_CHOICES)}; int8-auto keeps the "
                             "op types costing most agreement in float until --int8_min_agreement")
    parser.add_argument("--calibration_data", default="",
                        help="image folder or TFDS name for int8 calibration (default: the training data, else synthetic)")
    parser.add_argument("--calibration_images", type=int, default=128, help="how many images calibrate int8")
    parser.add_argument("--eval_data", default="",
                        help="held-out image folder (one subfolder per class) or TFDS name: every artifact's top-1 agreement "
                             "with Keras is reported on it, and int8-auto decides on it (default: the calibration images)")
    parser.add_argument("--eval_images", type=int, default=1000, help="at most this many --eval_data images (held in memory: 0.6 GB per 1000 at 224 px)")
    parser.add_argument("--int8_min_agreement", type=float, default=0.99, help="int8-auto's target top-1 agreement, in (0, 1]")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser.parse_args(argv)  # fmt: skip


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        formats = parse_list(args.formats, FORMATS, "--formats")
        quantize = parse_list(args.quantize, QUANTIZE_CHOICES, "--quantize")
        for flag, count in (("--calibration_images", args.calibration_images), ("--eval_images", args.eval_images)):
            if count < 1:
                raise ValueError(f"{flag} must be at least 1, got {count}.")
        check_min_agreement(args.int8_min_agreement, "--int8_min_agreement")
        check_filesystem(args.out, "--out")  # before the model is loaded and the images read
        trained = load_trained(args.model)
        calibration = calibration_images(trained, args.calibration_images, args.calibration_data or None)
        held_out = None
        if args.eval_data:
            try:
                held_out = held_out_images(trained, args.eval_data, args.eval_images)
            except ValueError as error:
                raise ValueError(f"--eval_data: {error}") from None
        print(f"Exporting {trained.model.name} ({len(trained.class_names)} classes, {trained.image_size} px, "
              f"{trained.family} preprocessing) to {args.out}")  # fmt: skip
        artifacts = export_trained(trained, args.out, formats=formats, quantize=quantize, calibration=calibration,
                                   held_out=held_out, int8_min_agreement=args.int8_min_agreement,
                                   overwrite=args.overwrite, log=print)  # fmt: skip
    except (ValueError, OSError) as error:
        print(f"export: error: {one_line(error)}", file=sys.stderr)
        return 2
    print(f"Wrote {len(artifacts)} artifacts to {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
