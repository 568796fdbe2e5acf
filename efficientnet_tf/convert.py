"""Converts an official checkpoint into our weights file or a whole ``.keras`` model.

    python -m efficientnet_tf.convert efficientnet-b0.tar.gz --model efficientnet-b0 --out b0.weights.h5

Prints each official variable with the variable of ours it fills, then the
summary line. The model keeps the checkpoint's class count (1000, or 21843 for
ImageNet-21k), so the file holds the official classifier too.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import keras

from efficientnet_tf import official
from efficientnet_tf.files import atomic_write, check_filesystem
from efficientnet_tf.model import get_model
from efficientnet_tf.registry import get_spec
from efficientnet_tf.weights import assign

_OUTPUTS = (".weights.h5", ".keras")


def convert(source: str, model_name: str, out: str, ema: bool = True, verbose: bool = True) -> keras.Model:
    """Reads the official checkpoint `source` into `model_name` and writes `out` atomically; returns the model."""
    if not out.endswith(_OUTPUTS):
        raise ValueError(f"--out {out!r} must end in .weights.h5 (weights only) or .keras (whole model).")
    check_filesystem(source, "source")
    check_filesystem(out, "--out")
    if not official.is_checkpoint(source):
        raise ValueError(
            f"{source!r} is not an official checkpoint; pass its directory, a model.ckpt-N prefix or the .tgz/.tar.gz archive."
        )
    spec = get_spec(model_name)
    backbone = get_model(spec.name, include_top=False)
    values, mapping = official.read_checkpoint(source, backbone, spec.name, ema=ema)  # Keyed alike for any head.
    kernel = values.get("predictions/kernel")
    model = get_model(spec.name, num_classes=kernel.shape[1]) if kernel is not None else backbone
    if verbose:
        print("\n".join(mapping))
    assign(model, values, source)
    writer = model.save_weights if out.endswith(".weights.h5") else model.save
    atomic_write(out, writer)
    print(f"wrote {out} ({'EMA' if ema else 'raw'} values)")
    return model


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m efficientnet_tf.convert", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="checkpoint directory, model.ckpt-N prefix, or .tgz/.tar.gz archive")
    parser.add_argument("--model", required=True, help="our model name, e.g. efficientnetv2-s")
    parser.add_argument("--out", required=True, help="output file: NAME.weights.h5 or NAME.keras")
    parser.add_argument("--raw", action="store_true", help="use the raw values, not the ExponentialMovingAverage ones")
    parser.add_argument("--quiet", action="store_true", help="print only the summary, not every mapped variable")
    args = parser.parse_args(argv)
    try:
        convert(args.source, args.model, os.fspath(args.out), ema=not args.raw, verbose=not args.quiet)
    except (ValueError, OSError) as error:
        print(f"convert: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
