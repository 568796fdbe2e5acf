"""The images an export needs besides the model: int8 calibration images and held-out images to report agreement on.

The model itself comes from `efficientnet_tf.training.load_trained`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from efficientnet_tf.data.pipeline import make_eval_dataset, resolve_source
from efficientnet_tf.data.sources import Source, Split, folder_source
from efficientnet_tf.data.synthetic import synthetic_source
from efficientnet_tf.files import check_filesystem
from efficientnet_tf.training.loading import Trained


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
    check_filesystem(folder, "--eval_data")
    source = folder_source(folder, eval_dir=folder) if tf.io.gfile.isdir(folder) else resolve_source(data)
    return HeldOut(data, _sample(trained, source.eval, source, count))


def _sample(trained: Trained, split: Split, source: Source, count: int) -> np.ndarray:
    """`count` images of `split` (fewer if it is smaller) with the family's eval preprocessing, float32 [N, S, S, 3]."""
    # Folders list class by class: shuffle (within a bounded buffer) so the sample spans classes.
    shuffled = dataclasses.replace(split, make=lambda: split.make().shuffle(min(split.size, 10_000), seed=0))
    as_eval = Source(source.name, split, shuffled, source.class_names)
    dataset = make_eval_dataset(as_eval, family=trained.family, image_size=trained.image_size, batch_size=count)
    images = next(iter(dataset.take(1)))[0].numpy()
    return images.astype(np.float32)

