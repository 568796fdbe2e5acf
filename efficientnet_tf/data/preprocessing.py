"""Official per-family crop and resize, for training and evaluation.

Crops are computed from the image shape before decoding, so JPEG input only
decodes the crop window (`decode_and_crop_jpeg`); other formats are decoded
whole and sliced. Everything here works on one image; resizing to the batch's
size happens in `resize_and_flip`, after the crop, so that the size can be read
once per batch.

The defaults reproduce the official code of each family: tensorflow/tpu's (and
google/automl's V1 path) for V1, Lite and V2-B0..B3, google/automl's for
V2-S/M/L/XL. A deliberate deviation is a `Family` field, set with
`dataclasses.replace(FAMILIES[name], ...)` and passed as `family`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from efficientnet_tf.data import seeds

CROP_PADDING = 32  # eval crop keeps s / (s + 32) of the short side


@dataclasses.dataclass(frozen=True)
class Family:
    """How one model family's images are cropped, resized and augmented (see training.md)."""

    name: str
    area_range: tuple[float, float]
    min_object_covered: float
    max_attempts: int
    resize_method: str
    center_crop_fallback: bool  # V1 style: failed random crop -> center crop
    eval_crop_below: int | None  # center crop only for sizes below this
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3)
    # TF1 resize (no half-pixel centres; bicubic kernel -0.75), as tensorflow/tpu.
    legacy_resize: bool = True
    # Centre crop offset (h - crop + 1) // 2 (tpu) rather than (h - crop) // 2 (automl V2).
    center_offset_rounds_up: bool = True
    # None: the crop keeps s / (s + 32) of the short side (the papers, automl, tpu
    # until Nov 2021); a fraction f: padding round(s * (1 / f - 1)) (tpu since).
    eval_crop_fraction: float | None = None
    # Contrast blends with the mean gray level (PIL) instead of the official
    # histogram-count mean.
    pil_contrast: bool = False
    # JPEGs decode only the crop window (tpu); google/automl's V2 decodes the
    # whole image and slices, which differs at the window's edges when chroma
    # is subsampled.
    jpeg_window_decode: bool = True


FAMILIES: dict[str, Family] = {
    "efficientnet": Family("efficientnet", (0.08, 1.0), 0.1, 10, "bicubic", True, None),
    "efficientnet-lite": Family("efficientnet-lite", (0.08, 1.0), 0.1, 10, "bilinear", True, None),
    "efficientnetv2-base": Family("efficientnetv2-base", (0.08, 1.0), 0.1, 10, "bicubic", True, None),
    "efficientnetv2": Family(
        "efficientnetv2", (0.05, 1.0), 0.0, 100, "bilinear", False, 320,
        aspect_ratio_range=(0.75, 1.33), legacy_resize=False, center_offset_rounds_up=False,
        jpeg_window_decode=False,
    ),
}  # fmt: skip


def get_family(family: str | Family) -> Family:
    """A family by name (or a customized `Family`, returned as is), with an error listing the names."""
    if isinstance(family, Family):
        return family
    if family not in FAMILIES:
        raise ValueError(f"Unknown preprocessing family {family!r}; use one of {sorted(FAMILIES)}.")
    return FAMILIES[family]


