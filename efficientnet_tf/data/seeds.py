"""Keys for the pipeline's random draws, so a pass over the data is a function of its seed.

Every random choice of the training pipeline (shuffle order, crop window,
flip, RandAugment/AutoAugment ops and signs, Cutout centres, Mixup weights,
CutMix boxes) is a stateless op given a [2] int64 key. The pipeline derives
the keys from the run's seed, the input pipeline, the pass (epoch) and the
example's or batch's position in the pass. Parallel map calls then cannot
interleave draws, and a resumed run replays the epoch it resumes exactly.
A function called without a key draws one from TF's global generator
(seeded by `tf.random.set_seed` / `keras.utils.set_random_seed`).
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf


def resolve(seed: Optional[tf.Tensor]) -> tf.Tensor:
    """`seed` as a [2] int64 key, or a fresh key from the global generator when None."""
    if seed is None:
        return tf.random.uniform([2], maxval=2**62, dtype=tf.int64)
    return tf.cast(seed, tf.int64)


def fold_in(key: tf.Tensor, data) -> tf.Tensor:
    """A new key for `data` (an int or int tensor) under `key`; distinct data give independent keys."""
    return tf.random.experimental.stateless_fold_in(key, tf.cast(data, tf.int64))


def split(key: tf.Tensor, count: int) -> tf.Tensor:
    """[count, 2] independent keys under `key`."""
    return tf.random.experimental.stateless_split(key, count)
