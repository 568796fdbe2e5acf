"""EfficientNet and EfficientNetV2 for Keras 3 / TensorFlow."""

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
from efficientnet_tf.training import ExponentialMovingAverage, ProgressiveLearning, Trained, load_trained, progressive_stages

__version__ = "0.1.0"
