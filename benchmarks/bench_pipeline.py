"""Training-pipeline throughput: ours against keras-cv RandAugment, and against google/automl's ImageNet input.

Table "keras-cv": both pipelines read the same examples and share the
crop/resize/flip and Mixup; they differ only in RandAugment (ours: official
ops, magnitude 15, 2 ops per image, batched; keras-cv:
`RandAugment(augmentations_per_image=2, magnitude=1.0)` (its maximum, since
it has no extrapolation) on each image). Sources: (a) decoded images in
memory, (b) JPEG files on disk.

Table "shards": the same JPEGs written as ImageNet-layout TFRecord shards
(`efficientnet_tf.data.shards`), read by our pipeline, against our pipeline
on the JPEG files, and against google/automl's `efficientnetv2/datasets.py`
ImageNetInput (RandAugment 2 ops at 15, Mixup 0.2: the same augmentation) on
the same shards. automl's code is a reference, not a dependency: pass a
checkout's folder with --automl_dir (or AUTOML_DIR) and it is imported at
run time; without it that column is left out. Its autoaugment.py imports
tensorflow_addons, which has no build for TF >= 2.16; a stand-in module
serves the three tfa.image calls it makes from TF's own projective transform.

    PYTHONPATH=. python benchmarks/bench_pipeline.py [--tables keras-cv shards] [--batches 20] [--rounds 3] \
        [--sizes 224 300] [--automl_dir /tmp/automl]

Each side's best of the alternating rounds is printed as images per second
(wall clock) and as CPU milliseconds per image (all of the process's threads);
on a machine shared with other work the CPU ratio is the steadier one.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time
import types

import tensorflow as tf
from PIL import Image

from efficientnet_tf.data import AugmentState, array_source, folder_source, make_train_dataset, mixing, preprocessing
from efficientnet_tf.data.badfiles import decode_files
from efficientnet_tf.data.shards import shard_source, write_shards
from efficientnet_tf.data.synthetic import render_split
from efficientnet_tf.training.hardware import describe_cpu

FAMILY = "efficientnetv2"
MAGNITUDE = 15.0
MIXUP = 0.2


def keras_cv_pipeline(source, batch_size: int, image_size: int) -> tf.data.Dataset:
    """Same crop/resize/flip/Mixup as ours, with keras-cv RandAugment per image."""
    import keras_cv

    fam = preprocessing.get_family(FAMILY)
    size = tf.constant(image_size)
    layer = keras_cv.layers.RandAugment(value_range=(0, 255), augmentations_per_image=2, magnitude=1.0)
    split = source.train

    def window(shape):
        return preprocessing.random_crop_window(shape, fam, size)  # unkeyed: a fresh draw per call

    # Carries an (unused) key, as decode_files' elements do.
    ds = split.make().shuffle(split.size).map(lambda x, y: (x, y, tf.zeros([2], tf.int64)))
    if split.kind == "path":
        ds = decode_files(ds, lambda data, key: preprocessing.decode_window(data, window, fam.jpeg_window_decode), split.bad_files)
    else:
        ds = ds.map(lambda x, y, k: (preprocessing.crop(x, window(tf.shape(x))), y, k), num_parallel_calls=tf.data.AUTOTUNE)
    n = len(source.class_names)

    def per_image(image, label, key):
        image = tf.cast(preprocessing.train_finish(image, size, fam, quantize=True), tf.float32)
        return layer(image), tf.one_hot(label, n)

    ds = ds.map(per_image, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda x, y: mixing.mix_batch(x, y, tf.constant(MIXUP), tf.constant(0.0)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _projective(images, transforms):
    """tfa.image.transform's default (nearest, constant 0 fill) on one image or a batch, from TF's own op."""
    images = tf.convert_to_tensor(images)
    batch = images[None] if images.shape.rank == 3 else images
    transforms = tf.reshape(tf.cast(transforms, tf.float32), [-1, 8])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=batch, transforms=transforms, output_shape=tf.shape(batch)[1:3], fill_value=0.0,
        interpolation="NEAREST", fill_mode="CONSTANT",
    )  # fmt: skip
    return out[0] if images.shape.rank == 3 else out


def _rotate(images, angle):
    """Rotation by `angle` radians about the image centre, as the output-to-input map transform() takes."""
    h, w = (tf.cast(d, tf.float32) - 1 for d in tf.unstack(tf.shape(images)[-3:-1]))
    cos, sin = tf.cos(angle), tf.sin(angle)
    x0, y0 = (w - (cos * w - sin * h)) / 2, (h - (sin * w + cos * h)) / 2
    return _projective(images, tf.stack([cos, -sin, x0, sin, cos, y0, 0.0, 0.0]))


def _translate(images, shift):
    dx, dy = tf.unstack(tf.cast(shift, tf.float32))
    return _projective(images, tf.stack([1.0, 0.0, -dx, 0.0, 1.0, -dy, 0.0, 0.0]))


def automl_pipeline(automl_dir: str, shard_dir: str, batch_size: int, image_size: int, num_classes: int) -> tf.data.Dataset:
    """google/automl's ImageNet training input on `shard_dir`, RandAugment(2, 15) and Mixup 0.2 as ours.

    Its shuffle buffer (128k records) is cut to about our default (10k), so
    the warm-up, not the timed batches, fills it.
    """
    tfa = types.ModuleType("tensorflow_addons")
    tfa.image = types.SimpleNamespace(transform=_projective, rotate=_rotate, translate=_translate)
    sys.modules.setdefault("tensorflow_addons", tfa)
    sys.path.insert(0, os.path.join(automl_dir, "efficientnetv2"))
    import datasets  # google/automl efficientnetv2/datasets.py

    inp = datasets.ImageNetInput(
        is_training=True, data_dir=shard_dir, split="trainval", image_size=image_size, augname="randaug",
        mixup_alpha=MIXUP, ra_num_layers=2, ra_magnitude=MAGNITUDE,
    )  # fmt: skip
    inp.cfg = copy.deepcopy(inp.cfg)
    inp.cfg.num_classes = num_classes
    inp.shuffle_size_k = 10
    return inp._input_fn(batch_size, 0, 1).map(lambda features, labels: (features["image"], labels["label"]))


def rate(ds: tf.data.Dataset, batches: int, warmup: int = 3) -> tuple[float, float]:
    """(images per second, CPU milliseconds per image) over `batches` batches after a warm-up, repeating the data.

    The CPU time is this process's (all its threads): on a machine that other
    work shares it moves far less than the wall-clock rate.
    """
    it = iter(ds.repeat())
    for _ in range(warmup):
        next(it)
    start, cpu, seen = time.perf_counter(), time.process_time(), 0
    for _ in range(batches):
        seen += int(next(it)[0].shape[0])
    return seen / (time.perf_counter() - start), (time.process_time() - cpu) * 1000 / seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=512, help="distinct source images")
    parser.add_argument("--source-px", type=int, default=320, help="source image resolution")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 300])
    parser.add_argument("--tables", nargs="+", choices=["keras-cv", "shards"], default=["keras-cv", "shards"])
    parser.add_argument("--automl_dir", help="a google/automl checkout (default: AUTOML_DIR); its input is the shards table's anchor")
    args = parser.parse_args()

    images, labels = render_split(args.images, 10, args.source_px, seed=0, stream=0)
    names = [str(i) for i in range(10)]
    memory = array_source((images, labels), (images[:10], labels[:10]), names)
    folder = tempfile.mkdtemp(prefix="bench_jpeg_")
    for i, (image, label) in enumerate(zip(images, labels)):
        os.makedirs(os.path.join(folder, names[label]), exist_ok=True)
        Image.fromarray(image).save(os.path.join(folder, names[label], f"{i}.jpg"), quality=90)
    disk = folder_source(folder, validation_fraction=0.02)

    cores = os.cpu_count() or 1
    print(f"CPU: {describe_cpu()}; TF {tf.__version__}")
    print(f"cores={cores} batch={args.batch_size} batches={args.batches} source={args.source_px}px "
          f"family={FAMILY} RandAugment(2 ops, m={MAGNITUDE}) + Mixup({MIXUP})")  # fmt: skip
    if "keras-cv" in args.tables:
        print(f"{'source':<8}{'size':>6}{'ours img/s':>12}{'/core':>8}{'keras-cv img/s':>16}{'/core':>8}{'speed-up':>10}"
              f"{'ours cpu-ms/img':>17}{'keras-cv':>10}{'cpu ratio':>11}")  # fmt: skip
        for name, source in (("memory", memory), ("jpeg", disk)):
            for size in args.sizes:
                ours_ds = make_train_dataset(source, family=FAMILY, batch_size=args.batch_size,
                                             state=AugmentState(size, MAGNITUDE, MIXUP, 0.0))  # fmt: skip
                (ours, ours_cpu), (theirs, theirs_cpu) = best_of(args, ours_ds, keras_cv_pipeline(source, args.batch_size, size))
                print(f"{name:<8}{size:>6}{ours:>12.0f}{ours / cores:>8.0f}{theirs:>16.0f}{theirs / cores:>8.0f}{ours / theirs:>9.2f}x"
                      f"{ours_cpu:>17.2f}{theirs_cpu:>10.2f}{theirs_cpu / ours_cpu:>10.2f}x")  # fmt: skip
    if "shards" in args.tables:
        shard_dir = tempfile.mkdtemp(prefix="bench_shards_")
        write_shards(folder, shard_dir, train_shards=16, validation_shards=1, validation_fraction=0.02)
        shards = shard_source(shard_dir)
        automl_dir = args.automl_dir or os.environ.get("AUTOML_DIR")
        print(f"shards: {shards.train.size} images in 16 train shards; automl: {automl_dir or 'not run (no --automl_dir)'}")
        print(f"{'size':>6}{'shards img/s/core':>19}{'jpeg files':>12}{'automl':>9}{'vs files':>10}{'vs automl':>11}"
              f"{'cpu-ms/img shards':>19}{'files':>8}{'automl':>8}")  # fmt: skip
        for size in args.sizes:
            ours_ds, files_ds = (make_train_dataset(s, family=FAMILY, batch_size=args.batch_size,
                                                    state=AugmentState(size, MAGNITUDE, MIXUP, 0.0)) for s in (shards, disk))  # fmt: skip
            sides = [ours_ds, files_ds]
            if automl_dir:
                sides.append(automl_pipeline(automl_dir, shard_dir, args.batch_size, size, len(names)))
            rates = best_of(args, *sides) + ([(math.nan, math.nan)] if not automl_dir else [])
            (ours, ours_cpu), (files, files_cpu), (automl, automl_cpu) = rates
            print(f"{size:>6}{ours / cores:>19.1f}{files / cores:>12.1f}{automl / cores:>9.1f}{ours / files:>9.2f}x"
                  f"{ours / automl:>10.2f}x{ours_cpu:>19.2f}{files_cpu:>8.2f}{automl_cpu:>8.2f}")  # fmt: skip


def best_of(args, *pipelines) -> list[tuple[float, float]]:
    """Each pipeline's best (images/s, CPU ms/image) over alternating rounds, so a busy machine hurts all alike."""
    best = [(0.0, math.inf) for _ in pipelines]
    for _ in range(args.rounds):
        for i, ds in enumerate(pipelines):
            r, c = rate(ds, args.batches)
            best[i] = (max(best[i][0], r), min(best[i][1], c))
    return best


if __name__ == "__main__":
    main()
