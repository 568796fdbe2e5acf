"""Model throughput: ours against the same `keras.applications` model.

For each model and dtype policy both networks are rebuilt (weights=None, same
input size, 1000 classes, preprocessing included in both) and timed in the
same process, alternating ours/keras on every repeat so that machine noise
hits both alike; the table shows medians and ours/keras (>1: we are faster).
Modes: inference `model(x, training=False)` in a `tf.function` at batch 1
and 16, and one training step (`train_on_batch`, SGD, sparse cross-entropy,
jit_compile=False) at batch 16. Runs on whatever device TensorFlow sees.

    PYTHONPATH=. python benchmarks/bench_model.py [--models efficientnet-b0] \
        [--dtypes float32 mixed_bfloat16] [--repeats 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

import efficientnet_tf

# Our name -> (input size, keras.applications constructor and its extra options).
MODELS: dict[str, tuple[int, Callable[..., keras.Model], dict]] = {
    "efficientnetv2-s": (128, keras.applications.EfficientNetV2S, {"include_preprocessing": True}),
    "efficientnet-b0": (224, keras.applications.EfficientNetB0, {}),  # always preprocesses
}
MODES = {"fwd bs1": 1, "fwd bs16": 16, "train bs16": 16}
CLASSES = 1000


def build_pair(name: str) -> dict[str, keras.Model]:
    """Ours and keras', both compiled the same way under the current policy."""
    size, keras_fn, options = MODELS[name]
    shape = (size, size, 3)
    models = {
        "ours": efficientnet_tf.get_model(name, input_shape=shape, num_classes=CLASSES),
        "keras": keras_fn(weights=None, input_shape=shape, classes=CLASSES, **options),
    }
    for model in models.values():
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            jit_compile=False,
        )
    return models


def step_fn(model: keras.Model, mode: str, size: int) -> tuple[Callable[[], None], int]:
    """A no-argument callable running one step of `mode`, and its batch size."""
    batch = MODES[mode]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    if mode.startswith("train"):
        y = tf.constant(rng.integers(0, CLASSES, batch))
        return (lambda: model.train_on_batch(x, y)), batch
    forward = tf.function(lambda images: model(images, training=False))
    return (lambda: forward(x).numpy()), batch


def timed(step: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return time.perf_counter() - start


def compare(steps: dict[str, Callable[[], None]], batch: int, repeats: int, seconds: float) -> dict[str, float]:
    """Median images/s of each step, alternating which one goes first every repeat."""
    calls = {}
    for key, step in steps.items():
        timed(step, 2)  # trace and warm up
        calls[key] = max(1, round(seconds / timed(step, 1)))
    rates: dict[str, list[float]] = {key: [] for key in steps}
    order = list(steps)
    for _ in range(repeats):
        for key in order:
            rates[key].append(batch * calls[key] / timed(steps[key], calls[key]))
        order.reverse()
    return {key: statistics.median(values) for key, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds; the median is reported")
    parser.add_argument("--seconds", type=float, default=2.0, help="rough length of one timed round")
    args = parser.parse_args()

    devices = [d.device_type for d in tf.config.list_logical_devices()]
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, devices {devices}")
    header = f"{'model':<18} {'dtype':<15} {'mode':<11} {'ours img/s':>11} {'keras img/s':>12} {'ratio':>6}"
    rows = []
    for name in args.models:
        for dtype in args.dtypes:
            keras.mixed_precision.set_global_policy(dtype)
            keras.backend.clear_session()
            models = build_pair(name)
            size = MODELS[name][0]
            for mode in args.modes:
                steps = {}
                for key, model in models.items():
                    steps[key], batch = step_fn(model, mode, size)
                rate = compare(steps, batch, args.repeats, args.seconds)
                row = (
                    f"{name:<18} {dtype:<15} {mode:<11} {rate['ours']:>11.1f} {rate['keras']:>12.1f} "
                    f"{rate['ours'] / rate['keras']:>6.2f}"
                )
                rows.append(row)
                print(row, flush=True)
    keras.mixed_precision.set_global_policy("float32")
    print("\n" + header + "\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
