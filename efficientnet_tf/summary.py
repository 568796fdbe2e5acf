"""Prints every named model's size and cost: ``python -m efficientnet_tf.summary``.

Each model is built (that is what makes the numbers trustworthy), so the
largest names take a few seconds each; pass names to print only those.
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterable, Iterator, Optional

import keras

from efficientnet_tf.flops import count_flops
from efficientnet_tf.model import get_model
from efficientnet_tf.registry import ModelSpec, get_spec, model_names


def _row(spec: ModelSpec) -> tuple:
    model = get_model(spec.name)
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    row = (spec.name, model.count_params(), trainable, count_flops(model, spec.eval_size) / 1e9, spec.train_size, spec.eval_size)
    del model
    keras.backend.clear_session()
    return row


def summary_rows(names: Optional[Iterable[str]] = None) -> Iterator[tuple]:
    """(name, total params, trainable params, GMACs at eval size, train size, eval size), built one at a time.

    Every name is checked at the call, before the first model is built.
    """
    specs = [get_spec(name) for name in (names or model_names())]
    return (_row(spec) for spec in specs)


HEADER = f"{'model':<20} {'params':>13} {'trainable':>13} {'GMACs':>8} {'train':>6} {'eval':>5}"


def format_row(row: tuple) -> str:
    name, total, trainable, gmacs, train, eval_ = row
    return f"{name:<20} {total:>13,} {trainable:>13,} {gmacs:>8.3f} {train:>6} {eval_:>5}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m efficientnet_tf.summary",
        description="Builds each named model and prints its parameters, GMACs at the eval size and default sizes.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="model names (default: every name)")
    args = parser.parse_args(argv)
    try:
        rows = summary_rows(args.names)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(HEADER)
    print("-" * len(HEADER), flush=True)
    for row in rows:  # streamed: the big models take seconds each
        print(format_row(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
