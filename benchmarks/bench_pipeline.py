"""Training-pipeline throughput: ours against keras-cv RandAugment mapped per image.

Both pipelines read the same examples and share the crop/resize/flip and
Mixup; they differ only in RandAugment (ours: official ops, magnitude 15,
2 ops per image, batched; keras-cv: `RandAugment(augmentations_per_image=2,
magnitude=1.0)` (its maximum, since it has no extrapolation) on each image).
Sources: (a) decoded images in memory, (b) JPEG files on disk.

    PYTHONPATH=. python benchmarks/bench_pipeline.py [--batches 20] [--rounds 3] [--sizes 224 300]

Each side's best of the alternating rounds is printed as images per second
(wall clock) and as CPU milliseconds per image (all of the process's threads);
on a machine shared with other work the CPU ratio is the steadier one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import tensorflow as tf
from PIL import Image

from efficientnet_tf.data import AugmentState, array_source, folder_source, make_train_dataset, mixing, preprocessing
from efficientnet_tf.data.badfiles import decode_files
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
    print(f"{'source':<8}{'size':>6}{'ours img/s':>12}{'/core':>8}{'keras-cv img/s':>16}{'/core':>8}{'speed-up':>10}"
          f"{'ours cpu-ms/img':>17}{'keras-cv':>10}{'cpu ratio':>11}")  # fmt: skip
    for name, source in (("memory", memory), ("jpeg", disk)):
        for size in args.sizes:
            state = AugmentState(size, MAGNITUDE, MIXUP, 0.0)
            ours_ds = make_train_dataset(source, family=FAMILY, batch_size=args.batch_size, state=state)
            theirs_ds = keras_cv_pipeline(source, args.batch_size, size)
            # Alternate rounds and keep each side's best, so a busy machine hurts both alike.
            ours = theirs = 0.0
            ours_cpu = theirs_cpu = float("inf")
            for _ in range(args.rounds):
                r, c = rate(ours_ds, args.batches)
                ours, ours_cpu = max(ours, r), min(ours_cpu, c)
                r, c = rate(theirs_ds, args.batches)
                theirs, theirs_cpu = max(theirs, r), min(theirs_cpu, c)
            print(f"{name:<8}{size:>6}{ours:>12.0f}{ours / cores:>8.0f}{theirs:>16.0f}{theirs / cores:>8.0f}{ours / theirs:>9.2f}x"
                  f"{ours_cpu:>17.2f}{theirs_cpu:>10.2f}{theirs_cpu / ours_cpu:>10.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
