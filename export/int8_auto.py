"""`--quantize=int8-auto`: int8 that keeps in float the op types costing most top-1 agreement, until enough agree.

Full-integer int8 rounds every layer's output; swish's sigmoid and the
squeeze-excite multiply are the usual culprits (tensorflow/tpu#549: V1-B0 lost
over 15 points). The search starts from plain int8; if its agreement with Keras
is below `min_agreement`, it tries op types one at a time, worst first by TF's
quantization debugger (each type's layers' RMS error in steps of their output
scale, summed), and keeps a type in float only if agreement rises. It stops
when agreement reaches `min_agreement` or every type was tried. Convolutions
are never candidates: they carry int8's speed and size, and a model that needs
them in float is better shipped as float16.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable

import numpy as np

from export import litert

MODE = "int8-auto"
ALWAYS_INT8 = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclasses.dataclass
class Attempt:
    float_ops: list[str]
    top1_agreement: float


@dataclasses.dataclass
class Int8Auto:
    """The chosen model, the op types it keeps in float, and every attempt on the way (in order)."""

    content: bytes
    float_ops: list[str]
    top1_agreement: float
    reached: bool
    attempts: list[Attempt]


def search(
    saved_model: str,
    calibration: np.ndarray,
    plain_int8: bytes,
    agreement: Callable[[bytes], float],
    min_agreement: float,
    log: Callable[[str], None] = lambda message: None,
) -> Int8Auto:
    """Plain int8 (`plain_int8`, already converted) if it reaches `min_agreement`, else the greedy search above.

    `agreement(content)`: the model's top-1 agreement with Keras on the images that decide.
    """
    best = Attempt([], agreement(plain_int8))
    content, attempts = plain_int8, [best]
    log(f"{MODE}: plain int8 agrees on {best.top1_agreement:.1%}")
    if best.top1_agreement < min_agreement:
        debugger = litert.Int8Debugger(saved_model, calibration)
        for op in ranked_op_types(debugger.layer_errors()):
            trial = debugger.quantized(best.float_ops + [op])
            attempt = Attempt(best.float_ops + [op], agreement(trial))
            attempts.append(attempt)
            log(f"{MODE}: {', '.join(attempt.float_ops)} in float agrees on {attempt.top1_agreement:.1%}")
            if attempt.top1_agreement > best.top1_agreement:
                best, content = attempt, trial
            if best.top1_agreement >= min_agreement:
                break
    reached = best.top1_agreement >= min_agreement
    return Int8Auto(content, best.float_ops, best.top1_agreement, reached, attempts)


def ranked_op_types(layer_errors: list[tuple[str, float]]) -> list[str]:
    """Candidate op types, the largest summed error first; convolutions excluded (see the module docstring)."""
    total: dict[str, float] = collections.defaultdict(float)
    for op, error in layer_errors:
        if op not in ALWAYS_INT8:
            total[op] += error
    return sorted(total, key=lambda op: -total[op])
