"""Mixup and CutMix on a batch, with alphas given as tensors (variables).

Each image is mixed with its partner in the reversed batch, with its own
weight. With both alphas above zero the first half of the batch gets Mixup and
the second half CutMix (as in the official V2 code); an alpha of 0 turns its
method off, so the same graph serves every stage of progressive learning.
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


def cutmix_masks(alpha: tf.Tensor, n: tf.Tensor, height: tf.Tensor, width: tf.Tensor):
    """Per-image boxes whose area fraction follows Beta(a, a), clipped at the border.

    Returns the [n, h, w, 1] float mask of pixels taken from the partner, and
    the exact fraction of the image each box covers (used to weight labels).
    """
    area = sample_beta(alpha, n)
    side = tf.sqrt(area)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    box_h, box_w = side * h, side * w
    cy = tf.random.uniform([n]) * h
    cx = tf.random.uniform([n]) * w
    y0 = tf.round(tf.clip_by_value(cy - box_h / 2, 0.0, h))
    y1 = tf.round(tf.clip_by_value(cy + box_h / 2, 0.0, h))
    x0 = tf.round(tf.clip_by_value(cx - box_w / 2, 0.0, w))
    x1 = tf.round(tf.clip_by_value(cx + box_w / 2, 0.0, w))
    rows = tf.range(h)[None, :]
    cols = tf.range(w)[None, :]
    in_rows = tf.cast((rows >= y0[:, None]) & (rows < y1[:, None]), tf.float32)
    in_cols = tf.cast((cols >= x0[:, None]) & (cols < x1[:, None]), tf.float32)
    mask = in_rows[:, :, None, None] * in_cols[:, None, :, None]
    covered = (y1 - y0) * (x1 - x0) / (h * w)
    return mask, covered


def mix_batch(images: tf.Tensor, labels: tf.Tensor, mixup_alpha: tf.Tensor, cutmix_alpha: tf.Tensor):
    """Apply Mixup and/or CutMix to float images [B, H, W, 3] and one-hot labels [B, C]."""
    shape = tf.shape(images)
    n = shape[0]
    mixup_on = tf.cast(mixup_alpha, tf.float32) > 0
    cutmix_on = tf.cast(cutmix_alpha, tf.float32) > 0
    # Which images CutMix: the second half with both on, all with only CutMix.
    second_half = tf.range(n) >= n // 2
    use_cutmix = tf.where(mixup_on, second_half & cutmix_on, cutmix_on)
    use_mixup = mixup_on & ~use_cutmix

    partner_images = tf.reverse(images, [0])
    partner_labels = tf.reverse(labels, [0])

    lam = tf.where(use_mixup, mixup_weights(mixup_alpha, n), 1.0)
    mixed_images = partner_images + lam[:, None, None, None] * (images - partner_images)
    label_weight = lam

    def cut(mixed_images, label_weight):
        mask, covered = cutmix_masks(cutmix_alpha, n, shape[1], shape[2])
        mask *= tf.cast(use_cutmix, tf.float32)[:, None, None, None]
        mask = tf.tile(mask, [1, 1, 1, 3])  # broadcasting over channels is slow on CPU
        mixed_images += mask * (partner_images - mixed_images)
        return mixed_images, label_weight * (1.0 - tf.where(use_cutmix, covered, 0.0))

    mixed_images, label_weight = tf.cond(
        tf.reduce_any(use_cutmix), lambda: cut(mixed_images, label_weight), lambda: (mixed_images, label_weight)
    )
    mixed_labels = partner_labels + label_weight[:, None] * (labels - partner_labels)
    return mixed_images, mixed_labels
