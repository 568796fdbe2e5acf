"""ImageNet as TFRecord shards, in the layout of tensorflow/tpu's imagenet_to_gcs.py.

A folder (local, gs:// or ram://) of `train-00000-of-01024` ... and
`validation-00000-of-00128` ..., each record a tf.train.Example holding
`image/encoded` (the image file's bytes), `image/class/label` (1..N) and
`image/class/synset` (the class's name), plus format, filename and size.

`shard_source` reads them as a Source of encoded bytes, so the pipeline
decodes and crops them exactly as it does the same image files. It reads
every shard once to count the records and find the classes (label l is class
l - 1, named by its synset) and to find corrupt or truncated shards, which
are named in a warning and skipped. Reads interleave many shards in a fixed
order, so a seed still gives the same batches; with several input
pipelines each reads its own shards.

    python -m efficientnet_tf.data.shards FOLDER OUT_DIR [--train_shards 1024] [--validation_shards 128]

writes an image folder (one subfolder per class) in that layout.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from efficientnet_tf.data.badfiles import BadFileLog, read_image_file
from efficientnet_tf.data.sources import Source, Split, folder_source
from efficientnet_tf.errors import one_line
from efficientnet_tf.files import atomic_write

TRAIN, VALIDATION = "train", "validation"
ENCODED, LABEL, SYNSET = "image/encoded", "image/class/label", "image/class/synset"
READ_BUFFER = 8 << 20  # bytes read ahead per open shard, as the official reader
CYCLE = 16  # shards read at once
RECORD_OVERHEAD = 16  # bytes a TFRecord adds to each record: length, its CRC, the data's CRC
_FORMATS = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"RIFF", "WEBP"))


def _records(files: Sequence[str]) -> tf.data.Dataset:
    """The records of `files`, CYCLE shards at a time in parallel, in an order the file list fixes."""
    return tf.data.Dataset.from_tensor_slices(list(files)).interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=READ_BUFFER),
        cycle_length=min(CYCLE, len(files)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )  # fmt: skip


def _examples(files: Sequence[str]) -> tf.data.Dataset:
    """(encoded image, class) pairs of `files`: the class is the label less one."""
    spec = {ENCODED: tf.io.FixedLenFeature([], tf.string), LABEL: tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        return example[ENCODED], tf.cast(example[LABEL] - 1, tf.int32)

    return _records(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _pipeline_examples(files: list[str], counts: list[int], pad: bool):
    """`make_shard(count, index)`: input pipeline `index` of `count` reads every count-th shard.

    With fewer shards than pipelines each pipeline reads all of them and keeps
    every count-th record. With `pad` (training), a pipeline whose shards hold
    fewer records than its fair share repeats its first records up to it, so
    every pipeline has the steps of an epoch (the trainer takes as many from each).
    """

    def make_shard(count: int, index: int) -> tf.data.Dataset:
        if len(files) < count:
            return _examples(files).shard(count, index)
        ds = _examples(files[index::count])
        fair = sum(counts) // count
        return ds.repeat().take(fair) if pad and sum(counts[index::count]) < fair else ds

    return make_shard


def _list(data_dir: str, split: str) -> list[str]:
    pattern = os.path.join(data_dir, f"{split}-*")
    files = sorted(f for f in tf.io.gfile.glob(pattern) if not os.path.basename(f).startswith("."))
    if not files:
        raise ValueError(
            f"No TFRecord shards match {pattern!r}; pass --data_dir=<folder with {split}-00000-of-NNNNN ...> "
            "(write one with `python -m efficientnet_tf.data.shards IMAGE_FOLDER OUT_DIR`)."
        )
    return files


def _check_features(path: str) -> None:
    """The first record of `path` has the features the pipeline reads, else one line naming the missing one."""
    for record in tf.data.TFRecordDataset(path).take(1).as_numpy_iterator():
        try:
            features = tf.train.Example.FromString(record).features.feature
        except Exception:  # protobuf's DecodeError
            raise ValueError(f"Shard {path!r} does not hold tf.train.Example records; write it with "
                             "`python -m efficientnet_tf.data.shards`.") from None  # fmt: skip
        for name in (ENCODED, LABEL):
            if name not in features:
                raise ValueError(
                    f"Shard {path!r} has no feature {name!r} (it has {', '.join(sorted(features)) or 'none'}); "
                    f"the shards need {ENCODED!r} (image bytes) and {LABEL!r} (1..N), as imagenet_to_gcs.py writes."
                )


def _scan(files: list[str], bad: BadFileLog) -> tuple[list[str], list[int], dict[int, set[bytes]]]:
    """(readable shards, their record counts, label -> its synsets), reading every shard once in parallel.

    A shard is readable when its records add up to its size: a truncated or
    corrupt one stops early and is skipped (named in `bad`'s warning).
    """
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        sizes = list(pool.map(lambda f: tf.io.gfile.stat(f).length, files))
    spec = {LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=0),
            SYNSET: tf.io.FixedLenFeature([], tf.string, default_value="")}  # fmt: skip

    def read(index, path):
        records = tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER).ignore_errors()
        return records.map(lambda r: (index, r))

    def parse(index, records):
        example = tf.io.parse_example(records, spec)
        return index, tf.cast(tf.strings.length(records), tf.int64) + RECORD_OVERHEAD, example[LABEL], example[SYNSET]

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(files)), files))
    ds = ds.interleave(read, cycle_length=CYCLE, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.batch(1024).map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
    counts, read_bytes = np.zeros(len(files), np.int64), np.zeros(len(files), np.int64)
    labels: dict[int, set[bytes]] = {}
    try:
        for index, length, label, synset in ds.as_numpy_iterator():
            np.add.at(counts, index, 1)
            np.add.at(read_bytes, index, length)
            for y, s in set(zip(label.tolist(), synset.tolist())):
                labels.setdefault(y, set()).add(s)
    except tf.errors.InvalidArgumentError:
        raise ValueError(f"Shards {files[0]!r} ... do not hold tf.train.Example records with an integer "
                         f"{LABEL!r}; write them with `python -m efficientnet_tf.data.shards`.") from None  # fmt: skip
    broken = [f for f, size, got in zip(files, sizes, read_bytes) if got != size]
    bad.add(broken, "that are corrupt or truncated (rewrite them)")
    good = [i for i, f in enumerate(files) if f not in broken]
    return [files[i] for i in good], [int(counts[i]) for i in good], labels


def shard_source(data_dir: str) -> Source:
    """The train-* and validation-* shards under `data_dir` (local, gs:// or ram://) as a Source of encoded images."""
    if not isinstance(data_dir, (str, os.PathLike)) or not os.fspath(data_dir):
        raise ValueError("The tfrecord dataset needs --data_dir=<folder with train-* and validation-* shards>.")
    data_dir = os.fspath(data_dir)
    bad = BadFileLog(f"Shards under {data_dir!r}", noun="shard")
    splits, labels = [], {}
    for split in (TRAIN, VALIDATION):
        files, counts, found = _scan(_list(data_dir, split), bad)
        if not files:
            raise ValueError(f"Every {split}-* shard under {data_dir!r} is corrupt or truncated; rewrite them.")
        _check_features(files[0])
        for y, synsets in found.items():
            labels.setdefault(y, set()).update(synsets)
        make_shard = _pipeline_examples(files, counts, pad=split == TRAIN)
        splits.append(Split(lambda f=files: _examples(f), "encoded", sum(counts), scanned=bad, make_shard=make_shard))
    if min(labels) < 1:
        raise ValueError(f"Shards under {data_dir!r} hold label {min(labels)}; the layout numbers classes 1..N.")
    mixed = next(((y, s) for y, s in labels.items() if len(s - {b""}) > 1), None)
    if mixed:
        raise ValueError(f"Label {mixed[0]} has several synsets ({b', '.join(sorted(mixed[1])).decode()}) "
                         f"under {data_dir!r}; each label needs one.")  # fmt: skip
    # Classes 0..N-1 for labels 1..N, N the largest label; a label no record holds is named by its number.
    names = [max(labels.get(y, {b""})).decode() or str(y) for y in range(1, max(labels) + 1)]
    return Source(os.path.basename(os.path.normpath(data_dir)) or "tfrecord", splits[0], splits[1], names)


def _example(path: str, label: int, synset: str, filename: str) -> bytes:
    """One record: the file's bytes as the folder pipeline reads them (palette BMPs as PNG), label and size."""
    data = read_image_file(tf.constant(path))
    encoded = data.numpy()
    fmt = next((name for head, name in _FORMATS if encoded.startswith(head)), "")
    if fmt == "JPEG":
        shape = tf.io.extract_jpeg_shape(data)
    else:
        shape = tf.shape(tf.io.decode_image(data, 3, expand_animations=False))
    height, width = (int(v) for v in shape[:2])
    as_bytes = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))  # noqa: E731
    as_int = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))  # noqa: E731
    feature = {
        ENCODED: as_bytes(encoded), LABEL: as_int(label), SYNSET: as_bytes(synset.encode()),
        "image/format": as_bytes(fmt.encode()), "image/filename": as_bytes(filename.encode()),
        "image/height": as_int(height), "image/width": as_int(width), "image/channels": as_int(3),
        "image/colorspace": as_bytes(b"RGB"),
    }  # fmt: skip
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shards(
    folder: str,
    out_dir: str,
    *,
    train_shards: int = 1024,
    validation_shards: int = 128,
    eval_dir: Optional[str] = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, int]:
    """Write `folder` (one subfolder per class) as shards; returns the records per split.

    The splits are folder_source's (`eval_dir`, else a held-out fraction).
    Training images are shuffled by `seed` before they are dealt out, so every
    shard mixes the classes; each shard holds a contiguous slice, and no more
    shards are written than there are images. Each shard file is written
    atomically. The label of class folder i (sorted) is i + 1, its synset the folder name.
    """
    if min(train_shards, validation_shards) < 1:
        raise ValueError(f"Shard counts must be at least 1, got {train_shards} and {validation_shards}.")
    source = folder_source(folder, eval_dir, validation_fraction=validation_fraction, seed=seed)
    tf.io.gfile.makedirs(out_dir)
    written = {}
    for split, split_of, root, shards in ((TRAIN, source.train, folder, train_shards),
                                          (VALIDATION, source.eval, eval_dir or folder, validation_shards)):  # fmt: skip
        pairs = [(path.decode(), int(y)) for path, y in split_of.make().as_numpy_iterator()]
        if split == TRAIN:
            pairs = [pairs[i] for i in np.random.default_rng(seed).permutation(len(pairs))]
        shards = min(shards, len(pairs))
        names = [_name(out_dir, split, i, shards) for i in range(shards)]
        stale = sorted(set(tf.io.gfile.glob(os.path.join(out_dir, f"{split}-*"))) - set(names))
        if stale:
            raise ValueError(f"{out_dir!r} already holds other {split} shards ({stale[0]!r} ...); pass an empty OUT_DIR.")
        bounds = np.linspace(0, len(pairs), shards + 1).astype(int)

        def write(i, pairs=pairs, bounds=bounds, names=names, root=root):
            def fill(tmp):
                with tf.io.TFRecordWriter(tmp) as writer:
                    for path, y in pairs[bounds[i] : bounds[i + 1]]:
                        writer.write(_example(path, y + 1, source.class_names[y], os.path.relpath(path, root)))

            atomic_write(names[i], fill)

        with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(write, range(shards)))
        written[split] = len(pairs)
    return written


def _name(out_dir: str, split: str, index: int, shards: int) -> str:
    return os.path.join(out_dir, f"{split}-{index:05d}-of-{shards:05d}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m efficientnet_tf.data.shards", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="image folder with one subfolder per class")
    parser.add_argument("out_dir", help="where the train-* and validation-* shards go")
    parser.add_argument("--train_shards", type=int, default=1024)
    parser.add_argument("--validation_shards", type=int, default=128)
    parser.add_argument("--eval_dir", help="held-out image folder (default: --validation_fraction of FOLDER)")
    parser.add_argument("--validation_fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0, help="picks the held-out images and the training order")
    args = parser.parse_args(argv)
    try:
        written = write_shards(
            args.folder, args.out_dir, train_shards=args.train_shards, validation_shards=args.validation_shards,
            eval_dir=args.eval_dir, validation_fraction=args.validation_fraction, seed=args.seed,
        )  # fmt: skip
    except (ValueError, OSError) as error:
        print(f"shards: error: {one_line(error)}", file=sys.stderr)
        return 2
    print(f"wrote {written[TRAIN]} training and {written[VALIDATION]} validation images to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
