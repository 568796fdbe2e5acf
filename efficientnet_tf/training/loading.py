"""A trained model ready for inference, from what `train.py` or `model.save` wrote.

One loader for export, predict and notebooks; `train.py --mode=eval` builds
its model and restores the newest checkpoint with the same two helpers.

A training directory gives its final `model.keras`, or, while it is still
training, the EMA weights of its newest checkpoint; a bare `.keras` file
gives itself. Either way the result says which class names, preprocessing
family and eval image size the model expects.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import keras
import tensorflow as tf

from efficientnet_tf.data import preprocessing
from efficientnet_tf.errors import one_line
from efficientnet_tf.files import check_filesystem, directory_of, is_file, local_copy
from efficientnet_tf.model import get_model
from efficientnet_tf.registry import get_spec
from efficientnet_tf.training.checkpoint import UnreadableCheckpoint, latest_checkpoint, restore
from efficientnet_tf.training.config import Config, ModelConfig, config_from_json
from efficientnet_tf.training.ema import ExponentialMovingAverage


@dataclasses.dataclass
class Trained:
    """A model with its inference weights, its class names, and the family's eval preprocessing and size."""

    model: keras.Model
    class_names: list[str]
    family: str
    image_size: int
    config: Optional[Config] = None  # the training config, when the model came from a training directory

    def __post_init__(self):
        preprocessing.get_family(self.family)
        if len(self.class_names) != self.model.output_shape[-1]:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but the model has {self.model.output_shape[-1]} outputs; "
                "pass one name per class."
            )


def load_trained(path: str) -> Trained:
    """A training directory or a `.keras` file, as a `Trained`; bad paths give a one-line ValueError."""
    check_filesystem(path, "model")
    if tf.io.gfile.isdir(path):
        return _from_training_dir(path)
    if path.endswith(".keras") and is_file(path):
        beside = directory_of(path)
        if is_file(os.path.join(beside, "config.json")):  # a training directory's model
            return _from_training_dir(beside, path)
        model = _load_keras(path)
        names = _class_names_beside(path, model.output_shape[-1])
        family, size = _family_and_size(model)
        return Trained(model, names, family, size)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"model {path!r} does not exist; pass a training directory or a .keras file.")
    raise ValueError(f"model {path!r} is neither a training directory nor a .keras file; pass one of those.")


def model_from_config(section: ModelConfig, num_classes: int, weights: Optional[str] = None) -> keras.Model:
    """The model section's network (architecture, scaling, dropout, stochastic depth) with `num_classes` outputs."""
    return get_model(
        section.name, num_classes=num_classes, weights=weights, width=section.width, depth=section.depth,
        dropout_rate=section.dropout, survival_prob=section.survival_prob,
    )  # fmt: skip


def restore_inference_weights(checkpoint: str, model: keras.Model, ema: Optional[ExponentialMovingAverage]) -> None:
    """Restores `checkpoint` into `model` and leaves the EMA weights in it (the raw ones when `ema` is None).

    Training evaluates and exports the averages, so evaluating a checkpoint must too.
    """
    if ema is not None:
        ema.build(model)
    restore(checkpoint, model, ema=ema)
    if ema is not None:
        ema.copy_to_model()


def _from_training_dir(directory: str, keras_file: Optional[str] = None) -> Trained:
    config_path = os.path.join(directory, "config.json")
    if not is_file(config_path):
        raise ValueError(f"{directory!r} has no config.json, so it is not a training directory; pass the --model_dir of a train.py run.")
    with tf.io.gfile.GFile(config_path) as file:
        config = config_from_json(file.read())
    names_path = os.path.join(directory, "class_names.json")
    if not is_file(names_path):
        raise ValueError(f"{directory!r} has no class_names.json; train there first (train.py writes it).")
    with tf.io.gfile.GFile(names_path) as file:
        class_names = list(json.load(file))
    final = keras_file or os.path.join(directory, "model.keras")
    if is_file(final):
        model = _load_keras(final)
    else:
        model = _from_checkpoint(directory, config, len(class_names))
    return Trained(model, class_names, get_spec(config.model.name).family, config.data.eval_size, config)


def _from_checkpoint(directory: str, config: Config, num_classes: int) -> keras.Model:
    """The config's model with the newest checkpoint's EMA weights (raw ones when trained without EMA)."""
    path = latest_checkpoint(directory)
    if path is None:
        raise ValueError(f"{directory!r} has neither model.keras nor a ckpt-*.npz checkpoint; train there first.")
    model = model_from_config(config.model, num_classes)
    ema = ExponentialMovingAverage(config.train.ema_decay) if config.train.ema_decay else None
    try:
        restore_inference_weights(path, model, ema)
    except (ValueError, UnreadableCheckpoint) as error:
        raise ValueError(f"Checkpoint {path} does not match the model in config.json: {one_line(error)}") from None
    return model


def _load_keras(path: str) -> keras.Model:
    try:
        with local_copy(path) as local:
            return keras.saving.load_model(local, compile=False)
    except Exception as error:  # Keras raises many kinds for a bad archive
        raise ValueError(f"Cannot load {path} as a Keras model ({one_line(error)}); pass a file saved by model.save.") from None


def _class_names_beside(path: str, num_classes: int) -> list[str]:
    """class_names.json next to the file, else `class_0`, `class_1`, ..."""
    names_path = os.path.join(directory_of(path), "class_names.json")
    if is_file(names_path):
        with tf.io.gfile.GFile(names_path) as file:
            return list(json.load(file))
    return [f"class_{i}" for i in range(num_classes)]


def _family_and_size(model: keras.Model) -> tuple[str, int]:
    """From the model's registry name; the eval size is its fixed input size, else the model's default."""
    try:
        spec = get_spec(model.name)
    except ValueError:
        raise ValueError(
            f"Model {model.name!r} is not named after a registry model, so its preprocessing is unknown; "
            "build it with efficientnet_tf.get_model (which names it) or export from a training directory."
        ) from None
    height = model.input_shape[1]
    return spec.family, int(height) if height else spec.eval_size
