"""Exported-model speed and size: ours against keras.applications' same model through the same export path.

Each model (random weights, 1000 classes, 224 px) is exported by
`export.export_trained` (SavedModel, LiteRT float32/float16/dynamic/int8,
ONNX), ours and keras.applications' alike; lite0 has no keras.applications
counterpart. Every runtime is timed at batch 1 (latency, ms) and batch 16
(throughput, images/s), alternating ours/keras on every repeat; the table
shows medians and keras/ours time (>1: ours is faster), then file sizes and
int8 LiteRT's speed-up over float32 LiteRT at batch 1.

    PYTHONPATH=. python benchmarks/bench_export.py [--models efficientnet-b0] [--repeats 5] [--seconds 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

import efficientnet_tf
from efficientnet_tf.data.synthetic import render_split
from efficientnet_tf.inference import LiteRTModel, OnnxModel
from efficientnet_tf.training import Trained
from efficientnet_tf.training.hardware import describe_cpu
from export import QUANTIZATIONS, export_trained

SIZE = 224
CLASSES = 1000
ANCHORS: dict[str, Callable[[], keras.Model]] = {
    "efficientnet-b0": lambda: keras.applications.EfficientNetB0(weights=None, input_shape=(SIZE, SIZE, 3)),
    "efficientnetv2-b0": lambda: keras.applications.EfficientNetV2B0(
        weights=None, input_shape=(SIZE, SIZE, 3), include_preprocessing=True),
}  # fmt: skip
MODELS = ("efficientnet-lite0", "efficientnet-b0", "efficientnetv2-b0")
BATCHES = {"bs1 ms": 1, "bs16 img/s": 16}


def runners(model: keras.Model, directory: str) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Every runtime of one exported model, each a function from float images to probabilities (None: no file)."""
    threads = os.cpu_count()
    forward = tf.function(lambda images: model(images, training=False))
    serve = tf.saved_model.load(os.path.join(directory, "saved_model")).signatures["serving_default"]
    found = {
        "keras": lambda x: forward(x).numpy(),
        "saved_model": lambda x: serve(images=tf.constant(x))["probabilities"].numpy(),
    }
    for quantize in QUANTIZATIONS:
        found[f"litert {quantize}"] = LiteRTModel(os.path.join(directory, f"model_{quantize}.tflite"), num_threads=threads)
    onnx = os.path.join(directory, "model.onnx")
    found["onnxruntime"] = OnnxModel(onnx, num_threads=threads) if os.path.exists(onnx) else None
    return found


def export(model: keras.Model, family: str, directory: str, calibration: np.ndarray) -> dict[str, int]:
    """Every format; a model whose ONNX graph fails the export's check is exported without ONNX."""
    trained = Trained(model, [f"class_{i}" for i in range(CLASSES)], family, SIZE)
    try:
        artifacts = export_trained(trained, directory, calibration=calibration)
    except ValueError as error:  # keras.applications' Normalization layer becomes extra ONNX inputs
        print(f"  {model.name}: {error} -> exported without ONNX")
        artifacts = export_trained(trained, directory, formats=["saved_model", "tflite"], calibration=calibration)
    return {a.name: a.bytes for a in artifacts}


def timed(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, seconds: float) -> float:
    """Median seconds per call over calls that fill about `seconds`."""
    run(images)
    start = time.perf_counter()
    run(images)
    calls = max(1, round(seconds / (time.perf_counter() - start)))
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        run(images)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    print(f"CPU: {describe_cpu()}; TF {tf.__version__}, Keras {keras.__version__}; "
          f"{SIZE} px, {CLASSES} classes, random weights; medians of {args.repeats} alternating repeats")  # fmt: skip
    rng = np.random.default_rng(0)
    calibration = render_split(32, 10, SIZE, seed=0, stream=0)[0].astype("float32")
    inputs = {key: rng.uniform(0, 255, (batch, SIZE, SIZE, 3)).astype("float32") for key, batch in BATCHES.items()}
    with tempfile.TemporaryDirectory() as root:
        for name in args.models:
            spec = efficientnet_tf.get_spec(name)
            contenders = {"ours": efficientnet_tf.get_model(name, num_classes=CLASSES, input_shape=(SIZE, SIZE, 3))}
            if name in ANCHORS:
                contenders["keras"] = ANCHORS[name]()
            sizes, runs = {}, {}
            for who, model in contenders.items():
                directory = os.path.join(root, f"{name}-{who}")
                sizes[who] = export(model, spec.family, directory, calibration)
                runs[who] = runners(model, directory)
            times = {(who, runtime, key): [] for who in runs for runtime in runs[who] for key in BATCHES}
            for repeat in range(args.repeats):
                order = list(runs) if repeat % 2 == 0 else list(runs)[::-1]
                for runtime in runs["ours"]:
                    for key in BATCHES:
                        for who in order:
                            if runs[who][runtime] is not None:
                                times[who, runtime, key].append(timed(runs[who][runtime], inputs[key], args.seconds))
            report(name, runs, times, sizes)


def report(name: str, runs: dict, times: dict, sizes: dict) -> None:
    median = {k: statistics.median(v) if v else float("nan") for k, v in times.items()}
    anchored = "keras" in runs
    print(f"\n{name}" + ("" if anchored else " (no keras.applications counterpart)"))
    header = f"  {'runtime':<18}"
    for key, batch in BATCHES.items():
        header += f" {'ours ' + key:>16}" + (f" {'keras ' + key:>17} {'keras/ours':>10}" if anchored else "")
    print(header)
    for runtime in runs["ours"]:
        line = f"  {runtime:<18}"
        for key, batch in BATCHES.items():
            value = {who: median[who, runtime, key] for who in runs}
            shown = {who: 1000 * t if batch == 1 else batch / t for who, t in value.items()}
            line += f" {shown['ours']:>16.1f}"
            if anchored:
                line += f" {shown['keras']:>17.1f} {value['keras'] / value['ours']:>10.2f}"
        print(line)
    print("  sizes (MB): " + ", ".join(
        f"{artifact} {sizes['ours'][artifact] / 1e6:.1f}"
        + (f" (keras {sizes['keras'][artifact] / 1e6 if artifact in sizes['keras'] else float('nan'):.1f})" if anchored else "")
        for artifact in sizes["ours"]))  # fmt: skip
    speedup = median["ours", "litert float32", "bs1 ms"] / median["ours", "litert int8", "bs1 ms"]
    print(f"  int8 LiteRT vs float32 LiteRT at batch 1: {speedup:.2f}x faster")


if __name__ == "__main__":
    main()
