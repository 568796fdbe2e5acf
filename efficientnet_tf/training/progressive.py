"""Progressive learning (EfficientNetV2, Sec. 4): small images and weak
regularization early, the full size and strength late, for faster training
at no loss of accuracy.

`progressive_stages` splits the epochs into stages; `ProgressiveLearning`, a
callback for a plain `model.fit`, puts each stage's values into the train
pipeline's `AugmentState` and the model's `HeadDropout` rate. The pipeline
reads those variables as it makes each batch and the traced train step reads
the rate variable, so nothing is rebuilt or retraced.

A stage's values reach the first batch of its first epoch when Keras starts a
fresh dataset iterator each epoch: pass the finite train dataset as is, with
no `steps_per_epoch` (or exactly its length). With `.repeat()` and
`steps_per_epoch`, Keras keeps one iterator across epochs, and the batches it
has already prefetched still carry the previous stage's values. Through the
tf.data service (`data.service`) each pass carries the values of its start,
which with a fresh iterator per epoch are the epoch's stage.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Sequence

import keras

from efficientnet_tf.data import AugmentState
from efficientnet_tf.data.pipeline import KNOBS, check_knobs
from efficientnet_tf.layers import HeadDropout
from efficientnet_tf.validation import check_float, check_int

STYLES = ("paper", "automl")


def _check(name: str, value: float) -> None:
    """The pipeline's own limits for its knobs (`check_knobs`), so a stage is always assignable."""
    if name == "dropout":
        check_float("dropout", value, min=0.0, max=1.0, max_open=True)
    elif name in KNOBS:
        check_knobs(**{name: value})
    else:
        check_int(name, value, min=0)


@dataclasses.dataclass(frozen=True)
class Stage:
    """The values in effect from `first_epoch` (0-based) until the next stage.

    `dropout=None` leaves the model's own dropout rate alone.
    """

    first_epoch: int
    image_size: int
    randaug_magnitude: float
    mixup_alpha: float
    cutmix_alpha: float
    dropout: float | None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                _check(field.name, value)


def _lerp(pair: tuple[float, float], fraction: float) -> float:
    start, end = pair
    return start + (end - start) * fraction


