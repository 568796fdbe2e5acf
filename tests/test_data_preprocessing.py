"""Official crops, resize methods and decoding of every supported format."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf.data import preprocessing as pp


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def rgb(h=40, w=50, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_family_constants_match_reference():
    v2, v1 = pp.get_family("efficientnetv2"), pp.get_family("efficientnet")
    assert (v2.area_range, v2.min_object_covered, v2.resize_method, v2.eval_crop_below) == ((0.05, 1.0), 0.0, "bilinear", 320)
    assert (v1.area_range, v1.min_object_covered, v1.max_attempts, v1.resize_method) == ((0.08, 1.0), 0.1, 10, "bicubic")
    assert pp.get_family("efficientnetv2-base").resize_method == "bicubic"
    assert pp.get_family("efficientnet-lite").resize_method == "bilinear"
    with pytest.raises(ValueError, match="efficientnetv2-base"):
        pp.get_family("resnet")


def test_center_crop_keeps_s_over_s_plus_32_of_short_side():
    y, x, h, w = pp.center_crop_window(tf.constant([256, 320, 3]), tf.constant(224)).numpy()
    assert (h, w) == (224, 224)  # 224 / 256 * 256
    assert (y, x) == (16, 48)


def test_eval_crop_depends_on_family_and_size():
    shape = tf.constant([400, 500, 3])
    assert list(pp.eval_window_fn(pp.FAMILIES["efficientnetv2"], 384)(shape).numpy()) == [0, 0, 400, 500]
    assert pp.eval_window_fn(pp.FAMILIES["efficientnetv2"], 300)(shape).numpy()[2] == int(300 / 332 * 400)
    assert pp.eval_window_fn(pp.FAMILIES["efficientnet"], 600)(shape).numpy()[2] == int(600 / 632 * 400)


@pytest.mark.parametrize("family,low", [("efficientnetv2", 0.05), ("efficientnet", 0.08)])
def test_random_crop_area_and_aspect_ranges(family, low):
    fam = pp.FAMILIES[family]
    shape = tf.constant([200, 200, 3])
    windows = np.array([pp.random_crop_window(shape, fam, tf.constant(224)).numpy() for _ in range(300)])
    area = windows[:, 2] * windows[:, 3] / 200**2
    aspect = windows[:, 3] / windows[:, 2]
    assert area.min() >= low - 0.01 and area.max() <= 1.0
    assert area.min() < 0.2  # small crops do happen
    assert aspect.min() >= 0.7 and aspect.max() <= 1.4
    assert (windows[:, :2] + windows[:, 2:] <= 200).all()


def test_v1_failed_sampling_falls_back_to_center_crop():
    # A 1x200 strip cannot hold an aspect-3/4..4/3 crop of >=8% area.
    fam = pp.FAMILIES["efficientnet"]
    y, x, h, w = pp.random_crop_window(tf.constant([2, 200, 3]), fam, tf.constant(224)).numpy()
    assert (h, w) == (1, 1) and x == 100  # int(224/256 * 2) = 1, centered


def test_jpeg_decodes_only_the_window_with_same_pixels():
    data = encode(Image.fromarray(rgb(64, 80)), "JPEG", quality=95, subsampling=0)  # 4:4:4, so edges match exactly
    window = lambda shape: tf.constant([8, 16, 32, 40])
    part = pp.decode_window(tf.constant(data), window).numpy()
    whole = tf.io.decode_jpeg(data, channels=3).numpy()
    assert part.shape == (32, 40, 3)
    np.testing.assert_array_equal(part, whole[8:40, 16:56])


@pytest.mark.parametrize(
    "make",
    [
        lambda a: encode(Image.fromarray(a).convert("L"), "JPEG"),
        lambda a: encode(Image.fromarray(a).convert("CMYK"), "JPEG"),
        lambda a: encode(Image.fromarray(a).convert("RGBA"), "PNG"),
        lambda a: encode(Image.fromarray(a).convert("P"), "PNG"),
        lambda a: encode(Image.fromarray(a[..., 0].astype(np.uint16) * 257), "PNG"),
        lambda a: encode(Image.fromarray(a), "GIF"),
        lambda a: encode(Image.fromarray(a), "BMP"),
    ],
    ids=["gray-jpeg", "cmyk-jpeg", "rgba-png", "palette-png", "16bit-png", "gif", "bmp"],
)
def test_all_formats_decode_to_rgb_uint8(make):
    image = pp.decode_window(tf.constant(make(rgb())), lambda s: tf.stack([0, 0, s[0], s[1]]))
    assert image.dtype == tf.uint8 and image.shape == (40, 50, 3)
    assert 60 < float(tf.reduce_mean(tf.cast(image, tf.float32))) < 200


def test_train_finish_upsamples_small_images_to_uint8_grid():
    out = pp.train_finish(tf.constant(rgb(5, 7)), tf.constant(32), pp.FAMILIES["efficientnet"])
    assert out.shape == (32, 32, 3) and out.dtype == tf.uint8
