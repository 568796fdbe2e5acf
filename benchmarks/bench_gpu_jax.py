"""GPU throughput on the JAX backend: ours against keras.applications, training and inference, bfloat16 and float32.

Needs only JAX (with CUDA for a GPU), Keras and what Keras imports; no
TensorFlow. One command, about 6 minutes on an H100 (README: "Benchmarks"
gives the device call with the wheels to carry):

    KERAS_BACKEND=jax PYTHONPATH=. python benchmarks/bench_gpu_jax.py
    KERAS_BACKEND=jax PYTHONPATH=. python benchmarks/bench_gpu_jax.py --smoke   # two tiny cases on the CPU

For efficientnetv2-s at 300 px and efficientnet-b0 at 224 px, under the
mixed_bfloat16 and float32 policies, ours and the keras.applications model
(weights=None, 1000 classes, preprocessing inside) are built one after the
other and timed on a fixed batch already on the device, with the Keras JAX
idiom: one `jax.jit` function of the model's `stateless_call` (inference,
training=False) or of its loss gradient and an SGD-with-momentum
`stateless_apply` (training, sparse cross-entropy), state passed in and out.
The first call (trace and XLA compile) is reported apart; then about
`--seconds` of calls with one sync at the end. A batch that does not fit is
halved until it does (the table gives the batch run). Cases run in order of
interest; none starts after `--budget_s`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.src.applications import efficientnet as keras_v1  # noqa: E402
from keras.src.applications import efficientnet_v2 as keras_v2  # noqa: E402

import efficientnet_tf  # noqa: E402

# Our name -> (image size, train batch, inference batch, keras.applications builder, its name, its options).
MODELS = {
    "efficientnetv2-s": (300, 128, 256, keras_v2.EfficientNetV2, "efficientnetv2-s", {"bn_momentum": 0.9}),
    "efficientnet-b0": (224, 256, 512, keras_v1.EfficientNet, "efficientnetb0", {}),
}
# keras.applications' default_size per model (its builders need one).
KERAS_DEFAULT_SIZE = {"efficientnetv2-s": 384, "efficientnet-b0": 224}
POLICIES = ("mixed_bfloat16", "float32")
MODES = ("train", "infer")
CASES = [(model, policy, mode) for policy in POLICIES for model in MODELS for mode in MODES]
CLASSES = 1000
# --smoke: b0 at a quarter width and a fifth depth, 32 px, batch 2, on whatever JAX runs on; a training and an
# inference case, each policy once (a CPU compiles each train step for tens of seconds).
SMOKE_CASES = [("efficientnet-b0", "mixed_bfloat16", "train"), ("efficientnet-b0", "float32", "infer")]
SMOKE_SCALE, SMOKE_SIZE, SMOKE_BATCH = (0.25, 0.2), 32, 2


def build(name: str, impl: str, size: int, scale: tuple[float, float]) -> keras.Model:
    """Ours or keras.applications' `name` with width and depth multiplied by `scale`, 1000 classes, preprocessing in."""
    width, depth = scale
    spec = efficientnet_tf.get_spec(name)
    shape = (size, size, 3)
    if impl == "ours":
        return efficientnet_tf.get_model(name, input_shape=shape, width=spec.width * width, depth=spec.depth * depth)
    _, _, _, builder, keras_name, options = MODELS[name]
    return builder(
        spec.width * width, spec.depth * depth, KERAS_DEFAULT_SIZE[name], name=keras_name, weights=None,
        input_shape=shape, classes=CLASSES, **options,
    )


def train_step(model: keras.Model):
    """(step, state): one jitted SGD step on (x, y), and the state it takes and returns."""
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def loss(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, logits), non_trainable

    gradient = jax.value_and_grad(loss, has_aux=True)

    def step(state, x, y):
        trainable, non_trainable, slots = state
        (value, non_trainable), grads = gradient(trainable, non_trainable, x, y)
        trainable, slots = optimizer.stateless_apply(slots, grads, trainable)
        return (trainable, non_trainable, slots), value

    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])  # fmt: skip
    return jax.jit(step, donate_argnums=0), state


