"""GPU training throughput: ours against keras.applications, bf16 and fp16, with and without XLA, and the host input cost.

One command on a GPU machine, about 8 minutes on an H100:

    PYTHONPATH=. python benchmarks/bench_gpu.py          # efficientnetv2-s 300 px batch 128, efficientnet-b0 224 px batch 256
    PYTHONPATH=. python benchmarks/bench_gpu.py --smoke  # tiny sizes, efficientnet-b0 fp16 without XLA: checks it on a CPU

For each model, precision (mixed_bfloat16, mixed_float16) and XLA setting
(`model.compile(jit_compile=...)`), ours and the keras.applications model are
built the same way (bench_model.py's `build_pair`: weights=None, 1000 classes,
preprocessing inside, SGD with momentum, sparse cross-entropy), one at a time,
and timed on a fixed batch already on the device: the first step (trace and
compile), then about `--seconds` of steps with one sync at the end. Peak
memory is the allocator's peak over the case (`get_memory_info('GPU:0')`,
reset per case; n/a on a CPU). The input pipeline (make_datasets: JPEG
decode, crop, RandAugment 2 ops at magnitude 15, 300 px) is timed on the host
alone, giving images/s per core and the cores needed to feed the measured GPU
rate. Cases run in order of interest; none starts after `--budget_s`, so a
slow compile leaves the last ones "not run" instead of overrunning.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import shutil
import tempfile
import time
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the folder pipeline's end-of-pass marker logs a NOT_FOUND warning per pass

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_model import CLASSES  # noqa: E402
from bench_model import MODELS as KERAS_MODELS  # noqa: E402  (our name -> size, keras.applications constructor, options)
from PIL import Image  # noqa: E402

import efficientnet_tf  # noqa: E402
from efficientnet_tf.data import folder_source, make_datasets  # noqa: E402
from efficientnet_tf.data.synthetic import render_split  # noqa: E402
from efficientnet_tf.training.hardware import describe_cpu  # noqa: E402

# Model -> (image size, batch) on the GPU: the V2-S size of its ImageNet recipe's 300-px stage; b0 at its own.
SIZES = {"efficientnetv2-s": (300, 128), "efficientnet-b0": (224, 256)}
PRECISIONS = ("mixed_bfloat16", "mixed_float16")
# (model, precision, XLA) in order of interest: the V2-S target case first.
CASES = [(model, precision, xla) for precision in PRECISIONS for model in SIZES for xla in (True, False)]
# On a CPU, XLA compiles a train step for minutes (efficientnet-b0 fp16: 378 s on a 2-core AVX2 machine),
# and every case runs the same code: the smoke run keeps one.
SMOKE_CASES = [("efficientnet-b0", "mixed_float16", False)]
SMOKE_SIZE, SMOKE_BATCH = 32, 2
PIPELINE_SOURCE_PX, PIPELINE_SIZE, PIPELINE_BATCH, MAGNITUDE = 384, 300, 32, 15.0
GPUS = tf.config.list_physical_devices("GPU")
DEVICE = "GPU:0" if GPUS else "CPU:0"


def build(name: str, implementation: str, size: int, jit_compile: bool) -> keras.Model:
    """Ours or keras.applications' model under the current policy, compiled as bench_model.build_pair does."""
    shape = (size, size, 3)
    if implementation == "ours":
        model = efficientnet_tf.get_model(name, input_shape=shape, num_classes=CLASSES)
    else:
        _, keras_fn, options = KERAS_MODELS[name]
        model = keras_fn(weights=None, input_shape=shape, classes=CLASSES, **options)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy(),
                  jit_compile=jit_compile)  # fmt: skip
    return model


