"""Where examples come from: image folders, TFDS, or arrays in memory.

A `Source` holds one `Split` for training and one for evaluation, plus the
class names. A split yields (payload, label) where the payload is a file path,
encoded image bytes, or a decoded uint8 image (`Split.kind`); the pipeline
decodes and crops accordingly. All checks that can fail do so here, before a
pipeline is built, with a message that says what to do.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from efficientnet_tf.data.badfiles import BadFileLog
from efficientnet_tf.files import check_filesystem, is_remote
from efficientnet_tf.validation import check_float, check_int

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# Images TensorFlow cannot decode: counted and named in a warning, never used.
UNSUPPORTED_EXTENSIONS = (".tif", ".tiff", ".heic", ".heif", ".avif", ".jp2")
# Folders that archive tools and file managers add; never classes or images.
IGNORED_FOLDERS = ("__MACOSX",)
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


@dataclasses.dataclass
class Split:
    """One split: a dataset factory, what its payloads are, and its size.

    For image files, `bad_files` collects the files that fail to decode while
    the split is read, and `scanned` the ones rejected before (not in `size`).
    `make_shard(count, index)`, where a split has one, gives input pipeline
    `index` of `count` its own part (e.g. its own files); else each pipeline
    keeps every count-th example of `make()`.
    """

    make: Callable[[], tf.data.Dataset]
    kind: str  # "path", "encoded" or "decoded"
    size: int
    bad_files: BadFileLog | None = None
    scanned: BadFileLog | None = None
    make_shard: Callable[[int, int], tf.data.Dataset] | None = None

    @property
    def usable_size(self) -> int:
        """`size` less the files found so far to fail decoding."""
        return self.size - (self.bad_files.decode_failures if self.bad_files else 0)


@dataclasses.dataclass
class Source:
    """Train and eval splits of one dataset, with its class names."""

    name: str
    train: Split
    eval: Split
    class_names: list[str]


def _is_image(path: str) -> bool:
    """A non-empty, readable file whose first bytes are a format we decode (broken links fail here)."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            head = f.read(12)
    except (OSError, tf.errors.OpError):
        return False
    return any(head.startswith(sig) for sig in _SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _class_folders(root: str) -> list[str]:
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(root))  # object stores mark folders with a "/"
    return sorted(name for name in names if not name.startswith(".") and name not in IGNORED_FOLDERS
                  and tf.io.gfile.isdir(os.path.join(root, name)))  # fmt: skip


def _walk_images(folder: str) -> tuple[list[str], list[str]]:
    """(image paths, unsupported image paths) under `folder`, following links but never a loop."""
    found, unsupported, seen = [], [], set()
    remote = is_remote(folder)
    for dirpath, dirnames, filenames in tf.io.gfile.walk(folder) if remote else os.walk(folder, followlinks=True):
        real = dirpath if remote else os.path.realpath(dirpath)
        if real in seen:  # a link back to a folder already walked
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in IGNORED_FOLDERS]
        for name in filenames:
            lower = name.lower()
            if lower.endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(dirpath, name))
            elif lower.endswith(UNSUPPORTED_EXTENSIONS):
                unsupported.append(os.path.join(dirpath, name))
    return found, unsupported


def _list_class_files(root: str, bad: BadFileLog) -> dict[str, list[str]]:
    """class name -> sorted image paths (recursive, extensions in any case)."""
    check_filesystem(root, "Image folder")
    if not tf.io.gfile.isdir(root):
        raise ValueError(f"Image folder {root!r} does not exist; pass a folder with one subfolder per class.")
    classes = _class_folders(root)
    if not classes:
        raise ValueError(f"Image folder {root!r} has no class subfolders; put each class's images in root/<class>/.")
    files, unsupported = {}, []
    for name in classes:
        found, skipped = _walk_images(os.path.join(root, name))
        unsupported += skipped
        if not found:
            raise ValueError(
                f"Class folder {os.path.join(root, name)!r} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images (convert TIFF and other formats to PNG or JPEG) or remove the folder."
            )
        files[name] = sorted(found)
    bad.add(sorted(unsupported), "as formats TensorFlow cannot decode (convert them to PNG or JPEG)")
    return files


