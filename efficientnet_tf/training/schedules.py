"""Learning-rate schedules of the EfficientNet / EfficientNetV2 ImageNet recipe.

The papers quote the learning rate per 256 images and scale it linearly with
the global batch, then warm up linearly and decay; the schedule is a
`LearningRateSchedule` so the optimizer drives it from its own step counter
and a plain `model.fit` (or a resumed one) needs no callback.
"""

import math

import keras
from keras import ops

DECAYS = ("exponential", "cosine", "constant")


def scaled_learning_rate(lr_per_256: float, global_batch_size: int) -> float:
    """Linear scaling rule: the recipe's rates (0.016 for RMSprop) are quoted per 256 images."""
    if lr_per_256 <= 0:
        raise ValueError(f"lr_per_256 must be positive, got {lr_per_256}; the recipe uses 0.016.")
    if global_batch_size <= 0:
        raise ValueError(f"global_batch_size must be a positive number of images, got {global_batch_size}.")
    return lr_per_256 * global_batch_size / 256


@keras.saving.register_keras_serializable(package="efficientnet_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak_learning_rate`, then one of three decays.

    As in the official code, the decay is counted from step 0, not from the end
    of warm-up, so the first rate after warm-up is already decayed
    (0.97 ** 2 at 5 warm-up epochs): that keeps the published schedules.

    - "exponential": peak * decay_rate ** floor(step / (decay_epochs * steps_per_epoch)),
      the ImageNet recipe (0.97 every 2.4 epochs).
    - "cosine": peak * (1 + cos(pi * step / total_steps)) / 2.
    - "constant": peak, the fine-tuning recipe (0.001 after 1 warm-up epoch).
    """

    def __init__(
        self,
        peak_learning_rate: float,
        steps_per_epoch: int,
        epochs: float,
        warmup_epochs: float = 5.0,
        decay: str = "exponential",
        decay_rate: float = 0.97,
        decay_epochs: float = 2.4,
    ):
        if peak_learning_rate <= 0:
            raise ValueError(
                f"peak_learning_rate must be positive, got {peak_learning_rate}; see scaled_learning_rate."
            )
        if int(steps_per_epoch) != steps_per_epoch or steps_per_epoch <= 0:
            raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch}.")
        if epochs <= 0:
            raise ValueError(f"epochs must be positive, got {epochs}.")
        if not 0 <= warmup_epochs <= epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}], got {warmup_epochs}.")
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}.")
        if not 0 < decay_rate <= 1:
            raise ValueError(f"decay_rate must be in (0, 1], got {decay_rate}; the recipe uses 0.97.")
        if decay_epochs <= 0:
            raise ValueError(f"decay_epochs must be positive, got {decay_epochs}; the recipe uses 2.4.")
        self.peak_learning_rate = float(peak_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = float(epochs)
        self.warmup_epochs = float(warmup_epochs)
        self.decay = decay
        self.decay_rate = float(decay_rate)
        self.decay_epochs = float(decay_epochs)
        # Rounded down like the official code, so warm-up ends on a whole step.
        self.warmup_steps = int(self.warmup_epochs * self.steps_per_epoch)
        self.total_steps = int(self.epochs * self.steps_per_epoch)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.peak_learning_rate
        if self.decay == "exponential":
            decay_steps = self.decay_epochs * self.steps_per_epoch
            rate = peak * ops.power(self.decay_rate, ops.floor(step / decay_steps))
        elif self.decay == "cosine":
            rate = peak * 0.5 * (1.0 + ops.cos(math.pi * step / self.total_steps))
        else:
            rate = ops.full((), peak, "float32")
        if self.warmup_steps == 0:
            return rate
        return ops.where(step < self.warmup_steps, peak * step / self.warmup_steps, rate)

    def get_config(self) -> dict:
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "warmup_epochs": self.warmup_epochs,
            "decay": self.decay,
            "decay_rate": self.decay_rate,
            "decay_epochs": self.decay_epochs,
        }
