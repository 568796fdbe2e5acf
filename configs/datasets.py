"""Dataset presets, as layers of dotted config overrides applied after the model's.

imagenet2012 is the papers' from-scratch recipe (the base layer as is). The
transfer presets are the V2 paper's fine-tuning recipe from ImageNet
weights: RMSProp at a constant 0.001 (batch 512) after 1 warm-up epoch, EMA
0.9996, the model's eval size, no progressive learning, about 10k steps.
"synthetic" is the built-in dataset, sized so a small model learns it on a
2-core CPU in minutes. Any other name is a TFDS dataset or an image folder
and keeps the model's recipe.
"""

from __future__ import annotations

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
TRANSFER_EPOCHS = {"cifar10": 105, "cifar100": 105, "tf_flowers": 200, "oxford_flowers102": 300}

SYNTHETIC = {
    "data.dataset": "synthetic",
    "data.batch_size": 64,
    "data.image_size": 64,
    "data.eval_size": 64,
    "data.augmentation": "none",  # Invert/Solarize/Equalize change hue, half of each label
    "data.mixup_alpha": 0.1,
    "data.synthetic_train": 3000,
    "data.synthetic_eval": 1000,
    "progressive.stages": 3,
    "progressive.style": "paper",
    "progressive.min_image_size": 32,
    "progressive.min_randaug_magnitude": 0.0,
    "progressive.min_mixup_alpha": 0.0,
    "progressive.min_dropout": 0.1,
    "model.dropout": 0.2,
    "optimizer.schedule": "cosine",
    "optimizer.warmup_epochs": 1.0,
    "train.epochs": 10,
    "train.ema_decay": 0.999,
}

PRESETS = ("imagenet2012", "cifar10", "cifar100", "tf_flowers", "oxford_flowers102", "synthetic")


def dataset_layer(dataset: str, model_name: str) -> dict:
    """The preset's overrides for `model_name`; {"data.dataset": dataset} for any other dataset."""
    if dataset == "synthetic":
        return dict(SYNTHETIC)
    if dataset in TRANSFER_EPOCHS:
        small = dataset in ("tf_flowers", "oxford_flowers102")
        size = get_spec(model_name).eval_size
        return {
            **FINETUNE, "data.dataset": dataset, "data.image_size": size, "data.eval_size": size,
            "train.epochs": TRANSFER_EPOCHS[dataset], **({"data.batch_size": 64} if small else {}),
        }  # fmt: skip
    return {"data.dataset": dataset}
