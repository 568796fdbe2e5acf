"""The 16 AutoAugment/RandAugment image ops, batched, with a level per image.

Images are float32 [B, H, W, 3] holding whole numbers in [0, 255] (the uint8
grid of the official code, which every op here keeps). `level` is [B] on the
official 0-10 scale where 10 is each op's "maximum" (larger extrapolates);
`consts` carries the policy's pixel constants (cutout, translate). Ops whose
official argument has a random sign draw it per image. Geometric ops are
described by a projective matrix instead, so a batch needs one transform call.

Every op reproduces the official TF ops bit for bit, including where they are
odd: the level-to-argument arithmetic is done in float64 as the official
Python does, Posterize's shift and Solarize's threshold wrap as a uint8 does,
and Contrast blends towards the histogram's mean count (`contrast_pil` is the
PIL form). tests/test_data_augment_golden.py pins this.
"""

from __future__ import annotations

import math

import tensorflow as tf

MAX_LEVEL = 10.0
FILL = 128.0  # official replace value for emptied pixels


def _col(v: tf.Tensor) -> tf.Tensor:
    return tf.reshape(v, [-1, 1, 1, 1])


def _level_arg(level: tf.Tensor, scale: float, offset: float = 0.0) -> tf.Tensor:
    """`level / 10 * scale + offset` in float64 (the official code's Python floats), as float32."""
    return tf.cast(tf.cast(level, tf.float64) / MAX_LEVEL * scale + offset, tf.float32)


def _level_int(level: tf.Tensor, scale: float) -> tf.Tensor:
    """`int(level / 10 * scale)`, as float32."""
    return tf.cast(tf.floor(tf.cast(level, tf.float64) / MAX_LEVEL * scale), tf.float32)


def _random_sign(level: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.random.uniform(tf.shape(level)) < 0.5, -1.0, 1.0)


