"""Deployable artifacts of a trained model: SavedModel, LiteRT (float32, float16, dynamic, int8) and ONNX.

    python -m export --model runs/b0 --out exports/b0

or from Python:

    from export import load_trained, calibration_images, export_trained, held_out_images
    trained = load_trained("runs/b0")
    export_trained(trained, "exports/b0", calibration=calibration_images(trained, 128),
                   held_out=held_out_images(trained, "data/val", 1000), quantize=["int8", "int8-auto"])
"""

from export.artifacts import FORMATS, MANIFEST, QUANTIZE_CHOICES, Artifact, export_trained
from export.litert import QUANTIZATIONS, LiteRTModel
from export.onnx_export import OnnxModel
from export.serving import eval_image, write_saved_model
from export.source import HeldOut, Trained, calibration_images, held_out_images, load_trained

__all__ = [
    "FORMATS", "MANIFEST", "QUANTIZATIONS", "QUANTIZE_CHOICES", "Artifact", "HeldOut", "LiteRTModel", "OnnxModel", "Trained",
    "calibration_images", "eval_image", "export_trained", "held_out_images", "load_trained", "write_saved_model",
]  # fmt: skip