def infer_step(model: keras.Model):
    def step(state, x, y):
        trainable, non_trainable = state
        return state, model.stateless_call(trainable, non_trainable, x, training=False)[0]

    return jax.jit(step), ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])


def measure(model: keras.Model, mode: str, batch: int, size: int, seconds: float) -> tuple[float, float]:
    """(compile seconds, images/s) of `mode` at `batch` on a fixed batch already on the device."""
    step, state = (train_step if mode == "train" else infer_step)(model)
    keys = jax.random.split(jax.random.key(0))
    x = jax.random.uniform(keys[0], (batch, size, size, 3), minval=0.0, maxval=255.0)
    y = jax.random.randint(keys[1], (batch,), 0, CLASSES)
    start = time.perf_counter()
    state, out = step(state, x, y)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    state, out = step(state, x, y)
    jax.block_until_ready(out)
    calls = max(2, round(seconds / (time.perf_counter() - start)))
    start = time.perf_counter()
    for _ in range(calls):
        state, out = step(state, x, y)
    jax.block_until_ready(out)
    return compile_s, calls * batch / (time.perf_counter() - start)


def _out_of_memory(error: Exception) -> bool:
    return "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower()


def run_case(name: str, policy: str, mode: str, scale, size: int, batch: int, seconds: float) -> dict:
    """Both models on one case at the largest batch up to `batch` that fits both."""
    keras.mixed_precision.set_global_policy(policy)
    while True:
        row = {"batch": batch}
        try:
            for impl in ("ours", "keras"):
                model = build(name, impl, size, scale)
                row[impl] = measure(model, mode, batch, size, seconds)
                del model
                keras.backend.clear_session()
            return row
        except Exception as error:  # XLA raises its own runtime error type
            if not _out_of_memory(error) or batch == 1:
                raise
            keras.backend.clear_session()
            batch //= 2


def describe_device() -> str:
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    return (f"JAX {jax.__version__} on {device.platform.upper()} ({kind}, {jax.device_count()} device(s)), "
            f"Keras {keras.__version__} ({keras.backend.backend()}), Python {platform.python_version()}")  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two efficientnet-b0 cases at a fraction of its size, 32 px, batch 2")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per model and case (default 4; smoke 0.2)")
    parser.add_argument("--budget_s", type=float, default=420.0, help="no case starts after this many seconds")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "jax":
        raise SystemExit(f"bench_gpu_jax.py runs on the JAX backend, not {keras.backend.backend()}; set KERAS_BACKEND=jax.")
    seconds = args.seconds if args.seconds is not None else (0.2 if args.smoke else 4.0)
    print(describe_device())
    start = time.perf_counter()
    print("| model | px | mode | batch | precision | ours img/s | keras img/s | ours/keras | compile s ours / keras |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    cases = SMOKE_CASES if args.smoke else CASES
    for name, policy, mode in cases:
        size, train_batch, infer_batch = MODELS[name][:3]
        batch = train_batch if mode == "train" else infer_batch
        scale = SMOKE_SCALE if args.smoke else (1.0, 1.0)
        if args.smoke:
            size, batch = SMOKE_SIZE, SMOKE_BATCH
        if time.perf_counter() - start > args.budget_s:
            print(f"| {name} | {size} | {mode} | {batch} | {policy} | not run (budget) | | | |")
            continue
        row = run_case(name, policy, mode, scale, size, batch, seconds)
        (ours_c, ours), (keras_c, theirs) = row["ours"], row["keras"]
        print(f"| {name} | {size} | {mode} | {row['batch']} | {policy} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f} "
              f"| {ours_c:.0f} / {keras_c:.0f} |", flush=True)  # fmt: skip
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