def _blend(degenerate: tf.Tensor, images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL ImageEnhance: interpolate (or extrapolate) from degenerate, then clip."""
    return tf.floor(tf.clip_by_value(degenerate + _col(factor) * (images - degenerate), 0.0, 255.0))


def _enhance_factor(level: tf.Tensor) -> tf.Tensor:
    return _level_arg(level, 1.8, 0.1)


def _grayscale(images: tf.Tensor) -> tf.Tensor:
    """tf.image.rgb_to_grayscale on the uint8 images, as the official Color and Contrast."""
    return tf.cast(tf.image.rgb_to_grayscale(tf.cast(images, tf.uint8)), tf.float32)


def auto_contrast(images, level, consts):
    lo = tf.reduce_min(tf.reduce_min(images, axis=1, keepdims=True), axis=2, keepdims=True)
    hi = tf.reduce_max(tf.reduce_max(images, axis=1, keepdims=True), axis=2, keepdims=True)
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    stretched = tf.floor(tf.clip_by_value(images * scale + -lo * scale, 0.0, 255.0))
    return tf.where(hi > lo, stretched, images)  # a constant channel stays as it is


def equalize(images, level, consts):
    """PIL Equalize per image and channel: one bincount and one lookup per batch."""
    shape = tf.shape(images)
    planes = shape[0] * 3
    pixels = tf.cast(shape[1] * shape[2], tf.int32)
    offsets = tf.reshape(tf.range(planes, dtype=tf.float32) * 256.0, [-1, 1, 1, 3])
    index = tf.cast(images + offsets, tf.int32)
    hist = tf.reshape(tf.math.bincount(index, minlength=planes * 256, maxlength=planes * 256), [-1, 256])
    top = tf.reshape(tf.cast(tf.reduce_max(tf.reduce_max(images, axis=1), axis=1), tf.int32), [-1])
    step = (pixels - tf.gather(hist, top, batch_dims=1)) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    lut = (tf.cumsum(hist, axis=1) + safe_step // 2) // safe_step
    lut = tf.clip_by_value(tf.concat([tf.zeros_like(lut[:, :1]), lut[:, :-1]], 1), 0, 255)
    lut = tf.where(step[:, None] > 0, lut, tf.range(256)[None, :])  # flat channel: unchanged
    return tf.cast(tf.gather(tf.reshape(lut, [-1]), index), tf.float32)


def invert(images, level, consts):
    return 255.0 - images


def posterize(images, level, consts):
    """Keep `int(level / 10 * 4)` bits: a uint8 shift by `8 - bits`.

    The shift is a uint8 too, so it wraps modulo 256, and TF clamps shifts
    above 7 to 7: levels below 5 and from 22.5 up give `x & 128`.
    """
    shift = tf.math.floormod(8.0 - _level_int(level, 4.0), 256.0)
    step = _col(tf.pow(2.0, tf.minimum(shift, 7.0)))
    return tf.floor(images / step) * step


def solarize(images, level, consts):
    """Invert pixels at or above `int(level / 10 * 256)`, a threshold that wraps modulo 256."""
    threshold = _col(tf.math.floormod(_level_int(level, 256.0), 256.0))
    above = tf.clip_by_value(images - threshold + 1.0, 0.0, 1.0)  # 1 where images >= threshold
    return images + above * (255.0 - 2.0 * images)


def solarize_add(images, level, consts):
    addition = _col(_level_int(level, 110.0))
    below = tf.clip_by_value(128.0 - images, 0.0, 1.0)  # 1 where images < 128
    return images + below * (tf.clip_by_value(images + addition, 0.0, 255.0) - images)


def color(images, level, consts):
    return _blend(_grayscale(images), images, _enhance_factor(level))


def contrast(images, level, consts):
    """Blend with `min(H * W / 256, 255)`, as the official code does.

    It meant the mean gray level but averages the histogram's counts, so its
    target depends on the image size only (64 at 128 px, 196 at 224 px, 255
    from 256 px up). `contrast_pil` blends with the mean gray level instead.
    """
    shape = tf.shape(images)
    pixels = tf.cast(shape[1] * shape[2], tf.float32)
    return _blend(tf.floor(tf.minimum(pixels / 256.0, 255.0)), images, _enhance_factor(level))


def contrast_pil(images, level, consts):
    """PIL's Contrast: blend with the image's rounded mean gray level."""
    mean = tf.floor(tf.reduce_mean(_grayscale(images), axis=[1, 2, 3], keepdims=True) + 0.5)
    return _blend(mean, images, _enhance_factor(level))


def brightness(images, level, consts):
    return _blend(tf.zeros_like(images), images, _enhance_factor(level))


def sharpness(images, level, consts):
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "VALID")
    smooth = tf.floor(tf.clip_by_value(smooth, 0.0, 255.0))
    # The one-pixel border keeps the original values.
    middle = tf.concat([images[:, 1:-1, :1], smooth, images[:, 1:-1, -1:]], axis=2)
    degenerate = tf.concat([images[:, :1], middle, images[:, -1:]], axis=1)
    return _blend(degenerate, images, _enhance_factor(level))


def cutout(images, level, consts):
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    pad = tf.cast(_level_int(level, consts["cutout"]), tf.int32)[:, None, None]
    cy = tf.random.uniform([batch, 1, 1], 0, height, tf.int32)
    cx = tf.random.uniform([batch, 1, 1], 0, width, tf.int32)
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    in_rows = tf.cast((rows >= cy - pad) & (rows < cy + pad), tf.float32)[..., None]
    in_cols = tf.tile(tf.cast((cols >= cx - pad) & (cols < cx + pad), tf.float32)[..., None], [1, 1, 1, 3])
    return images + in_rows * in_cols * (FILL - images)


# Geometric ops: [B, 8] projective matrices mapping output to input pixels.


def rotate_matrix(level, consts, height, width):
    radians = tf.cast(_level_arg(level, 30.0) * _random_sign(level) * (math.pi / 180.0), tf.float64)
    # float32 sin/cos differ by an ulp between Eigen's vectorized and scalar
    # paths (so with the batch size), which moves nearest-pixel ties; rounding
    # the float64 values gives the correctly rounded ones every time.
    cos, sin = tf.cast(tf.cos(radians), tf.float32), tf.cast(tf.sin(radians), tf.float32)
    h, w = tf.cast(height - 1, tf.float32), tf.cast(width - 1, tf.float32)
    x_offset = (w - (cos * w - sin * h)) / 2.0
    y_offset = (h - (sin * w + cos * h)) / 2.0
    zero = tf.zeros_like(cos)
    return tf.stack([cos, -sin, x_offset, sin, cos, y_offset, zero, zero], axis=1)


def _affine(level, position):
    """Identity matrix with `level` placed at one entry."""
    one, zero = tf.ones_like(level), tf.zeros_like(level)
    entries = [one, zero, zero, zero, one, zero, zero, zero]
    entries[position] = level
    return tf.stack(entries, axis=1)


def shear_x_matrix(level, consts, height, width):
    return _affine(_level_arg(level, 0.3) * _random_sign(level), 1)


def shear_y_matrix(level, consts, height, width):
    return _affine(_level_arg(level, 0.3) * _random_sign(level), 3)


def translate_x_matrix(level, consts, height, width):
    return _affine(_level_arg(level, consts["translate"]) * _random_sign(level), 2)


def translate_y_matrix(level, consts, height, width):
    return _affine(_level_arg(level, consts["translate"]) * _random_sign(level), 5)


def transform(images: tf.Tensor, matrices: tf.Tensor) -> tf.Tensor:
    """Apply per-image projective matrices; nearest sampling, gray fill (as official).

    Runs on uint8 (the values are whole numbers), which is faster than float.
    """
    dtype = images.dtype
    moved = tf.raw_ops.ImageProjectiveTransformV3(
        images=images if dtype == tf.uint8 else tf.cast(images, tf.uint8),
        transforms=matrices,
        output_shape=tf.shape(images)[1:3],
        fill_value=FILL,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )
    return moved if dtype == tf.uint8 else tf.cast(moved, dtype)


PIXEL_OPS = {
    "AutoContrast": auto_contrast,
    "Equalize": equalize,
    "Invert": invert,
    "Posterize": posterize,
    "Solarize": solarize,
    "Color": color,
    "Contrast": contrast,
    "Brightness": brightness,
    "Sharpness": sharpness,
    "Cutout": cutout,
    "SolarizeAdd": solarize_add,
}

GEOMETRIC_OPS = {
    "Rotate": rotate_matrix,
    "ShearX": shear_x_matrix,
    "ShearY": shear_y_matrix,
    "TranslateX": translate_x_matrix,
    "TranslateY": translate_y_matrix,
}
