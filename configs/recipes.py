"""Per-model training recipes, as layers of dotted config overrides.

The base layer is the ImageNet recipe both papers share (the defaults of
`efficientnet_tf.training.config`). A model layer adds the model's sizes,
augmentation and progressive-learning schedule. Two schedules are shipped:

- "paper": the V2 paper's Algorithm 1 and Table 6 (S/M/L; XL follows L;
  B0-B3 grow from 128 px with weak dropout to their own), dropout scheduled.
- "automl": the released google/automl code: sizes `128 + (train - 128) * (i + 1) / 4`,
  RandAugment `linspace(5, RA, 4)`, Mixup and CutMix `linspace(0, alpha, 4)`,
  dropout not scheduled.

V1 and Lite train at a fixed size with AutoAugment, as in tensorflow/tpu.
"""

from __future__ import annotations

from efficientnet_tf.registry import get_spec

SCHEDULES = ("paper", "automl")

# Paper Table 6 end values: (image size, RandAugment, mixup alpha, dropout).
PAPER_TABLE6 = {
    "efficientnetv2-s": (300, 15.0, 0.0, 0.3),
    "efficientnetv2-m": (380, 20.0, 0.2, 0.4),
    "efficientnetv2-l": (380, 25.0, 0.4, 0.5),
    "efficientnetv2-xl": (380, 25.0, 0.4, 0.5),  # not in the paper: as L
}
# google/automl effnetv2_configs: (RandAugment, mixup and CutMix alpha); dropout is the model's.
AUTOML_V2 = {
    "efficientnetv2-s": (10.0, 0.0),
    "efficientnetv2-m": (15.0, 0.2),
    "efficientnetv2-l": (20.0, 0.5),
    "efficientnetv2-xl": (20.0, 0.5),
}


def model_layer(name: str, schedule: str = "paper") -> dict:
    """The model's recipe on top of the base ImageNet recipe."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}.")
    spec = get_spec(name)
    layer = {"model.name": spec.name, "data.image_size": spec.train_size, "data.eval_size": spec.eval_size}
    if not spec.family.startswith("efficientnetv2"):
        return {**layer, "data.augmentation": "autoaugment", "progressive.stages": 1}
    layer.update({"progressive.stages": 4, "progressive.style": schedule, "progressive.min_image_size": 128})
    if spec.name not in PAPER_TABLE6:  # V2-B0..B3: AutoAugment as released, so only size and dropout grow
        layer["data.augmentation"] = "autoaugment"
        if schedule == "automl":
            return {**layer, "progressive.min_dropout": None}
        return {**layer, "progressive.min_dropout": 0.1}
    if schedule == "automl":
        magnitude, alpha = AUTOML_V2[spec.name]
        return {
            **layer, "data.randaug_magnitude": magnitude, "data.mixup_alpha": alpha, "data.cutmix_alpha": alpha,
            "progressive.min_randaug_magnitude": 5.0, "progressive.min_dropout": None,
        }  # fmt: skip
    size, magnitude, mixup, dropout = PAPER_TABLE6[spec.name]
    return {
        **layer, "data.image_size": size, "data.randaug_magnitude": magnitude, "data.mixup_alpha": mixup,
        "model.dropout": dropout, "progressive.min_randaug_magnitude": 5.0, "progressive.min_dropout": 0.1,
    }  # fmt: skip

