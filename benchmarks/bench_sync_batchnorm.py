"""What synchronized BatchNorm costs per training step, and that one replica keeps the fused kernel.

Trains the same model at the same global batch, in one run, four ways:
one device with `synchronized` off and on (on one replica the layer stays
on the fused kernel, so the ratio should be ~1.0), and MirroredStrategy
over the replicas with it off and on (one all-reduce per BatchNorm layer and
unfused ops). Repeats alternate between the variants; medians of the step
time and the sync/local ratios are printed. Uses every GPU when there are
several, else splits the CPU into `--replicas` logical devices (a CPU
measures the op overhead, not interconnect speed).

    PYTHONPATH=. python benchmarks/bench_sync_batchnorm.py [--model efficientnetv2-b0] [--size 64] [--batch 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import tensorflow as tf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnetv2-b0")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument("--replicas", type=int, default=2, help="logical CPU devices when there are no GPUs")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) < 2:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.replicas)
    import keras

    import efficientnet_tf
    from efficientnet_tf.layers import synchronize_batchnorm

    devices = [d.name for d in tf.config.list_logical_devices("GPU" if len(gpus) >= 2 else "CPU")]
    strategies = {"one device": tf.distribute.OneDeviceStrategy(devices[0]), "mirrored": tf.distribute.MirroredStrategy(devices)}
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32")
    labels = np.eye(10, dtype="float32")[rng.integers(0, 10, args.batch)]

    models = {}
    for name, strategy in strategies.items():
        for synchronized in (False, True):
            with strategy.scope():
                model = efficientnet_tf.get_model(args.model, width=args.width, num_classes=10)
                synchronize_batchnorm(model, synchronized)
                model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="categorical_crossentropy")
            data = strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensors((images, labels)).repeat(args.steps)
            )  # fmt: skip
            model.fit(data, epochs=1, verbose=0, shuffle=False)  # trace and warm up
            models[(name, synchronized)] = (model, data)

    times = {key: [] for key in models}
    for _ in range(args.repeats):
        for key, (model, data) in models.items():
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0, shuffle=False)
            times[key].append((time.perf_counter() - start) / args.steps)

    kind = f"{len(gpus)} GPU(s)" if len(gpus) >= 2 else f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"{args.model} width {args.width} at {args.size} px, global batch {args.batch}, {len(devices)} replicas on {kind}")
    for (name, synchronized), values in times.items():
        print(f"{name:10s} sync {'on ' if synchronized else 'off'}: {statistics.median(values) * 1000:8.1f} ms/step")
    for name in strategies:
        ratio = statistics.median(times[(name, True)]) / statistics.median(times[(name, False)])
        print(f"{name}: sync/local step time {ratio:.2f}x")


if __name__ == "__main__":
    main()
