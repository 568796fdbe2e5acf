"""Dataset presets, as layers of dotted config overrides applied after the model's.

imagenet2012 is the papers' from-scratch recipe (the base layer as is). The
transfer presets are the V2 paper's fine-tuning recipe from ImageNet
weights: RMSProp at a constant 0.001 (batch 512) after 1 warm-up epoch, EMA
0.9996, the model's eval size, no progressive learning, about 10k steps.
"synthetic" is the built-in dataset, sized so a small model learns it on a
2-core CPU in minutes. An image folder (custom data) gets the fine-tuning
recipe at batch 64; any other TFDS name keeps the model's from-scratch recipe.
"""

from __future__ import annotations

import os

from efficientnet_tf.registry import get_spec

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
FOLDER_EPOCHS = 50  # an image folder: the same recipe at batch 64; set --epochs for your data

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


def dataset_layer(dataset: str, model_name: str) -> dict:
    """The preset's overrides for `model_name`; {"data.dataset": dataset} for any other dataset."""
    if dataset == "synthetic":
        return dict(SYNTHETIC)
    folder = os.path.isdir(os.path.expanduser(dataset))
    if dataset not in TRANSFER_EPOCHS and not folder:
        return {"data.dataset": dataset}
    dataset = os.path.expanduser(dataset) if folder else dataset
    size = get_spec(model_name).eval_size
    small = folder or dataset in ("tf_flowers", "oxford_flowers102")
    return {
        **FINETUNE, "data.dataset": dataset, "data.image_size": size, "data.eval_size": size,
        "train.epochs": FOLDER_EPOCHS if folder else TRANSFER_EPOCHS[dataset], **({"data.batch_size": 64} if small else {}),
    }  # fmt: skip
