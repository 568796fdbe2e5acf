"""Deployable artifacts of a trained model: SavedModel, LiteRT (float32, float16, dynamic, int8) and ONNX.

    python -m export --model runs/b0 --out exports/b0

or from Python:

    from efficientnet_tf.training import load_trained
    from export import calibration_images, export_trained, held_out_images
    trained = load_trained("runs/b0")
    export_trained(trained, "exports/b0", calibration=calibration_images(trained, 128),
                   held_out=held_out_images(trained, "data/val", 1000), quantize=["int8", "int8-auto"])

The model (`load_trained`, `Trained`) and what reads artifacts back
(`efficientnet_tf.inference`: `eval_image`, `MANIFEST`, the LiteRT and ONNX
runners) are the library's, so predict needs nothing from this package.
"""

from efficientnet_tf.errors import import_tensorflow

import_tensorflow("export")

from export.artifacts import FORMATS, QUANTIZE_CHOICES, Artifact, export_trained
from export.litert import QUANTIZATIONS
from export.serving import write_saved_model
from export.source import HeldOut, calibration_images, held_out_images

__all__ = [
    "FORMATS", "QUANTIZATIONS", "QUANTIZE_CHOICES", "Artifact", "HeldOut", "calibration_images", "export_trained",
    "held_out_images", "write_saved_model",
]  # fmt: skip
