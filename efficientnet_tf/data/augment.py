"""RandAugment and AutoAugment (policy v0) on whole batches, chosen per image.

Every image draws its own ops, as in the official per-image code, but each op
runs once per batch on the images that drew it (gather, op, scatter), and all
geometric ops share one projective-transform call. This keeps the per-image
semantics at batched speed; the magnitude is a tensor, so a variable read once
per batch can drive it.
"""

from __future__ import annotations

import functools
from typing import Optional

import tensorflow as tf

from efficientnet_tf.data import image_ops, seeds

RANDAUGMENT_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color",
    "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
    "Cutout", "SolarizeAdd",
)  # fmt: skip
RANDAUGMENT_CONSTS = {"cutout": 40.0, "translate": 100.0}
AUTOAUGMENT_CONSTS = {"cutout": 100.0, "translate": 250.0}

# AutoAugment policy v0: 25 sub-policies of two (op, probability, level).
POLICY_V0 = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)


def _pixel_ops(pil_contrast: bool) -> dict:
    return {**image_ops.PIXEL_OPS, "Contrast": image_ops.contrast_pil} if pil_contrast else image_ops.PIXEL_OPS


def apply_ops(
    images: tf.Tensor, op_index: tf.Tensor, level: tf.Tensor, consts: dict, pil_contrast: bool = False,
    seed: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """Apply RANDAUGMENT_OPS[op_index[i]] at level[i] to image i (-1: leave it).

    The batch is split by op (one partition for all geometric ops, one for
    untouched images), each part is processed as a batch, and the parts are
    stitched back in order: two copies of the batch in all. Images are uint8
    throughout, as the ops take and give. `seed` keys the ops' own draws
    (signs, Cutout centres; see `seeds`).
    """
    keys = seeds.split(seeds.resolve(seed), len(RANDAUGMENT_OPS))
    shape = tf.shape(images)
    pixel_ops = _pixel_ops(pil_contrast)
    pixel_names = [name for name in RANDAUGMENT_OPS if name in pixel_ops]
    part_of_op = [pixel_names.index(n) if n in pixel_names else len(pixel_names) for n in RANDAUGMENT_OPS]
    geometric_part, identity_part = len(pixel_names), len(pixel_names) + 1
    part = tf.where(op_index < 0, identity_part, tf.gather(tf.constant(part_of_op), tf.maximum(op_index, 0)))

    identity = tf.tile(tf.constant([[1.0, 0, 0, 0, 1.0, 0, 0, 0]]), [shape[0], 1])
    matrices = identity
    for k, name in enumerate(RANDAUGMENT_OPS):
        if name in image_ops.GEOMETRIC_OPS:
            own = image_ops.GEOMETRIC_OPS[name](level, consts, shape[1], shape[2], keys[k])
            matrices = tf.where(tf.equal(op_index, k)[:, None], own, matrices)

    num_parts = identity_part + 1
    positions = tf.dynamic_partition(tf.range(shape[0]), part, num_parts)
    image_parts = tf.dynamic_partition(images, part, num_parts)
    level_parts = tf.dynamic_partition(level, part, num_parts)
    outputs = []
    for p, name in enumerate(pixel_names):
        op = pixel_ops[name]
        if name in image_ops.RANDOM_PIXEL_OPS:
            op = functools.partial(op, seed=keys[RANDAUGMENT_OPS.index(name)])
        outputs.append(_unless_empty(image_parts[p], lambda x, p=p, op=op: op(x, level_parts[p], consts)))
    geometric_matrices = tf.dynamic_partition(matrices, part, num_parts)[geometric_part]
    outputs.append(
        _unless_empty(image_parts[geometric_part], lambda x: image_ops.transform(x, geometric_matrices))
    )
    outputs.append(image_parts[identity_part])
    return tf.reshape(tf.dynamic_stitch(positions, outputs), shape)


def _unless_empty(images: tf.Tensor, fn) -> tf.Tensor:
    """fn(images), skipped for an empty part (some ops cannot take zero images)."""
    return tf.cond(tf.shape(images)[0] > 0, lambda: fn(images), lambda: images)


def randaugment(
    images: tf.Tensor, magnitude: tf.Tensor, num_layers: int = 2, pil_contrast: bool = False,
    seed: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """Official RandAugment: `num_layers` ops drawn uniformly and independently per image."""
    dtype = images.dtype
    images = tf.cast(images, tf.uint8)  # exact: whole numbers in [0, 255]
    batch = tf.shape(images)[0]
    level = tf.fill([batch], tf.cast(magnitude, tf.float32))
    key = seeds.resolve(seed)
    for layer in range(num_layers):
        choice, ops = tf.unstack(seeds.split(seeds.fold_in(key, layer), 2))
        op_index = tf.random.stateless_uniform([batch], choice, 0, len(RANDAUGMENT_OPS), tf.int32)
        images = apply_ops(images, op_index, level, RANDAUGMENT_CONSTS, pil_contrast, ops)
    return tf.cast(images, dtype)


def autoaugment(images: tf.Tensor, pil_contrast: bool = False, seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """AutoAugment policy v0: one random sub-policy per image, each op with its probability."""
    dtype = images.dtype
    images = tf.cast(images, tf.uint8)  # exact: whole numbers in [0, 255]
    batch = tf.shape(images)[0]
    keys = seeds.split(seeds.resolve(seed), 5)
    sub_policy = tf.random.stateless_uniform([batch], keys[0], 0, len(POLICY_V0), tf.int32)
    for stage in range(2):
        ops = tf.constant([RANDAUGMENT_OPS.index(p[stage][0]) for p in POLICY_V0])
        probs = tf.constant([p[stage][1] for p in POLICY_V0], tf.float32)
        levels = tf.constant([p[stage][2] for p in POLICY_V0], tf.float32)
        applied = tf.random.stateless_uniform([batch], keys[1 + stage]) < tf.gather(probs, sub_policy)
        op_index = tf.where(applied, tf.gather(ops, sub_policy), -1)
        images = apply_ops(
            images, op_index, tf.gather(levels, sub_policy), AUTOAUGMENT_CONSTS, pil_contrast, keys[3 + stage]
        )
    return tf.cast(images, dtype)
