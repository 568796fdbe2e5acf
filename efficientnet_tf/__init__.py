"""EfficientNet and EfficientNetV2 for Keras 3: the models on any backend, training on TensorFlow.

The model, its blocks, the registry and weight loading import no TensorFlow,
so they run under ``KERAS_BACKEND=jax`` or ``torch`` without it; the
training pieces are imported on first use, as they need TensorFlow.
"""

from efficientnet_tf.blocks import BlockArgs, decode, encode
from efficientnet_tf.model import (
    EfficientNetB0, EfficientNetB1, EfficientNetB2, EfficientNetB3, EfficientNetB4,
    EfficientNetB5, EfficientNetB6, EfficientNetB7, EfficientNetB8, EfficientNetL2,
    EfficientNetLite0, EfficientNetLite1, EfficientNetLite2, EfficientNetLite3, EfficientNetLite4,
    EfficientNetV2B0, EfficientNetV2B1, EfficientNetV2B2, EfficientNetV2B3,
    EfficientNetV2S, EfficientNetV2M, EfficientNetV2L, EfficientNetV2XL,
    build_model, features_model, get_model,
)
from efficientnet_tf.flops import count_flops
from efficientnet_tf.weights import imagenet_file
from efficientnet_tf.registry import ModelSpec, compound_scaling, get_spec, model_names

__version__ = "0.1.0"

_TRAINING = ("ExponentialMovingAverage", "ProgressiveLearning", "Trained", "load_trained", "progressive_stages")


def __getattr__(name: str):
    """The training pieces, imported (with TensorFlow) when first asked for."""
    if name in _TRAINING:
        from efficientnet_tf import training

        return getattr(training, name)
    raise AttributeError(f"module 'efficientnet_tf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_TRAINING])
