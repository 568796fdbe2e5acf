"""Two targeted fixes that make `model.fit` work under MultiWorkerMirroredStrategy.

Keras 3 (checked up to 3.15.1) fails there out of the box
(keras-team/keras#20585, tensorflow/tensorflow#72388), in two spots of
`keras/src/backend/tensorflow/trainer.py`:

1. `TensorFlowTrainer._maybe_symbolic_build` averages a distributed input
   batch across all workers with `strategy.reduce` only to learn its shapes
   and dtypes, which raises `ValueError: Attempt to convert a value
   (PerReplica...)`. The fix builds from this worker's first replica batch:
   same shapes and dtypes, no cross-worker traffic.
2. `reduce_per_replica` reduces every multi-worker log with
   `strategy.reduce("MEAN", v, axis=0)`, which fails on the scalar losses and
   metrics (`Invalid reduction dimension 0 for input with 0 dimensions`).
   The fix averages scalars across replicas with `axis=None`.

Both fixes wrap the original code and change nothing unless the strategy is
a MultiWorkerMirroredStrategy in multi-worker mode. `apply()` refuses to
patch a Keras whose patched functions differ from the ones read here (their
source fingerprints below): a Keras upgrade then fails with one line saying
to check whether upstream has fixed the bug, instead of patching code we
have not read. tests/test_distribute_patches.py fails on such an upgrade too.
"""

from __future__ import annotations

import functools
import hashlib
import inspect

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer

UPSTREAM = "keras-team/keras#20585, tensorflow/tensorflow#72388"
# sha256 of inspect.getsource of each patched function, as read in Keras 3.15.1.
FINGERPRINTS = {
    "TensorFlowTrainer._maybe_symbolic_build": "92a504f5eba9b29f81f1bf26180bdd5bf5186b06b7bda426534b90d2d02bc1c2",
    "reduce_per_replica": "2e7d54b1e6edc29a8c6a7e6b66cd4c8be3ba7842412c93753ac3afe169fa7fb8",
}


def _patched_functions() -> dict:
    return {
        "TensorFlowTrainer._maybe_symbolic_build": tf_trainer.TensorFlowTrainer._maybe_symbolic_build,
        "reduce_per_replica": tf_trainer.reduce_per_replica,
    }


def fingerprints() -> dict[str, str]:
    """sha256 of the installed Keras' source of each function the patch wraps (the originals if applied)."""
    out = {}
    for name, function in _patched_functions().items():
        original = getattr(function, "__wrapped__", function)
        out[name] = hashlib.sha256(inspect.getsource(original).encode()).hexdigest()
    return out


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def _first_local_batch(data, strategy):
    """This worker's first replica batch, for shapes and dtypes only."""

    def first(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(first, data)


def _fix_symbolic_build(original):
    @functools.wraps(original)
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and strategy is not None and is_multi_worker(strategy):
            for _, _, batches in iterator:
                data_batch = _first_local_batch(next(batches), strategy)
                break
            iterator = None
        return original(self, iterator=iterator, data_batch=data_batch)

    return _maybe_symbolic_build


def _fix_scalar_reduction(original):
    @functools.wraps(original)
    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not is_multi_worker(strategy):
            return original(values, strategy, reduction)

        def reduce(value):
            local = strategy.experimental_local_results(value)[0] if isinstance(value, tf.distribute.DistributedValues) else value
            if local.shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return original(value, strategy, reduction)

        return tf.nest.map_structure(reduce, values)

    return reduce_per_replica


def apply() -> None:
    """Patches the installed Keras once; a ValueError if its patched code is not the code read here."""
    if getattr(tf_trainer.reduce_per_replica, "__wrapped__", None) is not None:
        return
    changed = [name for name, digest in fingerprints().items() if FINGERPRINTS[name] != digest]
    if changed:
        raise ValueError(
            f"strategy multi_worker: Keras {keras.__version__} changed {', '.join(changed)}, which "
            f"efficientnet_tf/training/keras_patches.py fixes for multi-worker fit ({UPSTREAM}); check whether "
            "upstream fixed it and update that module, or install keras==3.15.1."
        )
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _fix_symbolic_build(tf_trainer.TensorFlowTrainer._maybe_symbolic_build)
    tf_trainer.reduce_per_replica = _fix_scalar_reduction(tf_trainer.reduce_per_replica)
