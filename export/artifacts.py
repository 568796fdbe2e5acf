"""One export run: every requested artifact, checked against Keras, in a directory that appears whole or not at all.

Everything is written into a temporary sibling of `out` and renamed onto it
at the end, so a killed export leaves only a `.tmp-*` directory, never an
`out` that looks finished. `export.json` records what predict needs (model,
family, image size, class names) and each artifact's size and parity.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from efficientnet_tf.training.files import TEMP_PREFIX, atomic_write, atomic_write_text
from export import litert, onnx_export
from export.serving import write_saved_model
from export.source import Trained

FORMATS = ("saved_model", "tflite", "onnx")
MANIFEST = "export.json"
SAVED_MODEL = "saved_model"
ONNX_FILE = "model.onnx"


def tflite_file(quantize: str) -> str:
    return f"model_{quantize}.tflite"


@dataclasses.dataclass
class Artifact:
    """One written file or directory, its size, and how far its outputs are from Keras' on the check images."""

    name: str
    bytes: int
    max_abs_diff: float
    top1_agreement: float


def parse_list(value: str | Sequence[str], allowed: Sequence[str], argument: str) -> list[str]:
    """"a,b" or ["a", "b"] -> ["a", "b"], each checked against `allowed`."""
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        raise ValueError(f"{argument}: unknown value(s) {unknown or [value]}; use a comma-separated subset of {', '.join(allowed)}.")
    return list(dict.fromkeys(items))


def export_trained(
    trained: Trained,
    out: str,
    *,
    formats: Sequence[str] = FORMATS,
    quantize: Sequence[str] = litert.QUANTIZATIONS,
    calibration: Optional[np.ndarray] = None,
    overwrite: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> list[Artifact]:
    """Writes the requested artifacts of `trained` into directory `out`; returns them with sizes and parity.

    `calibration`: float32 [N, S, S, 3] images in [0, 255] (S = the image
    size) for int8 and for the parity check; see `source.calibration_images`.
    """
    formats = parse_list(formats, FORMATS, "formats")
    quantize = parse_list(quantize, litert.QUANTIZATIONS, "quantize")
    size = trained.image_size
    if calibration is None or calibration.ndim != 4 or calibration.shape[1:] != (size, size, 3):
        shape = None if calibration is None else calibration.shape
        raise ValueError(f"calibration must be float32 images [N, {size}, {size}, 3] (the export's image size), got {shape}.")
    out = os.path.abspath(out)
    if os.path.exists(out) and not overwrite:
        raise ValueError(f"out {out!r} already exists; pass --overwrite to replace it, or another --out.")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{os.path.basename(out)}")
    os.makedirs(staging)
    try:
        artifacts = _write_all(trained, staging, formats, quantize, calibration, log)
        manifest = {
            "model": trained.model.name, "family": trained.family, "image_size": size, "class_names": trained.class_names,
            "artifacts": [dataclasses.asdict(a) for a in artifacts],
        }  # fmt: skip
        atomic_write_text(os.path.join(staging, MANIFEST), json.dumps(manifest, indent=2) + "\n")
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return artifacts


def _write_all(trained: Trained, staging: str, formats, quantize, calibration: np.ndarray, log) -> list[Artifact]:
    model, size = trained.model, trained.image_size
    check_images = calibration[:16]
    reference = model.predict(check_images, verbose=0, batch_size=len(check_images))
    artifacts = []

    def record(name: str, outputs: np.ndarray) -> None:
        if not np.all(np.isfinite(outputs)):
            raise ValueError(f"{name} gives non-finite outputs; the conversion is broken, do not ship it.")
        path = os.path.join(staging, name)
        agreement = float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))
        artifacts.append(Artifact(name, _size(path), float(np.abs(outputs - reference).max()), agreement))
        log(_describe(artifacts[-1]))

    served = dict(class_names=trained.class_names, family=trained.family, image_size=size)
    if "saved_model" in formats:
        path = os.path.join(staging, SAVED_MODEL)
        write_saved_model(model, path, **served)
        serve = tf.saved_model.load(path).signatures["serving_default"]
        record(SAVED_MODEL, serve(images=tf.constant(check_images))["probabilities"].numpy())
    if "tflite" in formats:
        fixed = os.path.join(staging, f"{TEMP_PREFIX}fixed-size-saved-model")
        write_saved_model(model, fixed, fixed_size=size, **served)
        for mode in quantize:
            content = litert.convert(fixed, mode, calibration if mode == "int8" else None)
            flex = sorted(name for name in litert.op_names(content) if name.startswith("Flex") or name == "CUSTOM")
            if flex:
                raise ValueError(f"The {mode} LiteRT model needs non-builtin ops {flex}; it would not run on plain LiteRT.")
            name = tflite_file(mode)
            _write_bytes(os.path.join(staging, name), content)
            record(name, litert.LiteRTModel(content)(check_images))
        shutil.rmtree(fixed)
    if "onnx" in formats:
        content = onnx_export.convert(model, size)
        _write_bytes(os.path.join(staging, ONNX_FILE), content)
        record(ONNX_FILE, onnx_export.OnnxModel(content)(check_images))
    return artifacts


def _describe(artifact: Artifact) -> str:
    return (f"{artifact.name:<22} {artifact.bytes / 1e6:8.2f} MB   max |p - p_keras| {artifact.max_abs_diff:.2e}   "
            f"top-1 agreement {100 * artifact.top1_agreement:.1f}%")  # fmt: skip


def _write_bytes(path: str, content: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as file:
            file.write(content)

    atomic_write(path, write)


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def _replace_dir(staging: str, out: str) -> None:
    """Renames the finished directory onto `out`; an old `out` is moved aside first and removed after."""
    old = None
    if os.path.exists(out):
        old = os.path.join(os.path.dirname(out), f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-old-{os.path.basename(out)}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        if os.path.isdir(old):
            shutil.rmtree(old)
        else:
            os.remove(old)
