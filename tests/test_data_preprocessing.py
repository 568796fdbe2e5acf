"""Official crops, resize methods and decoding of every supported format.

The resize references below are written from the TF1 definition (sample
`out * in / out_size`, no half-pixel shift; Keys cubic with a = -0.75 tabulated
at 1/1024 steps; edge indices clamped), independently of the TF ops the library calls.
"""

import dataclasses
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
    assert v2.aspect_ratio_range == (0.75, 1.33) and v1.aspect_ratio_range == (3 / 4, 4 / 3)  # TF default vs tpu
    assert [f.legacy_resize for f in pp.FAMILIES.values()] == [True, True, True, False]
    assert pp.get_family(v1) is v1  # a customized Family passes through
    with pytest.raises(ValueError, match="efficientnetv2-base"):
        pp.get_family("resnet")


def test_center_crop_keeps_s_over_s_plus_32_of_short_side():
    y, x, h, w = pp.center_crop_window(tf.constant([256, 320, 3]), tf.constant(224), pp.FAMILIES["efficientnet"]).numpy()
    assert (h, w) == (224, 224)  # 224 / 256 * 256
    assert (y, x) == (16, 48)


def test_center_crop_offset_rounds_up_for_v1_and_down_for_v2():
    shape = tf.constant([257, 321, 3])  # odd margins: 33 and 97
    assert list(pp.center_crop_window(shape, tf.constant(224), pp.FAMILIES["efficientnet"]).numpy()) == [17, 49, 224, 224]
    assert list(pp.center_crop_window(shape, tf.constant(224), pp.FAMILIES["efficientnetv2"]).numpy()) == [16, 48, 224, 224]


def test_eval_crop_fraction_option_follows_tpu_since_2021():
    """tpu: padding round(s * (1/0.875 - 1)); equal to 32 at 224, 86 at 600 (B7)."""
    tpu = dataclasses.replace(pp.FAMILIES["efficientnet"], eval_crop_fraction=0.875)
    shape = tf.constant([400, 500, 3])
    assert pp.center_crop_window(shape, tf.constant(224), tpu).numpy()[2] == int(224 / 256 * 400)
    assert pp.center_crop_window(shape, tf.constant(600), tpu).numpy()[2] == int(600 / 686 * 400) == 349
    assert pp.center_crop_window(shape, tf.constant(600), pp.FAMILIES["efficientnet"]).numpy()[2] == 379


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


def test_v1_fallback_needs_three_channels_as_the_official_shape_test():
    """A grayscale JPEG's shape has 1 channel, so the official comparison never falls back."""
    fam = pp.FAMILIES["efficientnet"]
    assert list(pp.random_crop_window(tf.constant([2, 200, 1]), fam, tf.constant(224)).numpy()) == [0, 0, 2, 200]


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


def cubic(x, a=-0.75):
    x = abs(x)
    return ((a + 2) * x - (a + 3)) * x * x + 1 if x <= 1 else ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def tf1_weights(n_in, n_out, kind):
    """[n_out, n_in] interpolation matrix of TF1 resizing along one axis."""
    m = np.zeros([n_out, n_in])
    for o in range(n_out):
        src = o * n_in / n_out
        base = int(np.floor(src))
        t = src - base
        if kind == "bilinear":
            taps = [(base, 1 - t), (base + 1, t)]
        else:  # TF tabulates the kernel at 1/1024 steps of t
            t = round(t * 1024) / 1024
            taps = [(base + k, cubic(t - k)) for k in (-1, 0, 1, 2)]
        for i, w in taps:
            m[o, min(max(i, 0), n_in - 1)] += w
    return m


@pytest.mark.parametrize("family", ["efficientnet", "efficientnet-lite", "efficientnetv2-base"])
def test_v1_lite_and_v2_base_resize_like_tf1(family):
    fam = pp.FAMILIES[family]
    image = rgb(9, 13, seed=3)
    for out in (5, 24):
        ys, xs = tf1_weights(9, out, fam.resize_method), tf1_weights(13, out, fam.resize_method)
        expected = np.einsum("oi,ijc,pj->opc", ys, image.astype(np.float64), xs)
        np.testing.assert_allclose(pp.resize(tf.constant(image), tf.constant(out), fam).numpy(), expected, atol=2e-3)


def test_v2_resizes_with_tf2_half_pixel_bilinear():
    image = tf.constant(rgb(9, 13, seed=3))
    ours = pp.resize(image, tf.constant(24), pp.FAMILIES["efficientnetv2"]).numpy()
    np.testing.assert_array_equal(ours, tf.image.resize(image, [24, 24]).numpy())
    assert not np.allclose(ours, pp.resize(image, tf.constant(24), pp.FAMILIES["efficientnet-lite"]).numpy(), atol=1)


def edges(size=16):
    image = np.zeros([size, size, 3], np.uint8)
    image[:, size // 2 :] = 255
    return tf.constant(image)


def test_bicubic_overshoot_is_kept_unless_quantized_for_augmentation():
    fam = pp.FAMILIES["efficientnet"]
    resized = pp.resize(edges(), tf.constant(40), fam).numpy()
    assert resized.min() < -5 and resized.max() > 260  # the official eval feeds these to the model
    plain = pp.train_finish(edges(), tf.constant(40), fam, quantize=False)
    assert plain.dtype == tf.float32 and plain.numpy().min() < -5
    out = pp.train_finish(edges(), tf.constant(40), fam, quantize=True)
    assert out.shape == (40, 40, 3) and out.dtype == tf.uint8
    assert {out.numpy().min(), out.numpy().max()} == {0, 255}  # clipped, then cast


@pytest.mark.parametrize("augmentation,on_grid", [(None, False), ("randaugment", True)])
def test_training_images_leave_the_uint8_grid_only_without_augmentation(augmentation, on_grid):
    """The official code keeps the resized float image unless AutoAugment/RandAugment needs uint8."""
    from efficientnet_tf.data import array_source, make_datasets

    images = np.stack([rgb(30, 30, seed=i) for i in range(16)])
    source = array_source((images, np.arange(16) % 2), (images[:8], np.arange(8) % 2), ["a", "b"])
    train, _, _ = make_datasets(
        source, family="efficientnet", image_size=37, batch_size=8, augmentation=augmentation, randaug_magnitude=5.0
    )
    batch = next(iter(train))[0].numpy()
    assert batch.dtype == np.float32
    assert np.array_equal(batch, np.round(batch)) == on_grid


def test_v2_decodes_whole_jpegs_as_automl_v1_only_the_window():
    """A 4:2:0 JPEG's window decode differs from decode-then-slice at the window's edges."""
    smooth = np.asarray(Image.fromarray(rgb(60, 80, seed=5)).resize((160, 120), Image.BICUBIC))
    data = tf.constant(encode(Image.fromarray(smooth), "JPEG", quality=90))
    window = lambda shape: tf.constant([7, 13, 51, 77])
    whole = tf.io.decode_jpeg(data, channels=3).numpy()[7:58, 13:90]
    v2 = pp.decode_window(data, window, pp.FAMILIES["efficientnetv2"].jpeg_window_decode).numpy()
    v1 = pp.decode_window(data, window, pp.FAMILIES["efficientnet"].jpeg_window_decode).numpy()
    np.testing.assert_array_equal(v2, whole)
    assert v1.shape == whole.shape and not np.array_equal(v1, whole)
