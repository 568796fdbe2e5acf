"""One export run: every requested artifact, checked against Keras, in a directory that appears whole or not at all.

Everything is written into a temporary sibling of `out` and renamed onto it
at the end, so a killed export leaves only a `.tmp-*` directory, never an
`out` that looks finished (a bucket's `out` is written locally, then uploaded
with export.json last). `export.json` records what predict needs (model,
family, image size, class names) and each artifact's size and parity.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from efficientnet_tf.files import (
    TEMP_PREFIX, atomic_write, atomic_write_text, check_filesystem, copy_tree, error_text, is_remote,
)  # fmt: skip
from efficientnet_tf.inference import MANIFEST, LiteRTModel, OnnxModel
from efficientnet_tf.training.loading import Trained
from export import int8_auto, litert, onnx_export
from export.serving import write_saved_model
from export.source import HeldOut

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZE_CHOICES = (*litert.QUANTIZATIONS, int8_auto.MODE)  # int8-auto converts several times, so not by default
SAVED_MODEL = "saved_model"
ONNX_FILE = "model.onnx"
CHECK_IMAGES = 16


def tflite_file(quantize: str) -> str:
    return f"model_{quantize.replace('-', '_')}.tflite"


@dataclasses.dataclass
class Artifact:
    """One written file or directory, its size, and how far its outputs are from Keras'.

    `max_abs_diff` and `top1_agreement` on the check images (the first 16
    calibration images); `held_out_top1_agreement` on the held-out images
    (`--eval_data`), None without them.
    """

    name: str
    bytes: int
    max_abs_diff: float
    top1_agreement: float
    held_out_top1_agreement: Optional[float] = None


def parse_list(value: str | Sequence[str], allowed: Sequence[str], argument: str) -> list[str]:
    """"a,b" or ["a", "b"] -> ["a", "b"], each checked against `allowed`."""
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        raise ValueError(f"{argument}: unknown value(s) {unknown or [value]}; use a comma-separated subset of {', '.join(allowed)}.")
    return list(dict.fromkeys(items))


def check_min_agreement(value: float, argument: str) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"{argument} must be in (0, 1], got {value}; pass a fraction such as 0.99 (99% top-1 agreement).")


def export_trained(
    trained: Trained,
    out: str,
    *,
    formats: Sequence[str] = FORMATS,
    quantize: Sequence[str] = litert.QUANTIZATIONS,
    calibration: Optional[np.ndarray] = None,
    held_out: Optional[HeldOut] = None,
    int8_min_agreement: float = 0.99,
    overwrite: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> list[Artifact]:
    """Writes the requested artifacts of `trained` into directory `out`; returns them with sizes and parity.

    `calibration`: float32 [N, S, S, 3] images in [0, 255] (S = the image
    size) for int8 and for the parity check; see `source.calibration_images`.
    `held_out`: images every artifact's top-1 agreement is also reported on,
    and that int8-auto's search decides on (else the calibration images); see
    `source.held_out_images`. `int8_min_agreement`: int8-auto's target, in (0, 1].
    """
    formats = parse_list(formats, FORMATS, "formats")
    quantize = parse_list(quantize, QUANTIZE_CHOICES, "quantize")
    check_min_agreement(int8_min_agreement, "int8_min_agreement")
    size = trained.image_size
    _check_images("calibration", calibration, size)
    if held_out is not None:
        _check_images("held_out", held_out.images, size)
    check_filesystem(out, "out")
    out = out if is_remote(out) else os.path.abspath(out)
    if tf.io.gfile.exists(out) and not overwrite:
        raise ValueError(f"out {out!r} already exists; pass --overwrite to replace it, or another --out.")
    if is_remote(out):  # converters write local files; the finished directory is uploaded
        staging = tempfile.mkdtemp(prefix="efficientnet_tf-export-")
    else:
        parent = os.path.dirname(out)
        os.makedirs(parent, exist_ok=True)
        staging = os.path.join(parent, f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{os.path.basename(out)}")
        os.makedirs(staging)
    try:
        artifacts, auto = _write_all(trained, staging, formats, quantize, calibration, held_out, int8_min_agreement, log)
        manifest = {
            "model": trained.model.name, "family": trained.family, "image_size": size, "class_names": trained.class_names,
            "held_out": None if held_out is None else {"data": held_out.name, "images": len(held_out.images)},
            "artifacts": [dataclasses.asdict(a) for a in artifacts],
        }  # fmt: skip
        if auto is not None:
            manifest[int8_auto.MODE] = {
                "file": tflite_file(int8_auto.MODE), "min_agreement": int8_min_agreement,
                "decided_on": "held_out" if held_out is not None else "calibration images",
                "reached": auto.reached, "float_ops": auto.float_ops, "top1_agreement": auto.top1_agreement,
                "attempts": [dataclasses.asdict(a) for a in auto.attempts],
            }  # fmt: skip
        atomic_write_text(os.path.join(staging, MANIFEST), json.dumps(manifest, indent=2) + "\n")
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return artifacts


def _check_images(what: str, images: Optional[np.ndarray], size: int) -> None:
    if images is None or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        shape = None if images is None else images.shape
        raise ValueError(f"{what} must be float32 images [N, {size}, {size}, 3] (the export's image size), got {shape}.")


def _write_all(
    trained: Trained, staging: str, formats, quantize, calibration: np.ndarray, held_out: Optional[HeldOut],
    int8_min_agreement: float, log,
) -> tuple[list[Artifact], Optional[int8_auto.Int8Auto]]:
    model, size = trained.model, trained.image_size
    check_images = calibration[:CHECK_IMAGES]
    reference = model.predict(check_images, verbose=0, batch_size=len(check_images))
    held_out_reference = None if held_out is None else model.predict(held_out.images, verbose=0, batch_size=64)
    artifacts, auto = [], None

    def record(name: str, run: Callable[[np.ndarray], np.ndarray]) -> None:
        outputs = run(check_images)
        if not np.all(np.isfinite(outputs)):
            raise ValueError(f"{name} gives non-finite outputs; the conversion is broken, do not ship it.")
        path = os.path.join(staging, name)
        held_out_agreement = None if held_out is None else _agreement(run(held_out.images), held_out_reference)
        artifacts.append(Artifact(name, _size(path), float(np.abs(outputs - reference).max()),
                                  _agreement(outputs, reference), held_out_agreement))  # fmt: skip
        log(_describe(artifacts[-1]))

    served = dict(class_names=trained.class_names, family=trained.family, image_size=size)
    if "saved_model" in formats:
        path = os.path.join(staging, SAVED_MODEL)
        write_saved_model(model, path, **served)
        serve = tf.saved_model.load(path).signatures["serving_default"]
        record(SAVED_MODEL, lambda images: serve(images=tf.constant(images))["probabilities"].numpy())
    if "tflite" in formats:
        fixed = os.path.join(staging, f"{TEMP_PREFIX}fixed-size-saved-model")
        write_saved_model(model, fixed, fixed_size=size, **served)
        plain_int8 = None
        for mode in quantize:
            if mode == int8_auto.MODE:
                plain_int8 = plain_int8 or litert.convert(fixed, "int8", calibration)
                # The held-out images decide; without them the calibration images (a biased but fair proxy).
                decide_on = calibration if held_out is None else held_out.images
                expected = model.predict(decide_on, verbose=0, batch_size=64) if held_out is None else held_out_reference
                agreement = lambda content: _agreement(LiteRTModel(content)(decide_on), expected)  # noqa: E731
                auto = int8_auto.search(fixed, calibration, plain_int8, agreement, int8_min_agreement, log)
                content = auto.content
                log(_describe_auto(auto, int8_min_agreement))
            else:
                content = litert.convert(fixed, mode, calibration if mode == "int8" else None)
                plain_int8 = content if mode == "int8" else plain_int8
            flex = sorted(name for name in litert.op_names(content) if name.startswith("Flex") or name == "CUSTOM")
            if flex:
                raise ValueError(f"The {mode} LiteRT model needs non-builtin ops {flex}; it would not run on plain LiteRT.")
            name = tflite_file(mode)
            _write_bytes(os.path.join(staging, name), content)
            record(name, LiteRTModel(content))
        shutil.rmtree(fixed)
    if "onnx" in formats:
        content = onnx_export.convert(model, size)
        _write_bytes(os.path.join(staging, ONNX_FILE), content)
        record(ONNX_FILE, OnnxModel(content))
    return artifacts, auto


def _agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))


def _describe_auto(auto: int8_auto.Int8Auto, min_agreement: float) -> str:
    kept = ", ".join(auto.float_ops) or "nothing"
    if auto.reached:
        return f"{int8_auto.MODE}: keeps {kept} in float, {auto.top1_agreement:.1%} >= {min_agreement:.1%}"
    return (f"{int8_auto.MODE}: could not reach {min_agreement:.1%} without float convolutions; best {auto.top1_agreement:.1%} "
            f"keeping {kept} in float (that file is written; float16 keeps Keras' top-1 more closely)")  # fmt: skip


def _describe(artifact: Artifact) -> str:
    held_out = "" if artifact.held_out_top1_agreement is None else f", held-out {artifact.held_out_top1_agreement:.1%}"
    return (f"{artifact.name:<22} {artifact.bytes / 1e6:8.2f} MB   max |p - p_keras| {artifact.max_abs_diff:.2e}   "
            f"top-1 agreement {100 * artifact.top1_agreement:.1f}%{held_out}")  # fmt: skip


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
    """Renames the finished directory onto `out`; an old `out` is moved aside first and removed after.

    A bucket cannot rename a directory: the old `out` is removed, then the
    files are uploaded with export.json last, which predict requires.
    """
    if is_remote(out):
        try:
            if tf.io.gfile.exists(out):
                tf.io.gfile.rmtree(out)
        except tf.errors.OpError as error:
            raise OSError(f"Could not replace {out}: {error_text(error)}") from None
        copy_tree(staging, out, last=MANIFEST)
        shutil.rmtree(staging)
        return
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
