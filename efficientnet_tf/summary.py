"""Prints every named model's size and cost: ``python -m efficientnet_tf.summary``.

Each model is built (that is what makes the numbers trustworthy), so the
largest names take a few seconds each; pass names to print only those.
"""

from __future__ import annotations

import sys
from typing import Iterable, Optional

import keras

from efficientnet_tf.flops import count_flops
from efficientnet_tf.model import get_model
from efficientnet_tf.registry import get_spec, model_names


def summary_rows(names: Optional[Iterable[str]] = None) -> list[tuple]:
    """(name, total params, trainable params, GMACs at eval size, train size, eval size)."""
    rows = []
    for name in names or model_names():
        spec = get_spec(name)
        model = get_model(spec.name)
        trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
        gmacs = count_flops(model, spec.eval_size) / 1e9
        rows.append((spec.name, model.count_params(), trainable, gmacs, spec.train_size, spec.eval_size))
        del model
        keras.backend.clear_session()
    return rows


def format_table(rows: list[tuple]) -> str:
    header = f"{'model':<20} {'params':>13} {'trainable':>13} {'GMACs':>8} {'train':>6} {'eval':>5}"
    lines = [header, "-" * len(header)]
    for name, total, trainable, gmacs, train, eval_ in rows:
        lines.append(f"{name:<20} {total:>13,} {trainable:>13,} {gmacs:>8.3f} {train:>6} {eval_:>5}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    try:
        rows = summary_rows(argv or None)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
