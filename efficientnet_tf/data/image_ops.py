"""The 16 AutoAugment/RandAugment image ops, batched, with a level per image.

Images are uint8 [B, H, W, 3] in and out, as in the official code. `level` is
[B] on the official 0-10 scale where 10 is each op's "maximum" (larger
extrapolates); `consts` carries the policy's pixel constants (cutout,
translate). Ops whose official argument has a random sign draw it per image.
Geometric ops are described by a projective matrix instead, so a batch needs
one transform call.

Every op reproduces the official TF ops bit for bit, including where they are
odd: the level-to-argument arithmetic is done in float64 as the official
Python does, Posterize's shift and Solarize's threshold wrap as a uint8 does,
and Contrast blends towards the histogram's mean count (`contrast_pil` is the
PIL form). Float ops repeat the official float32 operations in the same order,
so the results are the same bits on the same machine; Sharpness runs the
official depthwise convolution, whose summation order is the CPU's.
tests/test_data_augment_golden.py pins this.

Speed on CPU (benchmarks/bench_pipeline.py): each op takes the fewest passes
over the pixels it can, uint8 bitwise ops where the result is a bit pattern
(Invert, Posterize, Solarize, SolarizeAdd, Cutout), and no broadcasting over
the channel axis, which TF's CPU kernels do an element at a time: per-channel
values are laid out as a [B, 1, W * 3] row over [B, H, W * 3] pixels instead.
"""

from __future__ import annotations

import math
from typing import Optional

import tensorflow as tf

from efficientnet_tf.data import seeds

MAX_LEVEL = 10.0
FILL = 128  # official replace value for emptied pixels


def _col(v: tf.Tensor) -> tf.Tensor:
    return tf.reshape(v, [-1, 1, 1, 1])


def _level_arg(level: tf.Tensor, scale: float, offset: float = 0.0) -> tf.Tensor:
    """`level / 10 * scale + offset` in float64 (the official code's Python floats), as float32."""
    return tf.cast(tf.cast(level, tf.float64) / MAX_LEVEL * scale + offset, tf.float32)


def _level_int(level: tf.Tensor, scale: float) -> tf.Tensor:
    """`int(level / 10 * scale)`, as float32."""
    return tf.cast(tf.floor(tf.cast(level, tf.float64) / MAX_LEVEL * scale), tf.float32)


def _random_sign(level: tf.Tensor, seed: Optional[tf.Tensor]) -> tf.Tensor:
    return tf.where(tf.random.stateless_uniform(tf.shape(level), seeds.resolve(seed)) < 0.5, -1.0, 1.0)


def _uint8_col(value: tf.Tensor) -> tf.Tensor:
    """A per-image whole number in [0, 255] as a uint8 column."""
    return _col(tf.cast(value, tf.uint8))


def _to_uint8(images: tf.Tensor) -> tf.Tensor:
    """Clip to [0, 255] and truncate, as the official casts do."""
    return tf.cast(tf.clip_by_value(images, 0.0, 255.0), tf.uint8)


def _rows(images: tf.Tensor) -> tf.Tensor:
    """[B, H, W, C] as [B, H, W * C], for `_channel_row` values."""
    shape = tf.shape(images)
    return tf.reshape(images, [shape[0], shape[1], shape[2] * shape[3]])


