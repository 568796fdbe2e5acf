"""`python -m export --model DIR_OR_KERAS --out DIR [--formats ...] [--quantize ...] [--overwrite]`."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from export.artifacts import FORMATS, export_trained, parse_list
from export.litert import QUANTIZATIONS
from export.source import calibration_images, load_trained


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--model", "--model_dir", dest="model", required=True,
                        help="a training directory (its EMA weights) or a .keras file")
    parser.add_argument("--out", required=True, help="directory to create (atomically) with the artifacts")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {','.join(FORMATS)}")
    parser.add_argument("--quantize", default=",".join(QUANTIZATIONS),
                        help=f"LiteRT variants, comma-separated subset of {','.join(QUANTIZATIONS)}")
    parser.add_argument("--calibration_data", default="",
                        help="image folder or TFDS name for int8 calibration (default: the training data, else synthetic)")
    parser.add_argument("--calibration_images", type=int, default=128, help="how many images calibrate int8")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser.parse_args(argv)  # fmt: skip


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        formats = parse_list(args.formats, FORMATS, "--formats")
        quantize = parse_list(args.quantize, QUANTIZATIONS, "--quantize")
        if args.calibration_images < 1:
            raise ValueError(f"--calibration_images must be at least 1, got {args.calibration_images}.")
        trained = load_trained(args.model)
        calibration = calibration_images(trained, args.calibration_images, args.calibration_data or None)
        print(f"Exporting {trained.model.name} ({len(trained.class_names)} classes, {trained.image_size} px, "
              f"{trained.family} preprocessing) to {args.out}")  # fmt: skip
        artifacts = export_trained(trained, args.out, formats=formats, quantize=quantize, calibration=calibration,
                                   overwrite=args.overwrite, log=print)  # fmt: skip
    except (ValueError, OSError) as error:
        print(f"export: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(f"Wrote {len(artifacts)} artifacts to {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