def center_crop_window(shape: tf.Tensor, image_size: tf.Tensor, family: Family) -> tf.Tensor:
    """[y, x, h, w] of the centered square kept for evaluation (see `Family.eval_crop_fraction`)."""
    height, width = shape[0], shape[1]
    size = tf.cast(image_size, tf.float32)
    if family.eval_crop_fraction is None:
        padding = tf.constant(float(CROP_PADDING))
    else:
        padding = tf.round(size * (1.0 / family.eval_crop_fraction - 1.0))
    crop = tf.cast(size / (size + padding) * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    crop = tf.maximum(crop, 1)
    round_up = 1 if family.center_offset_rounds_up else 0
    return tf.stack([(height - crop + round_up) // 2, (width - crop + round_up) // 2, crop, crop])


def random_crop_window(
    shape: tf.Tensor, family: Family, image_size: tf.Tensor, seed: Optional[tf.Tensor] = None
) -> tf.Tensor:
    """[y, x, h, w] of an Inception-style random crop, per the family's rules; `seed` keys the draw."""
    shape = tf.cast(shape[:3], tf.int32)
    whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([shape[:2], [3]], 0),
        bounding_boxes=whole,
        seed=seeds.resolve(seed),
        min_object_covered=family.min_object_covered,
        aspect_ratio_range=family.aspect_ratio_range,
        area_range=family.area_range,
        max_attempts=family.max_attempts,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    if not family.center_crop_fallback:
        return window
    # Sampling gives back the whole image when all attempts fail; V1 then
    # falls back to the evaluation crop. The official test compares all three
    # dimensions with the 3-channel decode, so a grayscale or CMYK JPEG never
    # falls back.
    failed = tf.reduce_all(tf.equal(size[:2], shape[:2])) & tf.equal(shape[2], 3)
    return tf.cond(failed, lambda: center_crop_window(shape, image_size, family), lambda: window)


def decode_window(encoded: tf.Tensor, window_fn, jpeg_window_decode: bool = True) -> tf.Tensor:
    """Decode an encoded image to uint8 RGB, keeping only `window_fn(shape)`.

    With `jpeg_window_decode` a JPEG decodes only the window (faster); anything
    else is decoded whole and sliced. Grayscale, RGBA, palette, CMYK and 16-bit
    images all come out as 3-channel uint8; animated GIFs give their first frame.
    """

    def jpeg_window():
        window = window_fn(tf.io.extract_jpeg_shape(encoded))
        return tf.io.decode_and_crop_jpeg(encoded, window, channels=3)

    def whole():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return crop(image, window_fn(tf.shape(image)))

    if not jpeg_window_decode:
        return whole()
    return tf.cond(tf.io.is_jpeg(encoded), jpeg_window, whole)


def crop(image: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Slice a decoded [h, w, c] image to the [y, x, h, w] window."""
    return tf.slice(image, [window[0], window[1], 0], [window[2], window[3], -1])


def eval_window_fn(family: Family, image_size: int):
    """The crop rule for evaluation: center crop, or whole image for large V2 sizes."""
    if family.eval_crop_below is not None and image_size >= family.eval_crop_below:
        return lambda shape: tf.stack([0, 0, shape[0], shape[1]])
    return lambda shape: center_crop_window(shape, image_size, family)


def resize(image: tf.Tensor, image_size: tf.Tensor, family: Family) -> tf.Tensor:
    """Resize to a square with the family's method, as float32.

    Not clipped: the official code feeds bicubic overshoot (a few values below
    0 or above 255) to the model at evaluation and without augmentation.
    """
    size = tf.stack([image_size, image_size])
    if not family.legacy_resize:
        return tf.image.resize(image, size, method=family.resize_method)
    resize_op = {"bicubic": tf.raw_ops.ResizeBicubic, "bilinear": tf.raw_ops.ResizeBilinear}[family.resize_method]
    return resize_op(images=image[None], size=size, align_corners=False, half_pixel_centers=False)[0]


def train_finish(
    image: tf.Tensor, image_size: tf.Tensor, family: Family, quantize: bool, seed: Optional[tf.Tensor] = None
) -> tf.Tensor:
    """Resize a training crop and flip it at random (keyed by `seed`); `quantize` for augmentation.

    The official code clips and casts to uint8 before AutoAugment/RandAugment
    (whose ops then stay on that grid) and keeps the float image otherwise.
    """
    image = resize(image, image_size, family)
    if quantize:  # flipping after the cast moves a quarter of the bytes
        image = tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8)
    return tf.image.stateless_random_flip_left_right(image, seeds.resolve(seed))
