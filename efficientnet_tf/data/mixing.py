"""Mixup and CutMix on a batch, with alphas given as tensors (variables).

Each image is mixed with its partner in the reversed batch (Mixup with its own
weight). With both alphas above zero the first half of the batch gets Mixup and
the second half CutMix, each half reversed within itself (as in the official V2
code); an alpha of 0 turns its method off, so the same graph serves every stage
of progressive learning.
"""

from __future__ import annotations

import tensorflow as tf


def sample_beta(alpha: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """n draws of Beta(alpha, alpha), via two Gamma draws."""
    alpha = tf.maximum(tf.cast(alpha, tf.float32), 1e-6)
    a = tf.random.gamma([n], alpha)
    b = tf.random.gamma([n], alpha)
    return a / tf.maximum(a + b, 1e-12)


def mixup_weights(alpha: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """Per-image weight of the image itself: lam ~ Beta(a, a), lam = max(lam, 1 - lam)."""
    lam = sample_beta(alpha, n)
    return tf.maximum(lam, 1.0 - lam)


def cutmix_masks(alpha: tf.Tensor, n: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """[n, h, w, 1] float masks of the pixels taken from the partner, as the official code draws them.

    An integer centre anywhere in the image; sides `int(sqrt(1 - area) * size)`
    with `area ~ Beta(a, a)`, halved by integer division on each side of the
    centre and clipped at the border.
    """
    ratio = tf.sqrt(1.0 - sample_beta(alpha, n))
    cy = tf.random.uniform([n], 0, height, tf.int32)
    cx = tf.random.uniform([n], 0, width, tf.int32)
    half_h = tf.cast(ratio * tf.cast(height, tf.float32), tf.int32) // 2
    half_w = tf.cast(ratio * tf.cast(width, tf.float32), tf.int32) // 2
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    in_rows = tf.cast((rows >= (cy - half_h)[:, None]) & (rows < (cy + half_h)[:, None]), tf.float32)
    in_cols = tf.cast((cols >= (cx - half_w)[:, None]) & (cols < (cx + half_w)[:, None]), tf.float32)
    return in_rows[:, :, None, None] * in_cols[:, None, :, None]


def partner_index(n: tf.Tensor, halves: tf.Tensor) -> tf.Tensor:
    """Each image's partner: the reversed batch, or with `halves` the reversed half it is in."""
    i = tf.range(n)
    half = n // 2
    within_half = tf.where(i < half, half - 1 - i, n - 1 - i + half)
    return tf.where(halves, within_half, n - 1 - i)


def mix_batch(images: tf.Tensor, labels: tf.Tensor, mixup_alpha: tf.Tensor, cutmix_alpha: tf.Tensor):
    """Apply Mixup and/or CutMix to float images [B, H, W, 3] and one-hot labels [B, C].

    As the official V2 code: with both on, each half is mixed within itself
    (Mixup the first `B // 2`, CutMix the rest); CutMix labels are weighted by
    the mean box area over the images it cut, one weight for all of them. With
    both alphas 0 the batch passes through untouched, at no cost.
    """
    mixup_on = tf.cast(mixup_alpha, tf.float32) > 0
    cutmix_on = tf.cast(cutmix_alpha, tf.float32) > 0
    return tf.cond(
        mixup_on | cutmix_on,
        lambda: _mix(images, labels, mixup_alpha, cutmix_alpha, mixup_on, cutmix_on),
        lambda: (images, labels),
    )


def _mix(images, labels, mixup_alpha, cutmix_alpha, mixup_on, cutmix_on):
    shape = tf.shape(images)
    n = shape[0]
    # Which images CutMix: the second half with both on, all with only CutMix.
    second_half = tf.range(n) >= n // 2
    use_cutmix = tf.where(mixup_on, second_half & cutmix_on, cutmix_on)
    use_mixup = mixup_on & ~use_cutmix

    partner = partner_index(n, mixup_on & cutmix_on)
    partner_images = tf.gather(images, partner)
    partner_labels = tf.gather(labels, partner)

    lam = tf.where(use_mixup, mixup_weights(mixup_alpha, n), 1.0)
    mixed_images = partner_images + lam[:, None, None, None] * (images - partner_images)

    def cut(mixed_images, label_weight):
        mask = cutmix_masks(cutmix_alpha, n, shape[1], shape[2])
        mask *= tf.cast(use_cutmix, tf.float32)[:, None, None, None]
        cut_pixels = tf.reduce_sum(tf.cast(use_cutmix, tf.float32)) * tf.cast(shape[1] * shape[2], tf.float32)
        mean_area = tf.reduce_sum(mask) / cut_pixels
        mask = tf.tile(mask, [1, 1, 1, 3])  # broadcasting over channels is slow on CPU
        mixed_images += mask * (partner_images - mixed_images)
        return mixed_images, tf.where(use_cutmix, 1.0 - mean_area, label_weight)

    mixed_images, label_weight = tf.cond(
        tf.reduce_any(use_cutmix), lambda: cut(mixed_images, lam), lambda: (mixed_images, lam)
    )
    mixed_labels = partner_labels + label_weight[:, None] * (labels - partner_labels)
    return mixed_images, mixed_labels
