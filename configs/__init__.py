"""Training recipes as data, layered: base -> model -> dataset -> command line."""

from __future__ import annotations

from typing import Mapping

from configs.datasets import PRESETS, dataset_layer
from configs.recipes import SCHEDULES, model_layer
from efficientnet_tf.training.config import Config, build_config


def recipe(model: str, dataset: str = "synthetic", schedule: str = "paper", overrides: Mapping[str, object] = ()) -> Config:
    """The resolved config for `model` on `dataset`, with dotted `overrides` applied last.

    >>> recipe("efficientnetv2-s", "imagenet2012").progressive.min_image_size
    128
    """
    return build_config(model_layer(model, schedule), dataset_layer(dataset, model), dict(overrides))


__all__ = ["PRESETS", "SCHEDULES", "recipe", "model_layer", "dataset_layer"]
