"""Deterministic training: the same command and seed give bit-identical weights on the same machine.

What makes a run repeatable here:
- the input pipeline keys every random draw by (seed, pass, position)
  (`efficientnet_tf.data.seeds`), always, so its batches depend on the seed
  alone, and a resumed run replays the epochs it resumes;
- model randomness (dropout, stochastic depth) comes from Keras seed
  generators whose states are part of every checkpoint;
- `make_deterministic` seeds Python, numpy and TF and turns on TensorFlow's
  op determinism, which picks deterministic kernels (or raises for ops that
  have none) and makes tf.data keep its order.

On a CPU the default mode is already repeatable for the same machine and
thread count; op determinism is what GPUs need. Results still differ across
CPU kinds (oneDNN on AVX-512 sums some kernels in another order) and thread
counts: floating-point sums are not associative.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from efficientnet_tf.training.keras_patches import is_multi_worker


def make_deterministic(seed: int) -> None:
    """Seed every generator and turn on TF's op determinism (process-wide; it cannot be turned off again)."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def check_deterministic_strategy(strategy: tf.distribute.Strategy) -> None:
    """Deterministic mode is tested for one process (default, one_device, mirrored); refuse the rest in one line."""
    if isinstance(strategy, tf.distribute.TPUStrategy) or is_multi_worker(strategy):
        kind = "TPUStrategy" if isinstance(strategy, tf.distribute.TPUStrategy) else "multi-worker training"
        raise ValueError(
            f"train.deterministic=true is not supported with {kind} (its results are not checked to repeat); "
            "pass --train.deterministic=false, or train in one process (--strategy=default or mirrored)."
        )
