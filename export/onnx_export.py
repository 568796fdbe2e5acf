"""ONNX through tf2onnx, and an onnxruntime runner.

Our input normalization is a weightless `Rescaling`, so the graph has one
input (a `Normalization` layer would add its mean and variance as inputs).
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
import tensorflow as tf

OPSET = 17


def convert(model: keras.Model, image_size: int) -> bytes:
    """The model in inference mode as a serialized ONNX graph: `images` [B, S, S, 3] -> `probabilities`."""
    import tf2onnx

    spec = [tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")]
    forward = tf.function(lambda images: {"probabilities": model(images, training=False)}, input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=OPSET)
    return proto.SerializeToString()


class OnnxModel:
    """Runs an ONNX file on float32 images [B, S, S, 3] in [0, 255] with onnxruntime's CPU provider."""

    def __init__(self, model: bytes | str, num_threads: Optional[int] = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"The ONNX graph takes {len(inputs)} inputs ({[i.name for i in inputs]}); an image model takes one.")
        self._input = inputs[0].name
        self.image_size = int(inputs[0].shape[1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: np.asarray(images, np.float32)})[0]
