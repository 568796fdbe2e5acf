"""Progressive learning versus fixed-size training: time to the same accuracy.

Trains the same model for the same epochs on the same built-in data twice
in one run, through train.py's own code (`trainer.run`): once with the
recipe's progressive schedule and once at the final size throughout. For
each it prints the training time (validation excluded) at which EMA
validation top-1 first reaches the fixed-size run's final top-1, the
speed-up, and both final accuracies (target: >= 2x, no accuracy lost; the
V2 paper reports 2.2x on B4).

    PYTHONPATH=. python benchmarks/bench_progressive.py [--model efficientnetv2-b0] [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

import configs
from efficientnet_tf.training import trainer
from efficientnet_tf.training.config import parse_overrides
from efficientnet_tf.training.hardware import cpu_has_bf16


def time_to(history: list[dict], target: float) -> float:
    """Training seconds until val_top1 first reaches `target` (inf if never)."""
    return next((logs["train_seconds"] for logs in history if logs["val_top1"] >= target - 1e-9), float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnetv2-b0")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for both runs, e.g. data.synthetic_train=2000")
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    overrides["train.epochs"] = str(args.epochs)
    progressive = configs.recipe(args.model, args.dataset, overrides=overrides)
    fixed = configs.recipe(args.model, args.dataset, overrides={**overrides, "progressive.stages": "1"})
    print(f"{args.model} on {args.dataset}, {args.epochs} epochs, CPU {platform.processor() or platform.machine()}, "
          f"AVX512_BF16/AMX: {cpu_has_bf16()}, {os.cpu_count()} cores")  # fmt: skip
    results = {}
    for name, config in (("fixed", fixed), ("progressive", progressive)):
        with tempfile.TemporaryDirectory() as model_dir:
            results[name] = trainer.run(config, model_dir, verbose=0)
        print(results[name]["summary"])
    target = results["fixed"]["history"][-1]["val_top1"]
    print(f"\ntarget: the fixed-size run's final val top-1 {target:.4f}")
    print(f"{'run':12s} {'final top-1':>11s} {'train s':>8s} {'s to target':>12s}  sizes by epoch")
    times = {}
    for name, result in results.items():
        history = result["history"]
        times[name] = time_to(history, target)
        sizes = " ".join(str(int(logs["image_size"])) for logs in history)
        print(f"{name:12s} {history[-1]['val_top1']:11.4f} {history[-1]['train_seconds']:8.0f} {times[name]:12.0f}  {sizes}")
    print(f"speed-up to the fixed run's accuracy: {times['fixed'] / times['progressive']:.2f}x; "
          f"whole-run training time ratio: {results['fixed']['history'][-1]['train_seconds'] / results['progressive']['history'][-1]['train_seconds']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
