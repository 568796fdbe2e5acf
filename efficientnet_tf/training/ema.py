"""Exponential moving average of all float weights, BatchNorm statistics included.

Keras' ``use_ema`` / ``SwapEMAWeights`` average trainable variables only and
evaluate with raw BatchNorm moving statistics. The official EfficientNet code
averages those statistics too and evaluates and exports the averaged weights;
without them B5 loses about 3 top-1 points.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="efficientnet_tf")
class ExponentialMovingAverage(keras.callbacks.Callback):
    """Keeps ``shadow -= (shadow - weight) * (1 - d)`` after every train batch.

    ``d = min(decay, (1 + step) / (10 + step))`` with ``warmup`` (``step`` is
    the optimizer's iteration count after the update), so the early average is
    not dominated by the random initialisation; ``d = decay`` otherwise.
    With ``swap_for_evaluation`` the averages are in the model while Keras
    evaluates or predicts (``validation_data`` in ``fit`` included).

    Under ``tf.distribute`` each replica averages its own copy of every
    variable: the model's BatchNorm moving statistics are per-replica
    (aggregation "none"), and updating per device needs no cross-device copy.
    Swapping is in place, so give a model one swapping instance: two would
    swap back in the wrong order.
    """

    def __init__(self, decay: float = 0.9999, warmup: bool = True, swap_for_evaluation: bool = True):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1) (e.g. 0.9999), got {decay}.")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.swap_for_evaluation = bool(swap_for_evaluation)
        self.variables: list[keras.Variable] = []  # the averages, in `tracked_variables` order
        self.tracked_variables: list[keras.Variable] = []
        self._built_for = None
        self._averages_in_model = False
        self._evaluation = contextlib.ExitStack()

    def get_config(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "swap_for_evaluation": self.swap_for_evaluation}

    @classmethod
    def from_config(cls, config: dict) -> ExponentialMovingAverage:
        return cls(**config)

    def build(self, model: keras.Model) -> None:
        """Creates the averages from the model's current weights, once.

        Callable before ``fit`` so a checkpoint can restore ``variables``;
        ``fit`` then keeps them instead of starting over.
        """
        if self._built_for is model:
            return
        if self._built_for is not None:
            raise ValueError("model: this ExponentialMovingAverage is built for another model; create a new one.")
        self.set_model(model)
        self.tracked_variables = [w for w in model.weights if keras.backend.is_float_dtype(w.dtype)]
        with model.distribute_strategy.scope():
            self.variables = [
                keras.Variable("zeros", w.shape, w.dtype, trainable=False, name=w.path.replace("/", "_") + "_ema")
                for w in self.tracked_variables
            ]
        self._for_each_pair(lambda average, weight: average.assign(weight), self.variables, self.tracked_variables)
        self._update_averages = tf.function(self._update, autograph=False)
        self._swap_averages = tf.function(self._swap, autograph=False)
        self._built_for = model

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """The model holds the averages inside; raw weights come back on exit, also on errors."""
        self._require_built()
        if self._averages_in_model:
            yield
            return
        self._swap_averages()
        self._averages_in_model = True
        try:
            yield
        finally:
            self._swap_averages()
            self._averages_in_model = False

    def copy_to_model(self) -> None:
        """Writes the averages into the model for good, e.g. before the final save/export."""
        self._require_built()
        if self._averages_in_model:
            raise RuntimeError("copy_to_model: call it outside averaged(), where the model holds its raw weights.")
        self._for_each_pair(lambda weight, average: weight.assign(average), self.tracked_variables, self.variables)

    def on_train_begin(self, logs=None):
        if self.model.steps_per_execution != 1:
            raise ValueError(
                "steps_per_execution: the average is updated once per train-function call; "
                f"compile with steps_per_execution=1 (got {self.model.steps_per_execution})."
            )
        if self._averages_in_model:
            raise RuntimeError("fit inside averaged() would train the averages; call fit outside it.")
        self.build(self.model)

    def on_train_batch_end(self, batch, logs=None):
        # Passed in, not captured: a recompiled model brings a new optimizer and step counter.
        self._update_averages(tf.convert_to_tensor(self.model.optimizer.iterations))

    def on_test_begin(self, logs=None):
        self._swap_in_for_evaluation()

    def on_test_end(self, logs=None):
        self._evaluation.close()

    def on_predict_begin(self, logs=None):
        self._swap_in_for_evaluation()

    def on_predict_end(self, logs=None):
        self._evaluation.close()

    def _swap_in_for_evaluation(self):
        # Unbuilt (evaluate before any fit or restore): there is nothing to average yet.
        if self.swap_for_evaluation and self._built_for is not None:
            self._evaluation.enter_context(self.averaged())

    def _update(self, step):
        decay = tf.constant(self.decay)
        if self.warmup:
            step = tf.cast(step, "float32")
            decay = tf.minimum(decay, (1.0 + step) / (10.0 + step))
        rate = 1.0 - decay

        def move_towards(average, weight):
            return average.assign_sub((average - weight) * tf.cast(rate, average.dtype))

        self._for_each_pair(move_towards, self.variables, self.tracked_variables)

    def _swap(self):
        def swap(weight, average):
            raw = tf.identity(weight)
            weight.assign(average)
            average.assign(raw)

        self._for_each_pair(swap, self.tracked_variables, self.variables)

    def _for_each_pair(self, fn, targets, sources):
        """``fn(target, source)`` on each replica's own copies (no cross-device reads)."""
        extended = self.model.distribute_strategy.extended
        for target, source in zip(targets, sources):
            extended.update(target.value, fn, args=(source.value,))

    def _require_built(self):
        if self._built_for is None:
            raise RuntimeError("ExponentialMovingAverage is not built: call build(model) or fit with it first.")
