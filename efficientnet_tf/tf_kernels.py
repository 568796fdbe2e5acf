"""TensorFlow's fast paths for `efficientnet_tf.layers`, used only on the TensorFlow backend.

The layers compute with `keras.ops` on every backend; on TensorFlow these
functions replace three of their steps with what TensorFlow runs faster:
the fused batch-norm kernel, batch statistics all-reduced across replicas
(`tf.distribute`), and a convolution followed by a `BiasAdd` (which oneDNN,
TF's CPU backend, fuses into the convolution; a broadcast add it does not).
"""

from __future__ import annotations

import tensorflow as tf


def batch_norm(layer, inputs, training: bool):
    """`layer` (an `efficientnet_tf.layers.BatchNorm`) on NHWC `inputs` through `FusedBatchNormV3`."""
    gamma = tf.cast(layer.gamma, "float32")
    beta = tf.cast(layer.beta, "float32")
    context = tf.distribute.get_replica_context()
    if training and layer.synchronized and context is not None and context.num_replicas_in_sync > 1:
        return _synchronized_batch_norm(layer, inputs, gamma, beta, context)
    if training:
        outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=gamma,
            offset=beta,
            mean=tf.constant([], "float32"),
            variance=tf.constant([], "float32"),
            epsilon=layer.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        decay = 1.0 - layer.momentum
        layer.moving_mean.assign_sub((layer.moving_mean - mean) * decay)
        layer.moving_variance.assign_sub((layer.moving_variance - variance) * decay)
        return outputs
    outputs, *_ = tf.raw_ops.FusedBatchNormV3(
        x=inputs,
        scale=gamma,
        offset=beta,
        mean=tf.cast(layer.moving_mean, "float32"),
        variance=tf.cast(layer.moving_variance, "float32"),
        epsilon=layer.epsilon,
        data_format="NHWC",
        is_training=False,
    )
    return outputs


def _synchronized_batch_norm(layer, inputs, gamma, beta, context):
    """Normalizes with the mean and variance of every replica's batch together.

    Sums are taken around the moving mean (equal on all replicas, as the
    synchronized updates are), so the one-pass variance does not cancel
    catastrophically once the moving mean is near the batch mean.
    """
    x = tf.cast(inputs, "float32")
    shift = tf.stop_gradient(tf.cast(layer.moving_mean, "float32"))
    centered = x - shift
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), "float32")
    local = tf.concat([tf.reduce_sum(centered, [0, 1, 2]), tf.reduce_sum(tf.square(centered), [0, 1, 2]), [count]], 0)
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
    channels, n = gamma.shape[0], total[-1]
    shifted_mean = total[:channels] / n
    variance = tf.maximum(total[channels : 2 * channels] / n - tf.square(shifted_mean), 0.0)
    mean = shifted_mean + shift
    outputs = tf.nn.batch_normalization(x, mean, variance, beta, gamma, layer.epsilon)
    decay = 1.0 - layer.momentum
    unbiased = variance * n / tf.maximum(n - 1.0, 1.0)
    layer.moving_mean.assign_sub((layer.moving_mean - tf.cast(mean, layer.moving_mean.dtype)) * decay)
    layer.moving_variance.assign_sub((layer.moving_variance - tf.cast(unbiased, layer.moving_variance.dtype)) * decay)
    return tf.cast(outputs, inputs.dtype)


def conv_bias(x, kernel, bias, strides: tuple[int, int], depthwise: bool):
    """SAME convolution of `x` (NHWC) with `kernel`, then `BiasAdd`."""
    strides = [1, *strides, 1]
    if depthwise:  # kernel (k, k, channels, 1)
        y = tf.nn.depthwise_conv2d(x, kernel, strides, "SAME")
    else:
        y = tf.nn.conv2d(x, kernel, strides, "SAME")
    return tf.nn.bias_add(y, bias)


def rate_variable(rate: float) -> tf.Variable:
    """A dropout rate that a traced train step reads at run time; saved with SavedModel exports, not a model weight."""
    return tf.Variable(float(rate), trainable=False, dtype="float32", name="rate")
