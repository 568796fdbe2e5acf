"""Keras layers that make up both EfficientNet families.

Every layer here is registered under the ``efficientnet_tf`` package, so
``keras.models.load_model`` restores a saved model without ``custom_objects``.
Composite blocks create their sub-layers in ``__init__`` and build them with
explicit shapes, so weights can be loaded into a freshly deserialized model.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
from keras import ops

# TensorFlow's fused kernels where TensorFlow runs the model; `keras.ops` everywhere else.
_tf_kernels = None
if keras.backend.backend() == "tensorflow":
    from efficientnet_tf import tf_kernels as _tf_kernels

PACKAGE = "efficientnet_tf"

# Official initializers (tensorflow/tpu efficientnet_model.py): He-style for
# convolutions over fan-out, uniform 1/3 for the classifier.
CONV_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
}
DENSE_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


def _conv(filters: int, kernel_size: int, strides: int = 1, name: str = "", **kw):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=keras.initializers.get(CONV_INITIALIZER),
        name=name,
        **kw,
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization that updates the moving variance with the unbiased batch variance, as the official code.

    On the TensorFlow backend it runs TensorFlow's fused kernel (see
    `efficientnet_tf.tf_kernels`): Keras 3 normalizes with unfused ops and
    upcasts bfloat16/float16 inputs to float32 first, the fused kernel does
    both in one pass and is what the official TF1 code ran. With
    `synchronized=True` (see `synchronize_batchnorm`) and several replicas in
    sync, TensorFlow training uses the statistics of the global batch. Other
    backends normalize with `keras.ops` in float32 (JAX's sharded arrays give
    global-batch statistics by themselves). Weights are the same four vectors
    as `keras.layers.BatchNormalization`, so files interchange.
    """

    def call(self, inputs, training=None, mask=None):
        if len(inputs.shape) != 4 or self.axis not in (-1, 3) or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        training = bool(training) and self.trainable
        if _tf_kernels is not None:
            return _tf_kernels.batch_norm(self, inputs, training)
        x = ops.cast(inputs, "float32")
        if training:
            mean, variance = ops.moments(x, axes=[0, 1, 2])
            count = math.prod(x.shape[:3])
            self._update_statistics(mean, variance * count / max(count - 1, 1))
        else:
            mean, variance = ops.cast(self.moving_mean, "float32"), ops.cast(self.moving_variance, "float32")
        outputs = ops.batch_normalization(
            x, mean, variance, axis=-1, offset=ops.cast(self.beta, "float32"), scale=ops.cast(self.gamma, "float32"),
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, inputs.dtype)

    def _update_statistics(self, mean, unbiased_variance) -> None:
        """Moves the moving statistics towards the batch's by 1 - momentum."""
        decay = 1.0 - self.momentum
        self.moving_mean.assign(self.moving_mean - (self.moving_mean - ops.cast(mean, self.moving_mean.dtype)) * decay)
        self.moving_variance.assign(
            self.moving_variance - (self.moving_variance - ops.cast(unbiased_variance, self.moving_variance.dtype)) * decay
        )


def synchronize_batchnorm(model: keras.Model, synchronized: bool = True) -> int:
    """Turns cross-replica batch statistics on or off in every BatchNormalization of `model`; returns how many.

    Call it before `fit` traces the train step (a traced step keeps its mode).
    """
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = synchronized
    return len(layers)


def _conv_bn(conv: keras.layers.Layer, bn: BatchNorm, x, training):
    """`bn(conv(x))`; at inference the BN is folded into the kernel and a bias.

    oneDNN (TF's CPU backend) fuses a convolution with a following BiasAdd,
    but not with a bfloat16 FusedBatchNorm, nor a depthwise convolution with
    any; folding saves that separate pass over the activations. Weights and
    layers stay as they are, only the arithmetic is reordered (under bfloat16
    the folded kernel is rounded once more). Folding costs a pass over the
    kernel per call, so it is skipped where the kernel outweighs the BN's
    output (batch 1 in late stages) or shapes are unknown. Training needs
    batch statistics, so it runs the layers unchanged.
    """
    n, h, w = x.shape[:3]
    outputs = None if None in (n, h, w) else n * h * w * bn.gamma.shape[0] // (conv.strides[0] * conv.strides[1])
    if (training and bn.trainable) or outputs is None or outputs < math.prod(conv.kernel.shape):
        return bn(conv(x), training=training)
    scale = ops.cast(bn.gamma, "float32") * ops.rsqrt(ops.cast(bn.moving_variance, "float32") + bn.epsilon)
    shift = ops.cast(ops.cast(bn.beta, "float32") - ops.cast(bn.moving_mean, "float32") * scale, x.dtype)
    depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)  # kernel (k, k, channels, 1)
    kernel = ops.cast(ops.cast(conv.kernel, "float32") * (scale[:, None] if depthwise else scale), x.dtype)
    if _tf_kernels is not None:
        return _tf_kernels.conv_bias(x, kernel, shift, conv.strides, depthwise)
    convolve = ops.depthwise_conv if depthwise else ops.conv
    return convolve(x, kernel, conv.strides, "same") + shift


