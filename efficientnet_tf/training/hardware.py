"""What the hardware runs well: the mixed-precision policy and the tf.distribute strategy.

On CPU, bfloat16 pays only with native bf16 instructions (AVX512_BF16 or
AMX): on an AVX2-only CPU `mixed_bfloat16` trained efficientnetv2-b0 about 8x
slower than float32 (10.2 s vs 1.3 s per step at 64 px, batch 64).
"""

from __future__ import annotations

import tensorflow as tf

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def cpu_has_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo_path) as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(requested: str = "auto") -> str:
    """The policy to train with: `requested`, or for "auto" the fastest one this machine runs well."""
    if requested not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {', '.join(PRECISIONS)}, got {requested!r}.")
    if requested != "auto":
        return requested
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        major = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))[0]
        # bf16 from Ampere on; float16 (with loss scaling) on Volta/Turing tensor cores.
        return "mixed_bfloat16" if major >= 8 else "mixed_float16" if major >= 7 else "float32"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The tf.distribute strategy for `name`; "auto" takes every local GPU, else the default."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}.")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(f"strategy {name!r} is not supported yet (multi-worker and TPU training are their own issue); "
                     "use auto, default, one_device or mirrored.")  # fmt: skip

