"""Progressive learning versus fixed-size training: time to the same accuracy.

Trains the same model for the same epochs on the same data twice in one
run, through train.py's own code (`trainer.run`): once at the final size
throughout (`progressive.stages=1`) and once with the paper's progressive
schedule (Algorithm 1: sizes from `progressive.min_image_size` up to the
final size, dropout growing with them). It prints, for each run, every
epoch's size, training img/s, cumulative training time (validation
excluded) and EMA validation top-1; per-stage img/s against the pixel count
(a step should cost in proportion to the pixels where compute dominates);
both total training times and final top-1s; and the training time at which
each run first reaches the fixed run's final top-1 within 0.5 point (the
target: progressive there in at most 2/3 of the fixed run's training time,
i.e. >= 1.5x; the V2 paper reports 2.2x on B4).

The default data is the built-in dataset's "fine" variant (see
efficientnet_tf/data/synthetic.py): its classes differ by stripes of period
1/64 of the image side, so a half-size image cannot tell half of the label,
whereas the default "shapes" data is learnable at 40-64 px, where a larger
image buys nothing. The defaults are sized for about 30 minutes on a 2-core
AVX2 CPU:

    PYTHONPATH=. python benchmarks/bench_progressive.py
    PYTHONPATH=. python benchmarks/bench_progressive.py data.synthetic_variant=shapes --epochs=18 data.image_size=64 ...

Positional dotted overrides apply to both runs after the benchmark's own.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import configs
from efficientnet_tf.training import trainer
from efficientnet_tf.training.config import parse_overrides
from efficientnet_tf.training.hardware import describe_cpu

# The benchmark's setting (README, "Progressive learning, measured"): V2-B0's own final training size 192,
# the schedule from half of it, 4 stages as the paper. Half width and depth (38 img/s at 192 px on 2 idle AVX2
# cores): the full B0 trains 8.7 img/s there (2.5-3 under other load), so these 1,000 images x 10 epochs would
# take over 30 minutes for both runs; the full B0 fits with 500 images x 8 epochs (README).
DEFAULTS = {
    "data.image_size": 192,
    "data.eval_size": 192,
    "progressive.min_image_size": 96,
    "progressive.stages": 4,
    "data.synthetic_train": 1000,
    "data.synthetic_eval": 500,
    "model.width": 0.5,
    "model.depth": 0.5,
    "data.synthetic_variant": "fine",
}
WITHIN = 0.005  # "reaches the fixed run's final top-1": within 0.5 point


def time_to(history: list[dict], target: float) -> float:
    """Training seconds until val_top1 first reaches `target` (inf if never)."""
    return next((logs["train_seconds"] for logs in history if logs["val_top1"] >= target - 1e-9), float("inf"))


def stage_rates(history: list[dict]) -> list[tuple[int, int, float]]:
    """(size, epochs, img/s) per stage in order: the median epoch's rate, leaving out the run's first epoch
    (which traces the train step) where its stage has others."""
    rates: dict[int, list[float]] = {}
    for logs in history:
        rates.setdefault(int(logs["image_size"]), []).append(logs["images_per_sec"])
    first = int(history[0]["image_size"])
    if len(rates[first]) > 1:
        rates[first] = rates[first][1:]
    return [(size, len(r), float(np.median(r))) for size, r in rates.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnetv2-b0")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for both runs, e.g. data.synthetic_train=2000")
    args = parser.parse_args()
    overrides = {**(DEFAULTS if args.dataset == "synthetic" else {}), **parse_overrides(args.overrides)}
    overrides["train.epochs"] = str(args.epochs)
    progressive = configs.recipe(args.model, args.dataset, overrides=overrides)
    fixed = configs.recipe(args.model, args.dataset, overrides={**overrides, "progressive.stages": "1"})
    data = fixed.data
    m, p = progressive.model, progressive.progressive
    scale = f" (width {m.width or 1:g}, depth {m.depth or 1:g})" if m.width or m.depth else ""
    what = f"{data.dataset} variant {data.synthetic_variant!r}, {data.synthetic_train} train / {data.synthetic_eval} eval images" if data.dataset == "synthetic" else data.dataset  # fmt: skip
    print(f"{m.name}{scale} on {what}; {args.epochs} epochs, batch {data.batch_size}, final size {data.image_size or 'model'} px, "
          f"eval {data.eval_size or 'model'} px; progressive: {p.stages} stages from {p.min_image_size} px ({p.style})\n"
          f"CPU: {describe_cpu()}; TF {tf.__version__}, Keras {keras.__version__}")  # fmt: skip
    results, wall = {}, {}
    for name, config in (("fixed", fixed), ("progressive", progressive)):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as model_dir:
            results[name] = trainer.run(config, model_dir, verbose=0)
        wall[name] = time.perf_counter() - start
        print(results[name]["summary"], flush=True)
        print(f"  {'epoch':>5s} {'size':>5s} {'img/s':>7s} {'train s':>8s} {'val top-1':>9s}")
        for i, logs in enumerate(results[name]["history"]):
            print(f"  {i + 1:5d} {int(logs['image_size']):5d} {logs['images_per_sec']:7.1f} {logs['train_seconds']:8.0f} "
                  f"{logs['val_top1']:9.4f}")  # fmt: skip

    final = {name: r["history"][-1] for name, r in results.items()}
    full = int(final["fixed"]["image_size"])
    fixed_rate = stage_rates(results["fixed"]["history"])[0][2]
    print("\nPer-stage training speed (median epoch, the first epoch's tracing left out; the pixel ratio is the speed-up "
          "a step's cost in proportion to its pixels would give):")
    print(f"  {'run':12s} {'size':>5s} {'epochs':>6s} {'img/s':>7s} {'vs fixed':>8s} {'pixel ratio':>11s}")
    for name, result in results.items():
        for size, epochs, rate in stage_rates(result["history"]):
            print(f"  {name:12s} {size:5d} {epochs:6d} {rate:7.1f} {rate / fixed_rate:7.2f}x {(full / size) ** 2:10.2f}x")

    target = final["fixed"]["val_top1"] - WITHIN
    total = final["fixed"]["train_seconds"]
    print(f"\ntarget: the fixed run's final val top-1 {final['fixed']['val_top1']:.4f} less 0.5 point = {target:.4f}")
    print(f"  {'run':12s} {'final top-1':>11s} {'train s':>8s} {'wall s':>7s} {'s to target':>12s} {'fixed train s / s to target':>28s}")
    times = {}
    for name, result in results.items():
        times[name] = time_to(result["history"], target)
        reached = f"{times[name]:12.0f} {total / times[name]:27.2f}x" if times[name] < float("inf") else f"{'never':>12s} {'-':>28s}"
        print(f"  {name:12s} {final[name]['val_top1']:11.4f} {final[name]['train_seconds']:8.0f} {wall[name]:7.0f} {reached}")
    speedup = total / times["progressive"]
    when = (f"reaches the fixed run's final top-1 (within 0.5 point) at {times['progressive']:.0f} s of training, {speedup:.2f}x "
            f"faster than" if speedup else "never reaches the fixed run's final top-1 (within 0.5 point), against")  # fmt: skip
    print(f"progressive {when} the fixed run's {total:.0f} s (target >= 1.5x: {'met' if speedup >= 1.5 else 'NOT met'}); "
          f"whole-run training time ratio {total / final['progressive']['train_seconds']:.2f}x; "
          f"final top-1 progressive minus fixed {100 * (final['progressive']['val_top1'] - final['fixed']['val_top1']):+.1f} points")  # fmt: skip
    budget = final["progressive"]["train_seconds"]
    same = [logs for logs in results["fixed"]["history"] if logs["train_seconds"] <= budget * 1.05]
    if same:
        print(f"at about the same training time: the fixed run's epoch {len(same)} ({same[-1]['train_seconds']:.0f} s) had top-1 "
              f"{same[-1]['val_top1']:.4f}, the progressive run's end ({budget:.0f} s) {final['progressive']['val_top1']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