@keras.saving.register_keras_serializable(package=PACKAGE)
class StochasticDepth(keras.layers.Layer):
    """Drops the whole residual branch per sample, scaling survivors by 1/p."""

    def __init__(self, rate: float, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"StochasticDepth rate must be in [0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        batch = ops.shape(inputs)[0]
        noise = keras.random.uniform(
            (batch, 1, 1, 1), seed=self.seed_generator, dtype=inputs.dtype
        )
        mask = ops.floor(keep + noise)
        return inputs * (mask / keep)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class HeadDropout(keras.layers.Layer):
    """Dropout whose rate lives in a variable, so it can change mid-training.

    The progressive-learning callback (TensorFlow) assigns a new rate between
    epochs; an already traced train step reads the variable, so no retrace is
    needed. The variable is a plain `tf.Variable`: it is saved with SavedModel
    exports but not counted among the model's weights. Other backends keep the
    rate as a number, which a compiled step reads when it is traced.
    """

    def __init__(self, rate: float, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self._check(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.rate_variable = _tf_kernels.rate_variable(rate) if _tf_kernels is not None else None
        self._rate = float(rate)

    @staticmethod
    def _check(rate: float) -> None:
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate}.")

    @property
    def rate(self) -> float:
        return self._rate if self.rate_variable is None else float(self.rate_variable.numpy())

    @rate.setter
    def rate(self, value: float) -> None:
        self._check(value)
        self._rate = float(value)
        if self.rate_variable is not None:
            self.rate_variable.assign(self._rate)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        rate = self._rate if self.rate_variable is None else ops.cast(self.rate_variable, inputs.dtype)
        keep = 1.0 - rate
        noise = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator, dtype=inputs.dtype)
        return ops.where(noise < keep, inputs / keep, ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SqueezeExcite(keras.layers.Layer):
    """Channel gating; `reduced_filters` comes from the block's input width."""

    def __init__(self, reduced_filters: int, activation: str = "swish", **kwargs):
        super().__init__(**kwargs)
        self.reduced_filters = int(reduced_filters)
        self.activation = activation
        self.reduce = None
        self.expand = None

    def build(self, input_shape):
        channels = int(input_shape[-1])
        init = keras.initializers.get(CONV_INITIALIZER)
        self.reduce = keras.layers.Conv2D(
            self.reduced_filters, 1, activation=self.activation, kernel_initializer=init,
            name="reduce", dtype=self.dtype_policy,
        )
        self.expand = keras.layers.Conv2D(
            channels, 1, activation="sigmoid", kernel_initializer=init,
            name="expand", dtype=self.dtype_policy,
        )
        self.reduce.build((None, 1, 1, channels))
        self.expand.build((None, 1, 1, self.reduced_filters))

    def call(self, inputs):
        scale = ops.mean(inputs, axis=(1, 2), keepdims=True)
        return inputs * self.expand(self.reduce(scale))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "reduced_filters": self.reduced_filters,
            "activation": self.activation,
        }


class _Block(keras.layers.Layer):
    """What MBConv and Fused-MBConv share: config and the residual."""

    def __init__(
        self,
        input_filters: int,
        output_filters: int,
        kernel_size: int = 3,
        strides: int = 1,
        expand_ratio: int = 1,
        se_ratio: Optional[float] = None,
        skip: bool = True,
        drop_rate: float = 0.0,
        activation: str = "swish",
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_filters = int(input_filters)
        self.output_filters = int(output_filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.expand_ratio = int(expand_ratio)
        self.se_ratio = se_ratio
        self.skip = bool(skip)
        self.drop_rate = float(drop_rate)
        self.activation = activation
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.expanded_filters = self.input_filters * self.expand_ratio
        self.has_residual = self.skip and self.strides == 1 and self.input_filters == self.output_filters
        self.se = None
        if se_ratio:
            reduced = max(1, int(self.input_filters * se_ratio))
            self.se = SqueezeExcite(reduced, activation, name="se", dtype=self.dtype_policy)
        self.stochastic_depth = None
        if self.has_residual and self.drop_rate > 0:
            self.stochastic_depth = StochasticDepth(self.drop_rate, name="drop", dtype=self.dtype_policy)
        self.act = keras.layers.Activation(activation, dtype=self.dtype_policy)

    def _new_bn(self, name: str) -> "BatchNorm":
        return BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name, dtype=self.dtype_policy)

    def _new_conv(self, filters: int, kernel_size: int, strides: int, name: str) -> keras.layers.Conv2D:
        return _conv(filters, kernel_size, strides, name=name, dtype=self.dtype_policy)

    def _finish(self, inputs, x, training):
        if not self.has_residual:
            return x
        if self.stochastic_depth is not None:
            x = self.stochastic_depth(x, training=training)
        return x + inputs

    def compute_output_shape(self, input_shape):
        def down(size):
            return None if size is None else -(-size // self.strides)

        return (input_shape[0], down(input_shape[1]), down(input_shape[2]), self.output_filters)

    def get_config(self):
        return {
            **super().get_config(),
            "input_filters": self.input_filters,
            "output_filters": self.output_filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "expand_ratio": self.expand_ratio,
            "se_ratio": self.se_ratio,
            "skip": self.skip,
            "drop_rate": self.drop_rate,
            "activation": self.activation,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class MBConv(_Block):
    """Inverted residual: 1x1 expand, kxk depthwise, [SE], 1x1 project."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.expand_conv = self.expand_bn = None
        if self.expand_ratio != 1:
            self.expand_conv = self._new_conv(self.expanded_filters, 1, 1, "expand_conv")
            self.expand_bn = self._new_bn("expand_bn")
        self.dwconv = keras.layers.DepthwiseConv2D(
            self.kernel_size, strides=self.strides, padding="same", use_bias=False,
            depthwise_initializer=keras.initializers.get(CONV_INITIALIZER), name="dwconv", dtype=self.dtype_policy,
        )
        self.bn = self._new_bn("bn")
        self.project_conv = self._new_conv(self.output_filters, 1, 1, "project_conv")
        self.project_bn = self._new_bn("project_bn")

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        e, o = self.expanded_filters, self.output_filters
        if self.expand_conv is not None:
            self.expand_conv.build((None, h, w, self.input_filters))
            self.expand_bn.build((None, h, w, e))
        self.dwconv.build((None, h, w, e))
        self.bn.build((None, None, None, e))
        if self.se is not None:
            self.se.build((None, None, None, e))
        self.project_conv.build((None, None, None, e))
        self.project_bn.build((None, None, None, o))

    def call(self, inputs, training=None):
        x = inputs
        if self.expand_conv is not None:
            x = self.act(_conv_bn(self.expand_conv, self.expand_bn, x, training))
        x = self.act(_conv_bn(self.dwconv, self.bn, x, training))
        if self.se is not None:
            x = self.se(x)
        x = _conv_bn(self.project_conv, self.project_bn, x, training)
        return self._finish(inputs, x, training)

    def weight_layers(self) -> list:
        """Sub-layers holding weights, in the order keras.applications names them."""
        layers = [self.expand_conv, self.expand_bn] if self.expand_conv is not None else []
        layers += [self.dwconv, self.bn]
        if self.se is not None:
            layers += [self.se.reduce, self.se.expand]
        return layers + [self.project_conv, self.project_bn]


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedMBConv(_Block):
    """EfficientNetV2's block: the expand conv and depthwise conv fused into one kxk conv."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.expand_conv = self.expand_bn = None
        if self.expand_ratio != 1:
            self.expand_conv = self._new_conv(self.expanded_filters, self.kernel_size, self.strides, "expand_conv")
            self.expand_bn = self._new_bn("expand_bn")
            self.project_conv = self._new_conv(self.output_filters, 1, 1, "project_conv")
        else:
            self.project_conv = self._new_conv(self.output_filters, self.kernel_size, self.strides, "project_conv")
        self.project_bn = self._new_bn("project_bn")

    def build(self, input_shape):
        e, o = self.expanded_filters, self.output_filters
        if self.expand_conv is not None:
            self.expand_conv.build((None, None, None, self.input_filters))
            self.expand_bn.build((None, None, None, e))
        if self.se is not None:
            self.se.build((None, None, None, e))
        self.project_conv.build((None, None, None, e))
        self.project_bn.build((None, None, None, o))

    def call(self, inputs, training=None):
        x = inputs
        if self.expand_conv is not None:
            x = self.act(_conv_bn(self.expand_conv, self.expand_bn, x, training))
        if self.se is not None:
            x = self.se(x)
        x = _conv_bn(self.project_conv, self.project_bn, x, training)
        if self.expand_conv is None:
            x = self.act(x)
        return self._finish(inputs, x, training)

    def weight_layers(self) -> list:
        layers = [self.expand_conv, self.expand_bn] if self.expand_conv is not None else []
        if self.se is not None:
            layers += [self.se.reduce, self.se.expand]
        return layers + [self.project_conv, self.project_bn]