def measure(model: keras.Model, batch: int, size: int, seconds: float) -> tuple[float, float]:
    """Seconds of the first train step (trace, compile), and training images/s over about `seconds` of steps."""
    rng = np.random.default_rng(0)
    with tf.device(DEVICE):
        images = tf.identity(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
        labels = tf.identity(rng.integers(0, CLASSES, batch))
    start = time.perf_counter()
    model.train_on_batch(images, labels)  # builds the optimizer and the train function
    first = time.perf_counter() - start

    def steps(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            logs = model.train_function([(images, labels, None)])  # train_on_batch's structure (no retrace), no per-step sync
        float(logs["loss"])
        return time.perf_counter() - start

    per_step = steps(3) / 3
    count = max(3, round(seconds / per_step))
    return first, batch * count / steps(count)


def peak_gib() -> Optional[float]:
    return tf.config.experimental.get_memory_info(DEVICE)["peak"] / 2**30 if GPUS else None


def run_case(name: str, implementation: str, precision: str, xla: bool, size: int, batch: int, seconds: float) -> dict:
    keras.mixed_precision.set_global_policy(precision)
    keras.backend.clear_session()
    gc.collect()
    if GPUS:
        tf.config.experimental.reset_memory_stats(DEVICE)
    first, rate = measure(build(name, implementation, size, xla), batch, size, seconds)
    return {"rate": rate, "first": first, "peak": peak_gib()}


def pipeline_rate(images: int, source_px: int, size: int, batch: int, seconds: float) -> float:
    """Training images/s of make_datasets on JPEG files, RandAugment at magnitude 15, on all host cores."""
    pixels, labels = render_split(images, 10, source_px, seed=0, stream=0)
    folder = tempfile.mkdtemp(prefix="bench_gpu_jpeg_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # not sooner: prefetch threads outlive the iterator
    for i, (image, label) in enumerate(zip(pixels, labels)):
        os.makedirs(os.path.join(folder, str(label)), exist_ok=True)
        Image.fromarray(image).save(os.path.join(folder, str(label), f"{i}.jpg"), quality=90)
    source = folder_source(folder, validation_fraction=0.2)  # a held-out split is required; 3+ images per class give one
    train, _, _ = make_datasets(source, family="efficientnetv2", image_size=size, batch_size=batch, randaug_magnitude=MAGNITUDE,
                                seed=0)  # fmt: skip
    batches = iter(train.repeat())
    for _ in range(3):
        next(batches)
    start, seen = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        seen += int(next(batches)[0].shape[0])
    return seen / (time.perf_counter() - start)


def environment() -> str:
    if GPUS:
        details = tf.config.experimental.get_device_details(GPUS[0])
        device = f"{len(GPUS)} GPU(s), {details.get('device_name')} (compute capability {details.get('compute_capability')})"
    else:
        device = "no GPU"
    return f"TensorFlow {tf.__version__}, Keras {keras.__version__}; {device}; CPU {describe_cpu()}"


def fmt(value: Optional[float], spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_SIZE} px, batch {SMOKE_BATCH}, one case: the script end to end on a CPU")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=None, help="timed steps per case (default 4, smoke 0.5)")
    parser.add_argument("--budget_s", type=float, default=420, help="no case starts after this many seconds")
    args = parser.parse_args()
    seconds = args.seconds or (0.5 if args.smoke else 4.0)
    cases = SMOKE_CASES if args.smoke else CASES
    start = time.perf_counter()
    print(environment(), flush=True)

    if args.smoke:
        pipeline = dict(images=30, source_px=64, size=48, batch=4)
    else:
        pipeline = dict(images=128, source_px=PIPELINE_SOURCE_PX, size=PIPELINE_SIZE, batch=PIPELINE_BATCH)
    host_rate = pipeline_rate(**pipeline, seconds=seconds)
    cores = os.cpu_count() or 1
    print(f"input pipeline: {host_rate:.0f} img/s on {cores} cores, {host_rate / cores:.0f} img/s per core "
          f"({pipeline['source_px']}-px JPEGs -> {pipeline['size']} px, RandAugment 2 ops m={MAGNITUDE:g}, "
          f"batch {pipeline['batch']})", flush=True)  # fmt: skip

    header = ("| model | px | batch | precision | XLA | ours img/s | keras img/s | ours/keras | ours peak GiB "
              "| keras peak GiB | ours 1st step s | keras 1st step s |")  # fmt: skip
    rows, results = [header, "|" + "---|" * 12], {}
    for name, precision, xla in cases:
        size, batch = (SMOKE_SIZE, SMOKE_BATCH) if args.smoke else SIZES[name]
        label = f"| {name} | {size} | {batch} | {precision} | {'on' if xla else 'off'} |"
        if time.perf_counter() - start > args.budget_s:
            rows.append(f"{label} not run: past --budget_s {args.budget_s:g} |")
            continue
        ours, theirs = (run_case(name, side, precision, xla, size, batch, seconds) for side in ("ours", "keras"))
        results[name, precision, xla] = ours["rate"], ours["rate"] / theirs["rate"]
        rows.append(f"{label} {ours['rate']:.0f} | {theirs['rate']:.0f} | {ours['rate'] / theirs['rate']:.2f} | "
                    f"{fmt(ours['peak'], '.2f')} | {fmt(theirs['peak'], '.2f')} | {ours['first']:.1f} | "
                    f"{theirs['first']:.1f} |")  # fmt: skip
        print(rows[-1], flush=True)
    keras.mixed_precision.set_global_policy("float32")

    print("\n" + environment() + "\n" + "\n".join(rows))
    if results:
        v2s = max((rate for (name, _, _), (rate, _) in results.items() if name == "efficientnetv2-s"), default=None)
        feed = v2s or max(rate for rate, _ in results.values())
        print(f"\nours/keras: {min(r for _, r in results.values()):.2f}x to {max(r for _, r in results.values()):.2f}x "
              f"(target >= 1.15x); fastest efficientnetv2-s: {fmt(v2s, '.0f')} img/s (target >= 2000 on an H100); "
              f"feeding {feed:.0f} img/s takes about {feed / (host_rate / cores):.1f} host cores at "
              f"{pipeline['size']} px")  # fmt: skip
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
