"""What running a model on image files needs, shared by `python -m export` (which writes artifacts) and predict (which reads them).

The serving preprocessing of one encoded image, the name of the manifest an
export directory describes itself in, and runners for the LiteRT and ONNX
files. The runtimes are the `export` extra (`pip install -e .[export]`), so
they are imported only when a runner is made.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from efficientnet_tf.data import preprocessing

# An export directory's description: model, family, image size, class names, its artifacts.
MANIFEST = "export.json"


def eval_image(encoded: tf.Tensor, family: str, image_size: int) -> tf.Tensor:
    """One encoded JPEG/PNG/GIF/BMP -> float32 [S, S, 3] (about [0, 255]), as `make_eval_dataset` prepares it.

    The same three public steps as the eval pipeline (decode the crop window,
    resize), so a change to the family's preprocessing reaches serving too.
    """
    fam = preprocessing.get_family(family)
    image = preprocessing.decode_window(encoded, preprocessing.eval_window_fn(fam, image_size), fam.jpeg_window_decode)
    image = preprocessing.resize(image, tf.constant(image_size), fam)
    return tf.ensure_shape(image, [image_size, image_size, 3])


class LiteRTModel:
    """Runs a LiteRT file on float32 images [B, S, S, 3] in [0, 255], giving float32 probabilities.

    uint8 input and output (full-integer models) are quantized and
    dequantized here with the file's own scales, so every variant is called alike.
    """

    def __init__(self, model: bytes | str, num_threads: Optional[int] = None):
        from ai_edge_litert.interpreter import Interpreter

        content = model if isinstance(model, bytes) else None
        path = None if content is not None else model
        self.interpreter = Interpreter(model_path=path, model_content=content, num_threads=num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = 0
        self.image_size = int(self._input["shape"][1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.shape[0] != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], [images.shape[0], *self._input["shape"][1:]])
            self.interpreter.allocate_tensors()
            self._batch = images.shape[0]
        self.interpreter.set_tensor(self._input["index"], _quantize(images, self._input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self._output["index"]), self._output)


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values
    scale, zero_point = detail["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


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