def progressive_stages(
    epochs: int,
    num_stages: int,
    *,
    image_size: tuple[int, int],
    randaug_magnitude: tuple[float, float] = (0.0, 0.0),
    mixup_alpha: tuple[float, float] = (0.0, 0.0),
    cutmix_alpha: tuple[float, float] = (0.0, 0.0),
    dropout: tuple[float, float] | None = None,
    style: str = "paper",
) -> list[Stage]:
    """Stage i of M starts at epoch i * epochs // M (as in the released code),
    each value going from its (start, end) pair.

    style "paper" (Algorithm 1): stage i of M uses start + (end - start) * i / (M - 1),
    sizes rounded to the nearest pixel, so training starts at the start size.
    style "automl" (the released google/automl code): sizes
    int(start + (end - start) * (i + 1) / M), so the first stage is already
    above the start size; the other values as in "paper" (numpy.linspace);
    dropout is not scheduled. One stage means the end values in both styles
    (the released code's linspace would give the start values).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}.")
    if num_stages < 1:
        raise ValueError(f"num_stages must be at least 1, got {num_stages}.")
    if epochs < num_stages:
        raise ValueError(f"epochs ({epochs}) must be at least num_stages ({num_stages}) so every stage gets an epoch.")
    if style == "automl" and dropout is not None:
        raise ValueError(
            "dropout is not scheduled with style='automl' (the released code keeps the model's rate); "
            "pass dropout=None or use style='paper'."
        )
    pairs = {
        "image_size": image_size, "randaug_magnitude": randaug_magnitude,
        "mixup_alpha": mixup_alpha, "cutmix_alpha": cutmix_alpha,
    }  # fmt: skip
    if dropout is not None:
        pairs["dropout"] = dropout
    for name, pair in pairs.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{name} must be a (start, end) pair, got {pair!r}.")
        for value in pair:
            _check(name, value)

    stages = []
    for i in range(num_stages):
        fraction = i / (num_stages - 1) if num_stages > 1 else 1.0
        if style == "paper":
            size = math.floor(_lerp(image_size, fraction) + 0.5)
        else:
            size = int(_lerp(image_size, (i + 1) / num_stages))
        stages.append(Stage(
            first_epoch=i * epochs // num_stages,
            image_size=size,
            randaug_magnitude=_lerp(randaug_magnitude, fraction),
            mixup_alpha=_lerp(mixup_alpha, fraction),
            cutmix_alpha=_lerp(cutmix_alpha, fraction),
            dropout=None if dropout is None else _lerp(dropout, fraction),
        ))  # fmt: skip
    return stages


def _fmt(value: float) -> str:
    return f"{round(value, 2):g}"


class ProgressiveLearning(keras.callbacks.Callback):
    """Applies the stage that holds each epoch, so `fit(initial_epoch=k)` resumes
    in the right stage, and adds the values in effect to the epoch logs.

    Put it before CSVLogger/TensorBoard in `callbacks` so they see those values
    (History always does). With `verbose`, prints one line per stage change,
    counting epochs from 1 like Keras' progress bar.
    """

    def __init__(self, stages: Sequence[Stage], state: AugmentState, verbose: int = 1):
        super().__init__()
        self.stages = list(stages)
        if not self.stages or self.stages[0].first_epoch != 0:
            raise ValueError("stages must be non-empty, the first at epoch 0; build them with progressive_stages().")
        firsts = [stage.first_epoch for stage in self.stages]
        if any(a >= b for a, b in zip(firsts, firsts[1:])):
            raise ValueError(f"stages must start at strictly increasing epochs, got first epochs {firsts}.")
        self.state = state
        self.verbose = verbose
        self._first_epochs = firsts
        self._dropout_layers: list[HeadDropout] = []
        self._active: int | None = None

    def stage_at(self, epoch: int) -> tuple[int, Stage]:
        """(index, stage) in effect at a 0-based epoch."""
        index = bisect.bisect_right(self._first_epochs, epoch) - 1
        return index, self.stages[index]

    def on_train_begin(self, logs=None):
        # _flatten_layers also finds HeadDropout inside nested models and layers.
        self._dropout_layers = [layer for layer in self.model._flatten_layers() if isinstance(layer, HeadDropout)]
        if not self._dropout_layers and any(stage.dropout is not None for stage in self.stages):
            raise ValueError(
                "The stages schedule dropout but the model has no HeadDropout layer; "
                "build it with a HeadDropout head or use dropout=None."
            )
        self._active = None  # each fit applies its first epoch's stage

    def on_epoch_begin(self, epoch, logs=None):
        self.state.epoch.assign(epoch)  # the pass keys its draws by the epoch, resumed or not
        index, stage = self.stage_at(epoch)
        if index == self._active:
            return
        self._active = index
        self.state.assign(
            image_size=stage.image_size, randaug_magnitude=stage.randaug_magnitude,
            mixup_alpha=stage.mixup_alpha, cutmix_alpha=stage.cutmix_alpha,
        )  # fmt: skip
        if stage.dropout is not None:
            for layer in self._dropout_layers:
                layer.rate = stage.dropout
        if self.verbose:
            dropout = "unchanged" if stage.dropout is None else _fmt(stage.dropout)
            print(
                f"Stage {index + 1}/{len(self.stages)} from epoch {stage.first_epoch + 1}: image {stage.image_size} px, "
                f"RandAugment {_fmt(stage.randaug_magnitude)}, mixup {_fmt(stage.mixup_alpha)}, "
                f"CutMix {_fmt(stage.cutmix_alpha)}, dropout {dropout}"
            )  # fmt: skip

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs.update(self.state.values())
        if self._dropout_layers:
            logs["dropout"] = self._dropout_layers[0].rate
