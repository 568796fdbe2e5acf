"""Dataset presets, as layers of dotted config overrides applied after the model's.

imagenet2012 is the papers' from-scratch recipe (the base layer as is). The
transfer presets are the V2 paper's fine-tuning recipe from ImageNet
weights: RMSProp at a constant 0.001 (batch 512) after 1 warm-up epoch, EMA
0.9996, the model's eval size, no progressive learning, about 10k steps.
"synthetic" is the built-in dataset, sized so a small model learns it on a
2-core CPU in minutes. An image folder (your own photos) gets the folder
fine-tuning recipe below, scaled to its number of images; any other TFDS
name keeps the model's from-scratch recipe.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import tensorflow as tf

from efficientnet_tf.data import folder_source
from efficientnet_tf.files import check_filesystem
from efficientnet_tf.registry import get_spec
from efficientnet_tf.training.config import Config

log = logging.getLogger(__name__)

FINETUNE = {
    "model.init_weights": "imagenet",
    "data.batch_size": 512,
    "optimizer.lr_per_256": 0.0005,  # 0.001 at batch 512
    "optimizer.schedule": "constant",
    "optimizer.warmup_epochs": 1.0,
    "train.ema_decay": 0.9996,
    "progressive.stages": 1,
}
# Epochs give about 10k steps at batch 512 (the small flower sets use batch 64).
TRANSFER_EPOCHS = {"cifar10": 105, "cifar100": 105, "tf_flowers": 200, "oxford_flowers102": 650}

# An image folder: hundreds to tens of thousands of images fine-tuned from pretrained weights. The paper's
# transfer recipe above assumes ~10k steps; on a few thousand images at batch 64 (240 steps in 8 epochs) its
# small constant rate and RMSProp, whose mean square starts at 1 (so its first ~100 steps barely move the
# backbone), learn slowly, and its RandAugment 15 / AutoAugment and weight decay fight a short run.
FOLDER = {
    "model.init_weights": "imagenet",  # the point of a folder preset; --init_weights=none trains from scratch (warned)
    "data.batch_size": 32,  # >= 10 steps an epoch from 320 images; Keras' and most fine-tuning notebooks' batch
    "optimizer.name": "adam",  # bias-corrected from step 1, as the synthetic preset; no slow RMSProp start
    "optimizer.lr_per_256": 0.004,  # peak 5e-4 at batch 32: between timm's 1e-4..1e-3 Adam fine-tuning rates
    "optimizer.schedule": "cosine",  # to zero at the end, so the last weights are already settled
    "optimizer.weight_decay": 0.0,  # L2 drags pretrained kernels to zero; BiT fine-tunes without weight decay
    "data.augmentation": "randaugment",
    "data.randaug_magnitude": 5.0,  # the V2 paper's first-stage strength (Table 6): mild for a short run
    "data.mixup_alpha": 0.0,  # BiT uses MixUp only above 20k images; V2-M/L's 0.2/0.4 are for ImageNet
    "data.cutmix_alpha": 0.0,
    "progressive.stages": 1,  # the pretrained weights' own size throughout (image sizes set in dataset_layer)
}
FOLDER_STEPS = 1000  # about 32k images seen: 16 epochs of 2k images; the paper's 10k steps take hours on a CPU
FOLDER_EPOCHS = (5, 50)  # bounds on the epochs that give FOLDER_STEPS: tiny folders stop at 50, large ones run 5
WARMUP_FRACTION = 0.05  # linear warm-up over the first 5% of steps lets the fresh head settle before the backbone moves
EMA_SPAN = 0.1  # the average spans the last ~10% of steps, not a fixed 2,500 steps (0.9996)

SYNTHETIC = {
    "data.dataset": "synthetic",
    "data.batch_size": 32,
    "data.image_size": 64,
    "data.eval_size": 64,
    "data.augmentation": "none",  # Invert/Solarize/Equalize change hue, half of each label
    "data.randaug_magnitude": 0.0,
    "data.synthetic_train": 2000,
    "data.synthetic_eval": 500,
    "progressive.stages": 3,
    "progressive.min_image_size": 40,  # smaller makes V2-B0's last feature maps 1x1
    "progressive.min_randaug_magnitude": 0.0,
    "progressive.min_dropout": 0.1,
    "model.dropout": 0.2,
    # The papers' RMSProp recipe is tuned for batch 4096 over 350 epochs; for minutes on a CPU Adam learns faster.
    "optimizer.name": "adam",
    "optimizer.lr_per_256": 0.016,
    "optimizer.schedule": "cosine",
    "optimizer.warmup_epochs": 1.0,
    "train.epochs": 18,
    "train.ema_decay": 0.999,
}

PRESETS = ("imagenet2012", "cifar10", "cifar100", "tf_flowers", "oxford_flowers102", "synthetic")


def is_folder(dataset: str) -> bool:
    """A local or bucket (gs://) image folder; a URL TensorFlow cannot open is a one-line OSError."""
    check_filesystem(dataset, "--dataset")
    return tf.io.gfile.isdir(os.path.expanduser(dataset))


def dataset_layer(dataset: str, model_name: str) -> dict:
    """The preset's overrides for `model_name`; {"data.dataset": dataset} for any other dataset."""
    if dataset == "synthetic":
        return dict(SYNTHETIC)
    folder = is_folder(dataset)
    if dataset not in TRANSFER_EPOCHS and not folder:
        return {"data.dataset": dataset}
    size = get_spec(model_name).eval_size  # the resolution the pretrained weights were evaluated at
    sizes = {"data.image_size": size, "data.eval_size": size}
    if folder:
        return {**FOLDER, "data.dataset": os.path.expanduser(dataset), **sizes}
    small = dataset in ("tf_flowers", "oxford_flowers102")
    return {
        **FINETUNE, "data.dataset": dataset, **sizes, "train.epochs": TRANSFER_EPOCHS[dataset],
        **({"data.batch_size": 64} if small else {}),
    }  # fmt: skip


def folder_schedule(config: Config, epochs: Optional[int] = None) -> dict:
    """Epochs (unless given), warm-up and EMA decay for the folder's number of training images at the config's batch.

    Counts the images as training will (the files under `data.dataset`, less
    the held-out 10% when there is no `data.eval_dir`), so a run has about
    FOLDER_STEPS steps whatever the folder's size, and warm-up and EMA are
    fractions of those steps. A run too short for an average gets no EMA.
    """
    data = config.data
    images = folder_source(data.dataset, data.eval_dir or None).train.size
    steps_per_epoch = max(1, images // data.batch_size)
    if epochs is None:
        epochs = min(max(round(FOLDER_STEPS / steps_per_epoch), FOLDER_EPOCHS[0]), FOLDER_EPOCHS[1])
    steps = epochs * steps_per_epoch
    if config.model.init_weights is None:
        log.warning(
            "%s: no init weights, so %s trains from scratch with the fine-tuning recipe (%d steps), which needs "
            "pretrained weights to reach a useful accuracy; pass --init_weights=imagenet (or a weights file).",
            data.dataset, config.model.name, steps,
        )  # fmt: skip
    return {
        "train.epochs": epochs,
        "optimizer.warmup_epochs": round(WARMUP_FRACTION * epochs, 3),
        "train.ema_decay": round(max(0.0, 1 - 1 / (EMA_SPAN * steps)), 5),
    }
