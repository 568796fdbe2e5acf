"""Decode image files inside tf.data without letting one bad file end an epoch.

Each file is decoded in its own tiny dataset with `ignore_errors`; when that
yields nothing, a failure marker takes its place, so the pipeline learns which
path failed. Failures are collected in Python and reported as one warning
(count and first paths) at the end of each pass over the files.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import tensorflow as tf

log = logging.getLogger("efficientnet_tf.data")
FIRST_PATHS = 5


class BadFileLog:
    """Paths of files that could not be used, with one warning per pass."""

    def __init__(self, what: str):
        self.what = what
        self.paths: list[str] = []
        self._reported = 0
        self._lock = threading.Lock()

    def add(self, paths: list[str], when: str) -> None:
        """Record paths skipped `when` (e.g. "while scanning") and warn once."""
        if not paths:
            return
        with self._lock:
            self.paths.extend(paths)
            self._reported = len(self.paths)
        shown = ", ".join(paths[:FIRST_PATHS]) + (", ..." if len(paths) > FIRST_PATHS else "")
        log.warning("%s: skipped %d unreadable image file(s) %s: %s", self.what, len(paths), when, shown)

    def _note(self, path: tf.Tensor) -> bool:
        """Called from the pipeline: a failed path, or b"" at the end of a pass."""
        path = path.numpy().decode("utf-8", "replace")
        with self._lock:
            if path:
                self.paths.append(path)
                return True
            new, self._reported = self.paths[self._reported :], len(self.paths)
        if new:
            shown = ", ".join(new[:FIRST_PATHS]) + (", ..." if len(new) > FIRST_PATHS else "")
            log.warning("%s: skipped %d image file(s) that failed to decode: %s", self.what, len(new), shown)
        return True


def decode_files(files: tf.data.Dataset, decode: Callable[[tf.Tensor], tf.Tensor], bad: BadFileLog) -> tf.data.Dataset:
    """(path, label) -> (uint8 image, label), skipping and logging files that fail."""

    def attempt(path, label):
        good = tf.data.Dataset.from_tensors((path, label)).map(
            lambda p, y: (decode(tf.io.read_file(p)), y, p, True)
        ).ignore_errors()
        failed = tf.data.Dataset.from_tensors((tf.zeros([0, 0, 3], tf.uint8), label, path, False))
        return good.concatenate(failed).take(1)

    def note(image, label, path, ok):
        noted = tf.cond(ok, lambda: True, lambda: tf.py_function(bad._note, [path], tf.bool))
        return image, label, ok & noted

    end_of_pass = tf.data.Dataset.from_tensors((tf.constant(""), tf.constant(-1, files.element_spec[1].dtype)))
    ds = files.concatenate(end_of_pass).interleave(
        attempt, cycle_length=16, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    ds = ds.map(note).filter(lambda image, label, ok: ok)
    return ds.map(lambda image, label, ok: (image, label))