def _screen(files: list[str], bad: BadFileLog) -> set[str]:
    """Paths that are empty, unreadable, broken links or not an image by their first bytes (checked in threads).

    Files in a bucket are not screened: one request per file would take most
    of an hour for ImageNet. A bad one is still skipped, and named, when read.
    """
    files = sorted(p for p in set(files) if not is_remote(p))
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        ok = list(pool.map(_is_image, files))
    rejected = [p for p, good in zip(files, ok) if not good]
    bad.add(rejected, "while scanning (empty, unreadable, a broken link or not an image)")
    return set(rejected)


def _usable(folder: str, files: dict[str, list[str]], rejected: set[str]) -> dict[str, list[str]]:
    """The files that passed the scan; a class left with none is an error, not an empty class."""
    usable = {c: [p for p in fs if p not in rejected] for c, fs in files.items()}
    empty = [c for c, fs in usable.items() if not fs]
    if empty:
        raise ValueError(
            f"Class folder(s) {', '.join(repr(os.path.join(folder, c)) for c in empty)} hold no readable image "
            "(every file is empty, broken or not an image); fix the files or remove the folder."
        )
    return usable


def _file_split(pairs: list[tuple[str, int]], what: str) -> Split:
    paths = [p for p, _ in pairs]
    labels = np.array([y for _, y in pairs], np.int32)
    return Split(lambda: tf.data.Dataset.from_tensor_slices((paths, labels)), "path", len(pairs), BadFileLog(what))


def folder_source(
    train_dir: str,
    eval_dir: str | None = None,
    *,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> Source:
    """Images in train_dir/<class>/..., evaluated on eval_dir or a held-out fraction.

    Without eval_dir, each class gives the same `validation_fraction` of its
    files (chosen by `seed`, so the split is the same on every run) to eval.
    """
    for what, folder in (("train_dir", train_dir), ("eval_dir", eval_dir)):
        if folder is not None and not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"{what} must be a folder path, got {folder!r}.")
    train_dir = os.fspath(train_dir)
    if eval_dir is None:
        validation_fraction = check_float(
            "validation_fraction", validation_fraction, min=0.0, max=1.0, min_open=True, max_open=True
        )
    seed = check_int("seed", seed, min=0)
    scanned = BadFileLog(f"Images under {train_dir!r}")
    train_files = _list_class_files(train_dir, scanned)
    class_names = list(train_files)
    if len(class_names) < 2:
        raise ValueError(
            f"Image folder {train_dir!r} has only the class {class_names[0]!r}; classification needs at least 2."
        )
    if eval_dir is not None:
        eval_dir = os.fspath(eval_dir)
        eval_files = _list_class_files(eval_dir, scanned)
        unknown = sorted(set(eval_files) - set(class_names))
        if unknown:
            raise ValueError(f"Eval folder {eval_dir!r} has classes {unknown} that {train_dir!r} lacks; match them.")
        rejected = _screen([p for fs in list(train_files.values()) + list(eval_files.values()) for p in fs], scanned)
        train_files, eval_files = _usable(train_dir, train_files, rejected), _usable(eval_dir, eval_files, rejected)
        train = [(p, i) for i, c in enumerate(class_names) for p in train_files[c]]
        held = [(p, class_names.index(c)) for c, fs in eval_files.items() for p in fs]
    else:
        rejected = _screen([p for fs in train_files.values() for p in fs], scanned)
        train_files = _usable(train_dir, train_files, rejected)
        rng = np.random.default_rng(seed)
        train, held = [], []
        for i, c in enumerate(class_names):
            fs = train_files[c]
            order = rng.permutation(len(fs))
            n_eval = int(round(len(fs) * validation_fraction)) if len(fs) > 1 else 0
            held += [(fs[j], i) for j in sorted(order[:n_eval])]
            train += [(fs[j], i) for j in sorted(order[n_eval:])]
    if not train or not held:
        raise ValueError(f"Image folder {train_dir!r} left no usable {'training' if not train else 'eval'} images.")
    train_split = _file_split(train, f"Training images under {train_dir!r}")
    eval_split = _file_split(held, f"Eval images under {eval_dir or train_dir!r}")
    train_split.scanned = eval_split.scanned = scanned
    return Source(os.path.basename(os.path.normpath(train_dir)), train_split, eval_split, class_names)


