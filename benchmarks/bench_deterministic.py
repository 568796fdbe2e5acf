"""What `--train.deterministic=true` costs: training images/s of the same `train.py` run with and without it.

Each mode runs `--repeats` times as a separate process (op determinism is
process-wide and cannot be turned off once on), alternating the modes so
machine noise hits both alike. The rate is the median of the epochs' training
images/s after the first (which traces the step); the ratio is
deterministic / default (1.00: free). It also says whether every repeat of a
mode ended with bit-identical weights.

    PYTHONPATH=. python benchmarks/bench_deterministic.py [--model efficientnetv2-b0] [--image_size 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

import efficientnet_tf  # noqa: F401  (registers the layers model.keras holds)
from efficientnet_tf.training.hardware import describe_cpu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(args: argparse.Namespace, model_dir: str, deterministic: bool) -> tuple[float, list[np.ndarray]]:
    """One run: (median training images/s after the first epoch, final weights)."""
    command = [
        sys.executable, "train.py", f"--model={args.model}", f"--epochs={args.epochs}", "--progressive.stages=1",
        f"--batch_size={args.batch_size}", f"--data.synthetic_train={args.images}", "--data.synthetic_eval=64",
        f"--data.image_size={args.image_size}", f"--data.eval_size={args.image_size}", "--mixed_precision=float32",
        f"--train.deterministic={str(deterministic).lower()}", f"--model_dir={model_dir}",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"train.py failed:\n{result.stderr[-3000:]}")
    with open(os.path.join(model_dir, "log.csv")) as f:
        rates = [float(row["images_per_sec"]) for row in csv.DictReader(f)][1:]
    weights = keras.models.load_model(os.path.join(model_dir, "model.keras")).get_weights()
    return statistics.median(rates), weights


def identical(runs: list[list[np.ndarray]]) -> bool:
    return all(all(np.array_equal(a, b) for a, b in zip(runs[0], other)) for other in runs[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnetv2-b0")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--images", type=int, default=640, help="synthetic training images per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode, alternating")
    args = parser.parse_args()
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}; {describe_cpu()}; {os.cpu_count()} cores")
    print(f"{args.model} at {args.image_size} px, batch {args.batch_size}, {args.images} images x {args.epochs} epochs, float32")

    rates: dict[bool, list[float]] = {False: [], True: []}
    weights: dict[bool, list] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for deterministic in (False, True) if repeat % 2 == 0 else (True, False):
                rate, final = train(args, os.path.join(scratch, f"{deterministic}-{repeat}"), deterministic)
                rates[deterministic].append(rate)
                weights[deterministic].append(final)
                print(f"  deterministic={deterministic!s:<5} run {repeat + 1}: {rate:.1f} training img/s", flush=True)
    for deterministic, name in ((False, "default"), (True, "deterministic")):
        same = "bit-identical" if identical(weights[deterministic]) else "DIFFERENT"
        print(f"{name:<14} {statistics.median(rates[deterministic]):8.1f} img/s; final weights of the repeats: {same}")
    print(f"deterministic / default: {statistics.median(rates[True]) / statistics.median(rates[False]):.2f}x")


if __name__ == "__main__":
    main()