def _channel_row(values: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """[B, C] per-channel values as a [B, 1, W * C] row matching `_rows`."""
    return tf.reshape(tf.tile(values[:, None, :], [1, width, 1]), [tf.shape(values)[0], 1, -1])


def _blend(degenerate: tf.Tensor, images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL ImageEnhance, as the official blend: `degenerate + factor * (images - degenerate)`, to uint8."""
    return _to_uint8(degenerate + _col(factor) * (images - degenerate))


def _enhance_factor(level: tf.Tensor) -> tf.Tensor:
    return _level_arg(level, 1.8, 0.1)


def auto_contrast(images, level, consts):
    """Stretch each channel to [0, 255]; a constant channel stays as it is."""
    shape = tf.shape(images)
    pixels = tf.reshape(images, [shape[0], -1, 3])
    lo = tf.cast(tf.reduce_min(pixels, axis=1), tf.float32)
    hi = tf.cast(tf.reduce_max(pixels, axis=1), tf.float32)
    stretch = hi > lo
    scale = tf.where(stretch, 255.0 / tf.maximum(hi - lo, 1.0), 1.0)
    offset = tf.where(stretch, -lo * scale, 0.0)  # x * 1 + 0 is x: a constant channel is unchanged
    rows = tf.cast(_rows(images), tf.float32)
    stretched = rows * _channel_row(scale, shape[2]) + _channel_row(offset, shape[2])
    return tf.reshape(_to_uint8(stretched), shape)


def equalize(images, level, consts):
    """PIL Equalize per image and channel: one bincount and one lookup per batch."""
    shape = tf.shape(images)
    planes = shape[0] * 3
    pixels = shape[1] * shape[2]
    offsets = _channel_row(tf.reshape(tf.range(planes) * 256, [-1, 3]), shape[2])
    index = tf.cast(_rows(images), tf.int32) + offsets  # value + 256 * (image * 3 + channel)
    hist = tf.reshape(tf.math.bincount(index, minlength=planes * 256, maxlength=planes * 256), [-1, 256])
    top = tf.reshape(tf.cast(tf.reduce_max(tf.reshape(images, [shape[0], -1, 3]), axis=1), tf.int32), [-1])
    step = (pixels - tf.gather(hist, top, batch_dims=1)) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    lut = (tf.cumsum(hist, axis=1) + safe_step // 2) // safe_step
    lut = tf.clip_by_value(tf.concat([tf.zeros_like(lut[:, :1]), lut[:, :-1]], 1), 0, 255)
    lut = tf.where(step[:, None] > 0, lut, tf.range(256)[None, :])  # flat channel: unchanged
    # gather_nd looks up scalars about twice as fast as gather on CPU.
    return tf.reshape(tf.gather_nd(tf.cast(tf.reshape(lut, [-1]), tf.uint8), index[..., None]), shape)


def invert(images, level, consts):
    return tf.bitwise.invert(images)


def posterize(images, level, consts):
    """Keep `int(level / 10 * 4)` bits: a uint8 shift by `8 - bits`.

    The shift is a uint8 too, so it wraps modulo 256, and TF clamps shifts
    above 7 to 7: levels below 5 and from 22.5 up give `x & 128`.
    """
    shift = tf.minimum(tf.math.floormod(8.0 - _level_int(level, 4.0), 256.0), 7.0)
    return tf.bitwise.bitwise_and(images, _uint8_col(256.0 - tf.pow(2.0, shift)))


def _where_mask(condition: tf.Tensor) -> tf.Tensor:
    """A boolean tensor as uint8 255/0, to select with bitwise ops (faster than tf.where on uint8)."""
    return tf.cast(condition, tf.uint8) * tf.constant(255, tf.uint8)


def solarize(images, level, consts):
    """Invert pixels at or above `int(level / 10 * 256)`, a threshold that wraps modulo 256."""
    threshold = _uint8_col(tf.math.floormod(_level_int(level, 256.0), 256.0))
    return tf.bitwise.bitwise_xor(images, _where_mask(images >= threshold))


def solarize_add(images, level, consts):
    """Add `int(level / 10 * 110)` to pixels below 128, saturating at 255."""
    headroom = tf.bitwise.invert(images)  # 255 - x, and >= 128 exactly where x < 128
    addition = tf.minimum(_uint8_col(tf.minimum(_level_int(level, 110.0), 255.0)), headroom)
    below = tf.bitwise.right_shift(headroom, 7) * tf.constant(255, tf.uint8)
    return images + tf.bitwise.bitwise_and(addition, below)


def color(images, level, consts):
    """Blend with the gray image (tf.image.rgb_to_grayscale on uint8, as the official op)."""
    shape = tf.shape(images)
    gray = tf.reshape(tf.tile(tf.reshape(tf.image.rgb_to_grayscale(images), [-1, 1]), [1, 3]), shape)
    return _blend(tf.cast(gray, tf.float32), tf.cast(images, tf.float32), _enhance_factor(level))


def contrast(images, level, consts):
    """Blend with `min(H * W / 256, 255)`, as the official code does.

    It meant the mean gray level but averages the histogram's counts, so its
    target depends on the image size only (64 at 128 px, 196 at 224 px, 255
    from 256 px up). `contrast_pil` blends with the mean gray level instead.
    """
    shape = tf.shape(images)
    pixels = tf.cast(shape[1] * shape[2], tf.float32)
    return _blend(tf.floor(tf.minimum(pixels / 256.0, 255.0)), tf.cast(images, tf.float32), _enhance_factor(level))


def contrast_pil(images, level, consts):
    """PIL's Contrast: blend with the image's rounded mean gray level."""
    gray = tf.cast(tf.image.rgb_to_grayscale(images), tf.float32)
    mean = tf.floor(tf.reduce_mean(gray, axis=[1, 2, 3], keepdims=True) + 0.5)
    return _blend(mean, tf.cast(images, tf.float32), _enhance_factor(level))


def brightness(images, level, consts):
    # The blend from black: 0 + f * (x - 0) is f * x exactly.
    return _to_uint8(_col(_enhance_factor(level)) * tf.cast(images, tf.float32))


_SMOOTHING = [[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]


def _onednn_enabled() -> bool:
    """Whether TF runs oneDNN kernels (TF_ENABLE_ONEDNN_OPTS, default on CPUs with AVX-512 VNNI/BF16/AMX).

    Unknown counts as on, which keeps Sharpness on its plain batched call.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # a TF without the probe
        return True


# TF's own depthwise kernel (Eigen, used wherever oneDNN is off: the AVX2 default)
# computes every output channel alike: an accumulator of 0 and the nine
# products multiply-added in filter order, in vector registers, the last
# partial register the same way. So which channel slot an image's channel
# sits in cannot change its bits, only the speed: with 3 channels every pixel
# pays for a whole register of 8 (AVX) and a copy of its 3x3 patch.
_STRIPS = 8  # horizontal strips per image laid side by side as channels: 24 channels per image
_EIGEN_DEPTHWISE = not _onednn_enabled()


def _degenerate(x: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
    """The official smoothing of x = float32(images) [B, H, W, 3], floored: [B, H-2, W-2, 3] float32.

    The smoothing is the VALID depthwise convolution. With oneDNN it is the
    plain batched call (oneDNN vectorizes over pixels, and its summation order
    is its own). With TF's Eigen kernel the same op runs on a re-laid-out
    input: each image is cut into `_STRIPS` horizontal strips of `rows + 2`
    rows (overlapping by the two rows the 3x3 window needs), and all strips of
    all images become the channels of one image, [1, rows + 2, W, _STRIPS * B *
    3]: 3-4x faster on AVX2, and every output value the kernel's same nine
    multiply-adds. The result is then floored by a uint8 cast, which moves a
    quarter of the bytes back: the smoothing is a weighted mean of 0-255 with
    non-negative weights, so it lies in [0, 256) and truncation is the floor of
    its clip to [0, 255].
    """
    kernel = (tf.constant(_SMOOTHING) / 13.0)[:, :, None, None]
    if not _EIGEN_DEPTHWISE:
        smooth = tf.nn.depthwise_conv2d(x, tf.tile(kernel, [1, 1, 3, 1]), [1, 1, 1, 1], "VALID")
        return tf.floor(tf.clip_by_value(smooth, 0.0, 255.0))
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    out_rows = tf.maximum(height - 2, 0)
    rows = tf.maximum((out_rows + _STRIPS - 1) // _STRIPS, 1)  # output rows per strip
    # Input rows of each strip; past the bottom the last row repeats (their outputs are dropped).
    source_rows = tf.range(_STRIPS)[:, None] * rows + tf.range(rows + 2)[None, :]
    source_rows = tf.minimum(tf.reshape(source_rows, [-1]), height - 1)
    strips = tf.reshape(tf.gather(images, source_rows, axis=1), [batch, _STRIPS, rows + 2, width, 3])
    strips = tf.reshape(tf.transpose(strips, [2, 3, 1, 0, 4]), [1, rows + 2, width, _STRIPS * batch * 3])
    channels = tf.tile(kernel, [1, 1, _STRIPS * batch * 3, 1])
    smooth = tf.nn.depthwise_conv2d(tf.cast(strips, tf.float32), channels, [1, 1, 1, 1], "VALID")
    smooth = tf.reshape(tf.cast(smooth, tf.uint8), [rows, width - 2, _STRIPS, batch, 3])
    smooth = tf.reshape(tf.transpose(smooth, [3, 2, 0, 1, 4]), [batch, _STRIPS * rows, width - 2, 3])
    return tf.cast(smooth[:, :out_rows], tf.float32)


def sharpness(images, level, consts):
    """Blend with the 3x3 smoothing [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13; the border stays.

    The smoothing is the official op itself, `tf.nn.depthwise_conv2d`: its
    kernels add the nine products in an order that differs between CPU
    kinds (oneDNN on AVX-512) and graph rewrites, so only the same op gives
    the official bits everywhere. Where the weighted sum is a multiple of 13
    the float result sits on a whole number, and the order decides between
    k and k - 1; elsewhere every order floors to the same level. (`_degenerate`
    lays the input out for TF's own kernel where that one runs.)
    """
    x = tf.cast(images, tf.float32)
    middle = _blend(_degenerate(x, images), x[:, 1:-1, 1:-1], _enhance_factor(level))
    # The one-pixel border keeps the original values.
    middle = tf.concat([images[:, 1:-1, :1], middle, images[:, 1:-1, -1:]], axis=2)
    return tf.concat([images[:, :1], middle, images[:, -1:]], axis=1)


def cutout(images, level, consts, seed: Optional[tf.Tensor] = None):
    """Gray out a square of half-side `int(level / 10 * cutout)` around a random centre."""
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    pad = tf.cast(_level_int(level, consts["cutout"]), tf.int32)[:, None, None]
    keys = seeds.split(seeds.resolve(seed), 2)
    cy = tf.random.stateless_uniform([batch, 1, 1], keys[0], 0, height, tf.int32)
    cx = tf.random.stateless_uniform([batch, 1, 1], keys[1], 0, width, tf.int32)
    rows = tf.range(height)[None, :, None]
    cols = tf.repeat(tf.range(width), 3)[None, None, :]  # one column per channel, as `_rows`
    in_rows = _where_mask((rows >= cy - pad) & (rows < cy + pad))
    in_cols = _where_mask((cols >= cx - pad) & (cols < cx + pad))
    box = tf.bitwise.bitwise_and(in_rows, in_cols)
    pixels = _rows(images)
    # x where box is 0, FILL where it is 255: x ^ ((x ^ FILL) & box).
    to_fill = tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(pixels, tf.constant(FILL, tf.uint8)), box)
    return tf.reshape(tf.bitwise.bitwise_xor(pixels, to_fill), shape)


# Geometric ops: [B, 8] projective matrices mapping output to input pixels.


def rotate_matrix(level, consts, height, width, seed: Optional[tf.Tensor] = None):
    radians = tf.cast(_level_arg(level, 30.0) * _random_sign(level, seed) * (math.pi / 180.0), tf.float64)
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


def shear_x_matrix(level, consts, height, width, seed: Optional[tf.Tensor] = None):
    return _affine(_level_arg(level, 0.3) * _random_sign(level, seed), 1)


def shear_y_matrix(level, consts, height, width, seed: Optional[tf.Tensor] = None):
    return _affine(_level_arg(level, 0.3) * _random_sign(level, seed), 3)


def translate_x_matrix(level, consts, height, width, seed: Optional[tf.Tensor] = None):
    return _affine(_level_arg(level, consts["translate"]) * _random_sign(level, seed), 2)


def translate_y_matrix(level, consts, height, width, seed: Optional[tf.Tensor] = None):
    return _affine(_level_arg(level, consts["translate"]) * _random_sign(level, seed), 5)


def transform(images: tf.Tensor, matrices: tf.Tensor) -> tf.Tensor:
    """Apply per-image affine [B, 8] matrices (output to input pixel); nearest pixel, gray fill.

    The official ops call `ImageProjectiveTransformV3` (NEAREST, CONSTANT,
    fill 128) on the image, which works a channel at a time. Here the same op
    moves a one-channel image of pixel indices instead, so every source pixel
    is the op's own choice (its coordinate arithmetic, on any CPU and under
    any graph rewrite), and one gather then moves whole pixels, index -1
    (outside) picking the fill pixel.
    """
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    count = batch * height * width
    index = tf.reshape(tf.range(count), [batch, height, width, 1])
    source = tf.raw_ops.ImageProjectiveTransformV3(
        images=index, transforms=matrices, output_shape=[height, width], fill_value=-1.0,
        interpolation="NEAREST", fill_mode="CONSTANT",
    )  # fmt: skip
    source = tf.where(source < 0, count, source)
    pixels = tf.reshape(images, [-1, 3])
    pixels = tf.concat([pixels, tf.fill([1, 3], tf.constant(FILL, images.dtype))], 0)  # index B*H*W: fill
    return tf.gather_nd(pixels, source)  # faster than tf.gather on CPU


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

# Pixel ops that draw at random take a `seed` too; every geometric op does (its sign).
RANDOM_PIXEL_OPS = ("Cutout",)

GEOMETRIC_OPS = {
    "Rotate": rotate_matrix,
    "ShearX": shear_x_matrix,
    "ShearY": shear_y_matrix,
    "TranslateX": translate_x_matrix,
    "TranslateY": translate_y_matrix,
}
