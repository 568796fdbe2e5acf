"""Mixup and CutMix: image and label weights agree, halves split, alpha 0 is off."""

import numpy as np
import tensorflow as tf

from efficientnet_tf.data import mix_batch

B, C = 8, 8


def batch():
    # Image i is constant i * 10, label i: mixed pixel values reveal the weights.
    images = tf.constant(np.arange(B, dtype=np.float32)[:, None, None, None] * 10 * np.ones([B, 12, 16, 3], np.float32))
    return images, tf.one_hot(tf.range(B), C)


def own_fraction(images, i):
    """Fraction of image i's value in each pixel (partner is B-1-i)."""
    own, partner = i * 10.0, (B - 1 - i) * 10.0
    return (images[i].numpy() - partner) / (own - partner)


def test_alpha_zero_is_identity():
    x, y = batch()
    mx, my = mix_batch(x, y, tf.constant(0.0), tf.constant(0.0))
    np.testing.assert_array_equal(mx.numpy(), x.numpy())
    np.testing.assert_array_equal(my.numpy(), y.numpy())


def test_mixup_weight_at_least_half_and_labels_match_pixels():
    x, y = batch()
    mx, my = mix_batch(x, y, tf.constant(0.4), tf.constant(0.0))
    for i in range(B):
        lam = own_fraction(mx, i)
        assert np.allclose(lam, lam.flat[0], atol=1e-5) and lam.flat[0] >= 0.5 - 1e-6
        np.testing.assert_allclose(my[i, i].numpy(), lam.flat[0], atol=1e-5)
        np.testing.assert_allclose(my[i].numpy().sum(), 1.0, atol=1e-5)


def test_cutmix_labels_weighted_by_real_box_area():
    x, y = batch()
    seen_partial = False
    for _ in range(5):
        mx, my = mix_batch(x, y, tf.constant(0.0), tf.constant(1.0))
        for i in range(B):
            frac = own_fraction(mx, i)
            assert set(np.unique(np.round(frac, 5))) <= {0.0, 1.0}  # pixels are either own or partner
            np.testing.assert_allclose(my[i, i].numpy(), frac.mean(), atol=1e-5)
            seen_partial |= 0 < frac.mean() < 1
    assert seen_partial


def test_both_on_first_half_mixup_second_half_cutmix():
    x, y = batch()
    mx, _ = mix_batch(x, y, tf.constant(0.4), tf.constant(1.0))
    for i in range(B // 2):
        frac = own_fraction(mx, i)
        assert np.allclose(frac, frac.flat[0], atol=1e-5)  # uniform blend
    for i in range(B // 2, B):
        assert set(np.unique(np.round(own_fraction(mx, i), 5))) <= {0.0, 1.0}  # hard box
