"""What an export starts from: a trained Keras model and what serving needs to know about it.

A training directory (written by `train.py`) gives its final `model.keras`, or,
while it is still training, the EMA weights of its newest checkpoint; a bare
`.keras` file gives itself. Either way the result says which class names,
preprocessing family and image size the exported graphs must use.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import keras
import numpy as np

import efficientnet_tf  # registers our layers for .keras loading
from efficientnet_tf.data import preprocessing
from efficientnet_tf.data.pipeline import make_eval_dataset, resolve_source
from efficientnet_tf.data.sources import Source, Split, folder_source
from efficientnet_tf.data.synthetic import synthetic_source
from efficientnet_tf.training.checkpoint import UnreadableCheckpoint, latest_checkpoint, restore
from efficientnet_tf.training.config import Config, config_from_json
from efficientnet_tf.training.ema import ExponentialMovingAverage


@dataclasses.dataclass
class Trained:
    """A model ready to export: inference weights, class names, the family's eval preprocessing and size."""

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
    if os.path.isdir(path):
        return _from_training_dir(path)
    if path.endswith(".keras") and os.path.isfile(path):
        beside = os.path.dirname(os.path.abspath(path))
        if os.path.isfile(os.path.join(beside, "config.json")):  # a training directory's model
            return _from_training_dir(beside, path)
        model = _load_keras(path)
        names = _class_names_beside(path, model.output_shape[-1])
        family, size = _family_and_size(model)
        return Trained(model, names, family, size)
    if not os.path.exists(path):
        raise ValueError(f"model {path!r} does not exist; pass a training directory or a .keras file.")
    raise ValueError(f"model {path!r} is neither a training directory nor a .keras file; pass one of those.")


def _from_training_dir(directory: str, keras_file: Optional[str] = None) -> Trained:
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(f"{directory!r} has no config.json, so it is not a training directory; pass the --model_dir of a train.py run.")
    with open(config_path) as file:
        config = config_from_json(file.read())
    names_path = os.path.join(directory, "class_names.json")
    if not os.path.isfile(names_path):
        raise ValueError(f"{directory!r} has no class_names.json; train there first (train.py writes it).")
    with open(names_path) as file:
        class_names = list(json.load(file))
    spec = efficientnet_tf.get_spec(config.model.name)
    image_size = config.data.eval_size or spec.eval_size
    final = keras_file or os.path.join(directory, "model.keras")
    if os.path.isfile(final):
        model = _load_keras(final)
    else:
        model = _from_checkpoint(directory, config, len(class_names))
    return Trained(model, class_names, spec.family, image_size, config)


def _from_checkpoint(directory: str, config: Config, num_classes: int) -> keras.Model:
    """The config's model with the newest checkpoint's EMA weights (raw ones when trained without EMA)."""
    path = latest_checkpoint(directory)
    if path is None:
        raise ValueError(f"{directory!r} has neither model.keras nor a ckpt-*.npz checkpoint; train there first.")
    m = config.model
    model = efficientnet_tf.get_model(m.name, num_classes=num_classes, width=m.width, depth=m.depth)
    ema = ExponentialMovingAverage(config.train.ema_decay) if config.train.ema_decay else None
    if ema is not None:
        ema.build(model)
    try:
        restore(path, model, ema=ema)
    except (ValueError, UnreadableCheckpoint) as error:
        raise ValueError(f"Checkpoint {path} does not match the model in config.json: {_one_line(error)}") from None
    if ema is not None:
        ema.copy_to_model()
    return model


def _load_keras(path: str) -> keras.Model:
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a bad archive
        raise ValueError(f"Cannot load {path} as a Keras model ({_one_line(error)}); pass a file saved by model.save.") from None


def _class_names_beside(path: str, num_classes: int) -> list[str]:
    """class_names.json next to the file, else `class_0`, `class_1`, ..."""
    names_path = os.path.join(os.path.dirname(os.path.abspath(path)), "class_names.json")
    if os.path.isfile(names_path):
        with open(names_path) as file:
            return list(json.load(file))
    return [f"class_{i}" for i in range(num_classes)]


def _family_and_size(model: keras.Model) -> tuple[str, int]:
    """From the model's registry name; the eval size is its fixed input size, else the model's default."""
    try:
        spec = efficientnet_tf.get_spec(model.name)
    except ValueError:
        raise ValueError(
            f"Model {model.name!r} is not named after a registry model, so its preprocessing is unknown; "
            "build it with efficientnet_tf.get_model (which names it) or export from a training directory."
        ) from None
    height = model.input_shape[1]
    return spec.family, int(height) if height else spec.eval_size


def calibration_images(trained: Trained, count: int, data: Optional[str] = None) -> np.ndarray:
    """`count` training images with eval preprocessing, float32 [N, S, S, 3], to calibrate int8.

    From `data` (an image folder or TFDS name) if given, else the training
    directory's dataset, else synthetic images (a model without training data).
    """
    config = trained.config
    if data:
        source = resolve_source(data)
    elif config is not None and config.data.dataset != "synthetic":
        source = resolve_source(config.data.dataset, config.data.data_dir or None)
    else:
        classes = config.data.synthetic_classes if config is not None else 10
        seed = config.train.seed if config is not None else 0
        source = synthetic_source(num_classes=classes, resolution=max(trained.image_size, 32), train_size=count, eval_size=1, seed=seed)
    return _sample(trained, source.train, source, count)


@dataclasses.dataclass
class HeldOut:
    """Images every artifact's top-1 agreement with Keras is reported on: a validation set, not the calibration images."""

    name: str
    images: np.ndarray  # float32 [N, S, S, 3], the family's eval preprocessing


def held_out_images(trained: Trained, data: str, count: int) -> HeldOut:
    """Up to `count` images of `data`: every image of a folder (one subfolder per class), or a TFDS name's eval split."""
    folder = os.path.expanduser(data)
    source = folder_source(folder, eval_dir=folder) if os.path.isdir(folder) else resolve_source(data)
    return HeldOut(data, _sample(trained, source.eval, source, count))


def _sample(trained: Trained, split: Split, source: Source, count: int) -> np.ndarray:
    """`count` images of `split` (fewer if it is smaller) with the family's eval preprocessing, float32 [N, S, S, 3]."""
    # Folders list class by class: shuffle (within a bounded buffer) so the sample spans classes.
    shuffled = dataclasses.replace(split, make=lambda: split.make().shuffle(min(split.size, 10_000), seed=0))
    as_eval = Source(source.name, split, shuffled, source.class_names)
    dataset = make_eval_dataset(as_eval, family=trained.family, image_size=trained.image_size, batch_size=count)
    images = next(iter(dataset.take(1)))[0].numpy()
    return images.astype(np.float32)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
