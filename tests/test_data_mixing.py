"""Mixup and CutMix: image and label weights agree, halves split, alpha 0 is off."""

import numpy as np
import tensorflow as tf

from efficientnet_tf.data import mix_batch
from efficientnet_tf.data.mixing import cutmix_boxes

B, C = 8, 8


def batch():
    # Image i is constant i * 10, label i: mixed pixel values reveal the weights.
    images = tf.constant(np.arange(B, dtype=np.float32)[:, None, None, None] * 10 * np.ones([B, 12, 16, 3], np.float32))
    return images, tf.one_hot(tf.range(B), C)


def own_fraction(images, i, partner):
    """Fraction of image i's own value in each pixel."""
    own, other = i * 10.0, partner * 10.0
    return (images[i].numpy() - other) / (own - other)


def test_alpha_zero_is_identity():
    x, y = batch()
    mx, my = mix_batch(x, y, tf.constant(0.0), tf.constant(0.0))
    np.testing.assert_array_equal(mx.numpy(), x.numpy())
    np.testing.assert_array_equal(my.numpy(), y.numpy())


def test_mixup_weight_at_least_half_and_labels_match_pixels():
    x, y = batch()
    mx, my = mix_batch(x, y, tf.constant(0.4), tf.constant(0.0))
    for i in range(B):
        lam = own_fraction(mx, i, B - 1 - i)  # the whole batch reversed
        assert np.allclose(lam, lam.flat[0], atol=1e-5) and lam.flat[0] >= 0.5 - 1e-6
        np.testing.assert_allclose(my[i, i].numpy(), lam.flat[0], atol=1e-5)
        np.testing.assert_allclose(my[i].numpy().sum(), 1.0, atol=1e-5)


def box_of(frac):
    """(rows, cols) extent of the partner's pixels, checking they form one rectangle."""
    taken = np.round(frac[..., 0], 5) == 0.0
    rows, cols = np.flatnonzero(taken.any(1)), np.flatnonzero(taken.any(0))
    if rows.size:
        assert taken[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all() and taken.sum() == rows.size * cols.size
    return rows, cols


def test_cutmix_labels_weighted_by_the_batch_mean_box_area():
    """The official rule: one label weight, 1 - (mean box area over the batch)."""
    x, y = batch()
    seen_partial = False
    for _ in range(5):
        mx, my = mix_batch(x, y, tf.constant(0.0), tf.constant(1.0))
        fracs = [own_fraction(mx, i, B - 1 - i) for i in range(B)]
        for frac in fracs:
            assert set(np.unique(np.round(frac, 5))) <= {0.0, 1.0}  # pixels are either own or partner
            box_of(frac)
        own_weight = np.mean([f.mean() for f in fracs])
        for i in range(B):
            np.testing.assert_allclose(my[i, i].numpy(), own_weight, atol=1e-5)
            np.testing.assert_allclose(my[i, B - 1 - i].numpy(), 1 - own_weight, atol=1e-5)
        seen_partial |= 0 < own_weight < 1
    assert seen_partial


def test_cutmix_box_has_even_clipped_sides_around_an_integer_centre():
    """Sides `2 * (int(r * size) // 2)` before clipping, so an unclipped box has even sides."""
    boxes = cutmix_boxes(tf.constant(1.0), 64, 40, 30).numpy()
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, 1] <= 40).all() and (boxes[:, 3] <= 30).all()
    assert (boxes[:, 1] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 2]).all()
    unclipped = 0
    for top, bottom, left, right in boxes:
        if bottom > top and 0 < top and bottom < 40 and 0 < left and right < 30:
            assert (bottom - top) % 2 == 0 and (right - left) % 2 == 0
            unclipped += 1
    assert unclipped > 0


def test_uint8_images_mix_like_their_float_values():
    x, y = batch()
    for alphas in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0), (0.0, 0.0)):
        tf.random.set_seed(7)
        from_float = mix_batch(x, y, *map(tf.constant, alphas))
        tf.random.set_seed(7)
        from_uint8 = mix_batch(tf.cast(x, tf.uint8), y, *map(tf.constant, alphas))
        assert from_uint8[0].dtype == tf.float32
        np.testing.assert_array_equal(from_uint8[0].numpy(), from_float[0].numpy())
        np.testing.assert_array_equal(from_uint8[1].numpy(), from_float[1].numpy())


def test_both_on_each_half_mixes_within_itself():
    x, y = batch()
    half = B // 2
    for _ in range(3):
        mx, my = mix_batch(x, y, tf.constant(0.4), tf.constant(1.0))
        for i in range(half):  # Mixup: uniform blend with the mirror image in the first half
            frac = own_fraction(mx, i, half - 1 - i)
            assert np.allclose(frac, frac.flat[0], atol=1e-5)
            np.testing.assert_allclose(my[i, half - 1 - i].numpy(), 1 - frac.flat[0], atol=1e-5)
        fracs = {i: own_fraction(mx, i, B - 1 - i + half) for i in range(half, B)}
        for frac in fracs.values():  # CutMix: hard boxes from the mirror image in the second half
            assert set(np.unique(np.round(frac, 5))) <= {0.0, 1.0}
        own_weight = np.mean([f.mean() for f in fracs.values()])
        for i in range(half, B):
            np.testing.assert_allclose(my[i, i].numpy(), own_weight, atol=1e-5)


def test_odd_batch_gives_the_extra_image_to_cutmix():
    n = 5
    x = tf.constant(np.arange(n, dtype=np.float32)[:, None, None, None] * 10 * np.ones([n, 8, 8, 3], np.float32))
    mx, _ = mix_batch(x, tf.one_hot(tf.range(n), n), tf.constant(0.4), tf.constant(1.0))
    # Mixup pairs 0 with 1; CutMix pairs 2 with 4 and leaves 3 with itself.
    assert np.all((mx[0].numpy() >= 0) & (mx[0].numpy() <= 10)) and np.all(mx[1].numpy() <= 10)
    assert set(np.unique(mx[2].numpy())) <= {20.0, 40.0}
    np.testing.assert_array_equal(mx[3].numpy(), x[3].numpy())
