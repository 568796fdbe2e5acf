"""Decode image files inside tf.data without letting one bad file end an epoch.

Each file is decoded in its own tiny dataset with `ignore_errors`; when that
yields nothing, a failure marker takes its place, so the pipeline learns which
path failed. Failures are collected in Python (each path once, however many
epochs it fails in) and reported as one warning (count and first paths) at
the end of the pass that first met them.
"""

from __future__ import annotations

import io
import logging
import threading
from typing import Callable

import tensorflow as tf

log = logging.getLogger("efficientnet_tf.data")
FIRST_PATHS = 5
_REPORTED: set[tuple[str, str]] = set()  # (path, when) pairs already in a warning of this process
_REPORTED_LOCK = threading.Lock()


class BadFileLog:
    """Paths of files (image files, or `noun`s) that could not be used (each once), with one warning per pass."""

    def __init__(self, what: str, noun: str = "image file"):
        self.what, self.noun = what, noun
        self._paths: dict[str, str] = {}  # path -> when it was skipped; a dict keeps the order
        self._unreported: list[str] = []
        self._lock = threading.Lock()

    @property
    def paths(self) -> list[str]:
        return list(self._paths)

    @property
    def decode_failures(self) -> int:
        """Files that passed the scan but failed to decode (so far)."""
        return sum(when == "decode" for when in self._paths.values())

    def add(self, paths: list[str], when: str) -> None:
        """Record paths skipped `when` (e.g. "while scanning"); warn about those no log of this process has reported.

        A run scans its folder twice (the folder recipe counts the images
        before training lists them), and one warning is enough.
        """
        with self._lock, _REPORTED_LOCK:
            paths = [p for p in dict.fromkeys(paths) if p not in self._paths]
            for path in paths:
                self._paths[path] = when
            paths = [p for p in paths if (p, when) not in _REPORTED]
            _REPORTED.update((p, when) for p in paths)
        if not paths:
            return
        shown = ", ".join(paths[:FIRST_PATHS]) + (", ..." if len(paths) > FIRST_PATHS else "")
        log.warning("%s: skipped %d unreadable %s(s) %s: %s", self.what, len(paths), self.noun, when, shown)

    def _note(self, path: tf.Tensor) -> bool:
        """Called from the pipeline: a failed path, or b"" at the end of a pass."""
        path = path.numpy().decode("utf-8", "replace")
        with self._lock:
            if path:
                if path not in self._paths:  # a file fails again every epoch; count and warn once
                    self._paths[path] = "decode"
                    self._unreported.append(path)
                return True
            new, self._unreported = self._unreported, []
        if new:
            shown = ", ".join(new[:FIRST_PATHS]) + (", ..." if len(new) > FIRST_PATHS else "")
            log.warning("%s: skipped %d image file(s) that failed to decode: %s", self.what, len(new), shown)
        return True


def _palette_bmp_to_png(data: tf.Tensor) -> bytes:
    """TensorFlow reads a palette BMP's colour indices as grey levels; PIL applies the palette."""
    from PIL import Image

    with Image.open(io.BytesIO(data.numpy())) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, "PNG")
    return out.getvalue()


def read_image_file(path: tf.Tensor) -> tf.Tensor:
    """The file's bytes, with BMPs of 8 or fewer bits per pixel (palettes) re-encoded as PNG."""
    data = tf.io.read_file(path)

    def is_palette_bmp():
        bits = tf.io.decode_raw(tf.strings.substr(data, 28, 1), tf.uint8)[0]
        return tf.logical_and(tf.strings.substr(data, 0, 2) == "BM", bits <= 8)

    has_header = tf.strings.length(data) > 30
    palette = tf.cond(has_header, is_palette_bmp, lambda: tf.constant(False))
    return tf.cond(palette, lambda: tf.reshape(tf.py_function(_palette_bmp_to_png, [data], tf.string), []), lambda: data)


def decode_files(files: tf.data.Dataset, decode: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], bad: BadFileLog) -> tf.data.Dataset:
    """(path, label, key) -> (uint8 image, label, key), skipping and logging files that fail.

    `decode(data, key)` turns a file's bytes into the image; `key` is the
    example's random key (see `seeds`), passed through.
    """

    def attempt(path, label, key):
        # The end-of-pass marker (an empty path) is never read: TF would log a NOT_FOUND warning for it.
        good = tf.data.Dataset.from_tensors((path, label, key)).filter(lambda p, y, k: tf.strings.length(p) > 0).map(
            lambda p, y, k: (decode(read_image_file(p), k), y, k, p, True)
        ).ignore_errors()
        failed = tf.data.Dataset.from_tensors((tf.zeros([0, 0, 3], tf.uint8), label, key, path, False))
        return good.concatenate(failed).take(1)

    def note(image, label, key, path, ok):
        noted = tf.cond(ok, lambda: True, lambda: tf.py_function(bad._note, [path], tf.bool))
        return image, label, key, ok & noted

    label_dtype, key_spec = files.element_spec[1].dtype, files.element_spec[2]
    end_of_pass = tf.data.Dataset.from_tensors(
        (tf.constant(""), tf.constant(-1, label_dtype), tf.zeros(key_spec.shape, key_spec.dtype))
    )
    ds = files.concatenate(end_of_pass).interleave(
        attempt, cycle_length=16, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    ds = ds.map(note).filter(lambda image, label, key, ok: ok)
    return ds.map(lambda image, label, key, ok: (image, label, key))
