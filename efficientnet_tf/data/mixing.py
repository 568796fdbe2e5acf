"""Mixup and CutMix on a batch, with alphas given as tensors (variables).

Each image is mixed with its partner in the reversed batch (Mixup with its own
weight). With both alphas above zero the first half of the batch gets Mixup and
the second half CutMix, each half reversed within itself (as in the official V2
code); an alpha of 0 turns its method off, so the same graph serves every stage
of progressive learning.

The pixels are mixed an image at a time: on CPU, whole-batch float
temporaries are slower to compute and each is fresh memory the kernel must
map and zero (benchmarks/bench_pipeline.py).
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from efficientnet_tf.data import seeds


def sample_beta(alpha: tf.Tensor, n: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """n draws of Beta(alpha, alpha), via two Gamma draws."""
    alpha = tf.maximum(tf.cast(alpha, tf.float32), 1e-6)
    keys = seeds.split(seed, 2)
    a = tf.random.stateless_gamma([n], keys[0], alpha)
    b = tf.random.stateless_gamma([n], keys[1], alpha)
    return a / tf.maximum(a + b, 1e-12)


def mixup_weights(alpha: tf.Tensor, n: tf.Tensor, seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Per-image weight of the image itself: lam ~ Beta(a, a), lam = max(lam, 1 - lam)."""
    lam = sample_beta(alpha, n, seeds.resolve(seed))
    return tf.maximum(lam, 1.0 - lam)


def cutmix_boxes(
    alpha: tf.Tensor, n: tf.Tensor, height: tf.Tensor, width: tf.Tensor, seed: Optional[tf.Tensor] = None
) -> tf.Tensor:
    """[n, 4] int32 (top, bottom, left, right) of the boxes taken from the partner, as the official code draws them.

    An integer centre anywhere in the image; sides `int(sqrt(1 - area) * size)`
    with `area ~ Beta(a, a)`, halved by integer division on each side of the
    centre and clipped at the border.
    """
    keys = seeds.split(seeds.resolve(seed), 3)
    ratio = tf.sqrt(1.0 - sample_beta(alpha, n, keys[0]))
    cy = tf.random.stateless_uniform([n], keys[1], 0, height, tf.int32)
    cx = tf.random.stateless_uniform([n], keys[2], 0, width, tf.int32)
    half_h = tf.cast(ratio * tf.cast(height, tf.float32), tf.int32) // 2
    half_w = tf.cast(ratio * tf.cast(width, tf.float32), tf.int32) // 2
    top, bottom = tf.maximum(cy - half_h, 0), tf.minimum(cy + half_h, height)
    left, right = tf.maximum(cx - half_w, 0), tf.minimum(cx + half_w, width)
    return tf.stack([top, tf.maximum(bottom, top), left, tf.maximum(right, left)], axis=1)


def partner_index(n: tf.Tensor, halves: tf.Tensor) -> tf.Tensor:
    """Each image's partner: the reversed batch, or with `halves` the reversed half it is in."""
    i = tf.range(n)
    half = n // 2
    within_half = tf.where(i < half, half - 1 - i, n - 1 - i + half)
    return tf.where(halves, within_half, n - 1 - i)


def mix_batch(
    images: tf.Tensor, labels: tf.Tensor, mixup_alpha: tf.Tensor, cutmix_alpha: tf.Tensor,
    seed: Optional[tf.Tensor] = None,
):
    """Apply Mixup and/or CutMix to images [B, H, W, 3] (uint8 or float) and one-hot labels [B, C].

    As the official V2 code: with both on, each half is mixed within itself
    (Mixup the first `B // 2`, CutMix the rest); CutMix labels are weighted by
    the mean box area over the images it cut, one weight for all of them.
    Images come back as float32; with both alphas 0 they pass through
    untouched, at no cost but the cast. `seed` keys the draws (see `seeds`).
    """
    mixup_on = tf.cast(mixup_alpha, tf.float32) > 0
    cutmix_on = tf.cast(cutmix_alpha, tf.float32) > 0
    return tf.cond(
        mixup_on | cutmix_on,
        lambda: _mix(images, labels, mixup_alpha, cutmix_alpha, mixup_on, cutmix_on, seeds.resolve(seed)),
        lambda: (tf.cast(images, tf.float32), labels),
    )


def _mix(images, labels, mixup_alpha, cutmix_alpha, mixup_on, cutmix_on, seed):
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    # Which images CutMix: the second half with both on, all with only CutMix.
    second_half = tf.range(n) >= n // 2
    use_cutmix = tf.where(mixup_on, second_half & cutmix_on, cutmix_on)
    use_mixup = mixup_on & ~use_cutmix
    partner = partner_index(n, mixup_on & cutmix_on)

    mixup_key, cutmix_key = tf.unstack(seeds.split(seed, 2))
    lam = tf.where(use_mixup, mixup_weights(mixup_alpha, n, mixup_key), 1.0)
    boxes = tf.cond(
        tf.reduce_any(use_cutmix),
        lambda: cutmix_boxes(cutmix_alpha, n, height, width, cutmix_key),
        lambda: tf.zeros([n, 4], tf.int32),
    )
    boxes *= tf.cast(use_cutmix, tf.int32)[:, None]  # an empty box: nothing cut
    box_pixels = tf.cast((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2]), tf.float32)
    cut_images = tf.maximum(tf.reduce_sum(tf.cast(use_cutmix, tf.float32)), 1.0)
    mean_area = tf.reduce_sum(box_pixels) / (cut_images * tf.cast(height * width, tf.float32))
    label_weight = tf.where(use_cutmix, 1.0 - mean_area, lam)

    def mix_one(i):
        own = tf.cast(images[i], tf.float32)
        other = tf.cast(tf.gather(images, partner[i]), tf.float32)
        mixed = tf.cond(use_mixup[i], lambda: other + lam[i] * (own - other), lambda: own)
        top, bottom, left, right = tf.unstack(boxes[i])
        middle = tf.concat([mixed[top:bottom, :left], other[top:bottom, left:right], mixed[top:bottom, right:]], 1)
        return tf.concat([mixed[:top], middle, mixed[bottom:]], 0)

    mixed_images = tf.map_fn(mix_one, tf.range(n), fn_output_signature=tf.float32, parallel_iterations=4)
    partner_labels = tf.gather(labels, partner)
    mixed_labels = partner_labels + label_weight[:, None] * (labels - partner_labels)
    return mixed_images, mixed_labels
