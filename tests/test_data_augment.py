"""RandAugment / AutoAugment ops against PIL and the official magnitude scale."""

import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from efficientnet_tf.data import augment, image_ops

CONSTS = augment.RANDAUGMENT_CONSTS


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(30, 200, (24, 32, 3))
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)


def run(op, image, level):
    out = op(tf.constant(image[None], tf.uint8), tf.constant([float(level)]), CONSTS)
    assert out.dtype == tf.uint8  # the official ops take and give uint8
    return out[0].numpy().astype(np.float32)


@pytest.mark.parametrize(
    "op,level,pil",
    [
        (image_ops.invert, 0, ImageOps.invert),
        (image_ops.auto_contrast, 0, ImageOps.autocontrast),
        (image_ops.equalize, 0, ImageOps.equalize),
        (image_ops.posterize, 10, lambda im: ImageOps.posterize(im, 4)),  # int(10/10 * 4) bits
        (image_ops.solarize, 5, lambda im: ImageOps.solarize(im, 128)),  # int(5/10 * 256)
        (image_ops.color, 10, lambda im: ImageEnhance.Color(im).enhance(1.9)),  # 10/10 * 1.8 + 0.1
        (image_ops.brightness, 5, lambda im: ImageEnhance.Brightness(im).enhance(1.0)),
        (image_ops.contrast_pil, 15, lambda im: ImageEnhance.Contrast(im).enhance(2.8)),  # the PIL option
        (image_ops.sharpness, 10, lambda im: ImageEnhance.Sharpness(im).enhance(1.9)),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_pixel_ops_match_pil(op, level, pil, image):
    ours = run(op, image, level)
    theirs = np.asarray(pil(Image.fromarray(image)), np.float32)
    assert np.abs(ours - theirs).max() <= 2  # rounding of float vs PIL's integer math
    # Contrast at 2.8x amplifies a one-level difference in the rounded gray mean.
    assert np.abs(ours - theirs).mean() < (1.5 if op is image_ops.contrast_pil else 0.6)


def test_solarize_add_adds_110_at_level_10_below_128(image):
    ours = run(image_ops.solarize_add, image, 10)
    low = image < 128
    np.testing.assert_array_equal(ours[low], np.minimum(image[low].astype(int) + 110, 255))
    np.testing.assert_array_equal(ours[~low], image[~low])


def test_geometric_magnitudes_follow_official_scale():
    level = tf.constant([10.0, 15.0])
    rot = image_ops.rotate_matrix(level, CONSTS, 100, 100).numpy()
    angles = np.degrees(np.abs(np.arctan2(rot[:, 3], rot[:, 0])))
    np.testing.assert_allclose(angles, [30.0, 45.0], atol=1e-3)  # extrapolates past 10
    np.testing.assert_allclose(np.abs(image_ops.shear_x_matrix(level, CONSTS, 9, 9).numpy()[:, 1]), [0.3, 0.45], rtol=1e-6)
    np.testing.assert_allclose(np.abs(image_ops.translate_y_matrix(level, CONSTS, 9, 9).numpy()[:, 5]), [100, 150])
    signs = np.sign(image_ops.shear_y_matrix(tf.fill([400], 10.0), CONSTS, 9, 9).numpy()[:, 3])
    assert 120 < (signs > 0).sum() < 280  # random sign per image


def test_cutout_box_is_2x_pad_and_gray():
    x = tf.zeros([64, 200, 200, 3], tf.uint8)
    out = image_ops.cutout(x, tf.fill([64], 10.0), CONSTS).numpy()  # pad 40 -> 80 px box
    gray = (out[..., 0] == 128).sum(axis=(1, 2))
    assert gray.max() == 80 * 80 and gray.min() > 0
    assert set(np.unique(out)) <= {0, 128}
    np.testing.assert_array_equal(out[..., 0], out[..., 2])  # every channel of a box pixel


def test_translate_moves_content_and_fills_128():
    x = tf.reshape(tf.range(4 * 300 * 3, dtype=tf.float32) % 255, [1, 4, 300, 3])
    out = image_ops.transform(x, image_ops.translate_x_matrix(tf.constant([10.0]), CONSTS, 4, 300)).numpy()
    assert (out == 128).all(axis=(0, 1, 3)).sum() == 100  # 100 px emptied


def test_randaugment_uses_the_16_official_ops_and_chooses_per_image():
    assert augment.RANDAUGMENT_OPS == (
        "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
        "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout", "SolarizeAdd",
    )  # fmt: skip
    rng = np.random.default_rng(1)
    one = rng.integers(0, 256, (1, 32, 32, 3)).astype(np.float32)
    out = augment.randaugment(tf.constant(np.repeat(one, 32, 0)), tf.constant(10.0)).numpy()
    distinct = {out[i].tobytes() for i in range(32)}
    assert len(distinct) > 12  # same input, different ops per image
    assert np.array_equal(out, np.floor(out)) and out.min() >= 0 and out.max() <= 255


def test_apply_ops_routes_each_image_to_its_op():
    x = tf.constant(np.random.default_rng(2).integers(0, 256, (4, 16, 16, 3)), tf.uint8)
    ops = tf.constant([2, -1, 2, 4])  # Invert, none, Invert, Posterize
    out = augment.apply_ops(x, ops, tf.fill([4], 10.0), CONSTS).numpy()
    np.testing.assert_array_equal(out[0], 255 - x[0].numpy())
    np.testing.assert_array_equal(out[1], x[1].numpy())
    np.testing.assert_array_equal(out[2], 255 - x[2].numpy())
    np.testing.assert_array_equal(out[3], np.floor(x[3].numpy() / 16) * 16)


def test_magnitude_is_a_tensor_so_one_trace_serves_all_values():
    step = tf.function(lambda x, m: augment.randaugment(x, m))
    x = tf.zeros([4, 16, 16, 3])
    for magnitude in (5.0, 10.0, 15.0):
        step(x, tf.constant(magnitude))
    assert step.experimental_get_tracing_count() == 1


def test_autoaugment_policy_v0_is_25_pairs_and_runs():
    assert len(augment.POLICY_V0) == 25 and all(len(p) == 2 for p in augment.POLICY_V0)
    x = tf.constant(np.random.default_rng(4).integers(0, 256, (16, 24, 24, 3)), tf.float32)
    out = augment.autoaugment(x).numpy()
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    assert (np.abs(out - x.numpy()).reshape(16, -1).max(axis=1) > 0).sum() >= 4
