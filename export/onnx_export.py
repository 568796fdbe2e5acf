"""ONNX through tf2onnx (its runner is `efficientnet_tf.inference.OnnxModel`).

Our input normalization is a weightless `Rescaling`, so the graph has one
input (a `Normalization` layer would add its mean and variance as inputs).
"""

from __future__ import annotations

import keras
import tensorflow as tf

OPSET = 17


def convert(model: keras.Model, image_size: int) -> bytes:
    """The model in inference mode as a serialized ONNX graph: `images` [B, S, S, 3] -> `probabilities`."""
    import tf2onnx

    spec = [tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")]
    forward = tf.function(lambda images: {"probabilities": model(images, training=False)}, input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=OPSET)
    return proto.SerializeToString()
