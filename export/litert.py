"""LiteRT (TFLite) files from a SavedModel, builtin ops only (their runner is `efficientnet_tf.inference.LiteRTModel`).

Converting from a concrete function leaves resource variables uninitialized
(the outputs are NaN); converting the SavedModel does not. Builtin op sets
only: with Select TF ops allowed, Flex ops slip in silently and the file then
needs the TensorFlow runtime.
"""

from __future__ import annotations

import csv
import io
from typing import Iterable, Optional

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def convert(
    saved_model: str,
    quantize: str,
    representative_images: Optional[np.ndarray] = None,
    float_ops: Iterable[str] = (),
) -> bytes:
    """The SavedModel's `serving_default` as a LiteRT flatbuffer.

    `quantize`: "float32"; "float16" weights; "dynamic" (int8 weights, float
    activations); "int8" (full integer, uint8 input and output, calibrated on
    `representative_images`, float32 [N, S, S, 3]). `float_ops` keeps these
    op types (e.g. "LOGISTIC", "MUL") in float inside an int8 model; such a
    model keeps float32 input and output (TF's quantization debugger builds it).
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}.")
    if quantize == "int8":
        float_ops = tuple(float_ops)
        if float_ops:
            return Int8Debugger(saved_model, representative_images).quantized(float_ops)
        converter = _int8_converter(saved_model, representative_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()
    converter = _converter(saved_model)
    if quantize != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def _converter(saved_model: str) -> tf.lite.TFLiteConverter:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _int8_converter(saved_model: str, representative_images: Optional[np.ndarray]) -> tf.lite.TFLiteConverter:
    if representative_images is None or len(representative_images) == 0:
        raise ValueError("int8 needs representative_images (float32 [N, S, S, 3]) to calibrate on.")
    converter = _converter(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in representative_images)
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    return converter


class Int8Debugger:
    """One calibration of the SavedModel, then int8 models with any op types kept in float, and per-layer errors.

    Wraps TF's quantization debugger; its models keep float32 input and output.
    """

    def __init__(self, saved_model: str, representative_images: Optional[np.ndarray]):
        converter = _int8_converter(saved_model, representative_images)
        self._debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset)

    def quantized(self, float_ops: Iterable[str] = ()) -> bytes:
        """Full-integer except the `float_ops` op types, which stay float (builtin ops still)."""
        self._debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(float_ops))
        return self._debugger.get_nondebug_quantized_model()

    def layer_errors(self) -> list[tuple[str, float]]:
        """(op type, RMS error in steps of its output's scale) of every quantized layer, over the calibration images.

        Plain rounding gives about 0.29 steps (1/sqrt(12)); more is error the int8 layer adds.
        """
        self._debugger.options = tf.lite.experimental.QuantizationDebugOptions()
        self._debugger.run()
        table = io.StringIO()
        self._debugger.layer_statistics_dump(table)
        table.seek(0)
        return [(row["op_name"], float(np.sqrt(float(row["mean_squared_error"]))) / float(row["scale"]))
                for row in csv.DictReader(table)]  # fmt: skip


def op_names(model: bytes) -> set[str]:
    """The op types a LiteRT flatbuffer uses, read before any delegate rewrites the graph."""
    interpreter = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return {op["op_name"] for op in interpreter._get_ops_details()}