def array_source(
    train: tuple[np.ndarray, np.ndarray],
    eval: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str],
    name: str = "arrays",
) -> Source:
    """Decoded uint8 images [N, H, W, 3] and integer labels held in memory."""
    splits = []
    for what, (images, labels) in (("train", train), ("eval", eval)):
        images, labels = np.asarray(images), np.asarray(labels).astype(np.int32)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"{what} images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}.")
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"{what} needs as many labels as images (and at least one), got {len(images)}/{len(labels)}.")
        splits.append(Split(lambda i=images, y=labels: tf.data.Dataset.from_tensor_slices((i, y)), "decoded", len(images)))
    return Source(name, splits[0], splits[1], list(class_names))


def tfds_source(
    name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    train_split: str = "train",
    eval_split: str | None = None,
    download: bool = False,
) -> Source:
    """A prepared TFDS image-classification dataset (images stay encoded until cropped).

    Nothing is downloaded unless `download=True`; `manual_dir` (for
    imagenet2012 and other manual datasets) prepares from local files. Without
    `eval_split` the "validation" split is used, else "test", else the last
    10% of the train split.
    """
    import tensorflow_datasets as tfds

    for what, folder in (("data_dir", data_dir), ("manual_dir", manual_dir)):
        if folder:
            check_filesystem(folder, what)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # TFDS raises several types for unknown names
        raise ValueError(f"TFDS has no dataset {name!r} ({type(e).__name__}); see `tfds.list_builders()`.") from None
    if not builder.is_prepared():
        if download or manual_dir:
            config = tfds.download.DownloadConfig(manual_dir=manual_dir)
            builder.download_and_prepare(download_config=config)
        else:
            raise ValueError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir!r}. Prepare it once with "
                f"`tfds build {name} --data_dir=<dir>` (online, or with --manual_dir=<dir> holding the "
                "archives for manual datasets such as imagenet2012), or pass download=True / manual_dir=."
            )
    features = builder.info.features
    image_key = next((k for k in ("image", "img") if k in features), None)
    if image_key is None or "label" not in features or not hasattr(features["label"], "names"):
        raise ValueError(f"TFDS dataset {name!r} is not image classification (needs 'image' and 'label' features).")
    splits = builder.info.splits
    if eval_split is None:
        if "validation" in splits:
            eval_split = "validation"
        elif "test" in splits:
            eval_split = "test"
        else:
            train_split, eval_split = f"{train_split}[:90%]", f"{train_split}[90%:]"

    def make(split, check_count=True):
        def load():
            ds = builder.as_dataset(split=split, decoders={image_key: tfds.decode.SkipDecoding()}, shuffle_files=False,
                                    read_config=tfds.ReadConfig(assert_cardinality=check_count))  # fmt: skip
            return ds.map(lambda ex: (ex[image_key], tf.cast(ex["label"], tf.int32)))

        return Split(load, "encoded", splits[split].num_examples)

    # TFDS's count check would fail on tf.data service workers, which each read part of the train split;
    # the train pipeline asserts its pass length itself.
    return Source(name, make(train_split, check_count=False), make(eval_split), list(features["label"].names))
