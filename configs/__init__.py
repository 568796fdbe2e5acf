"""Training recipes as data, layered: base -> model -> dataset -> command line."""

from __future__ import annotations

from typing import Mapping

from configs.datasets import PRESETS, dataset_layer, folder_schedule, is_folder
from configs.recipes import SCHEDULES, model_layer
from efficientnet_tf.training.config import Config, build_config, resolve


def recipe(model: str, dataset: str = "synthetic", schedule: str = "paper", overrides: Mapping[str, object] = ()) -> Config:
    """The resolved config for `model` on `dataset`, with dotted `overrides` applied last.

    An image folder's epochs, warm-up and EMA decay follow from its number
    of images and the batch size, so they are derived from a first
    resolution that already holds the command line's batch size and epochs.

    >>> recipe("efficientnetv2-s", "imagenet2012").progressive.min_image_size
    128
    """
    overrides = dict(overrides)
    layers = [model_layer(model, schedule), dataset_layer(dataset, model)]
    if is_folder(dataset):
        first = build_config(*layers, overrides)
        layers.append(folder_schedule(first, first.train.epochs if "train.epochs" in overrides else None))
    return resolve(*layers, overrides)


__all__ = ["PRESETS", "SCHEDULES", "recipe", "model_layer", "dataset_layer", "folder_schedule"]
