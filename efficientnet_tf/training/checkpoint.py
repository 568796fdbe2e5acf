"""Crash-safe, exactly resumable training checkpoints as a plain Keras callback.

Keras' BackupAndRestore restores neither callback state (EMA shadows) nor the
per-epoch logs, and does not write atomically. Here, every finished epoch is
one self-contained `.npz` written atomically: a rerun of the same `model.fit`
after a kill at any moment continues from the last finished epoch with the
same weights, optimizer state (its `iterations` drive the LR schedule), EMA
shadows and seed-generator states, and `log.csv` holds every epoch once.

An `.npz` is a zip whose members carry CRCs that `np.load` checks while
reading, so truncated or bit-flipped files are detected rather than loaded.

Under tf.distribute, variables are read and assigned in cross-replica
context: per-replica copies that drift apart (BatchNorm moving statistics)
are saved from the first replica and restored to all, as `save_weights` does.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import re
import warnings
import zipfile
from typing import Any, Optional, Protocol, Sequence

import keras
import numpy as np

from efficientnet_tf.errors import one_line
from efficientnet_tf.files import TEMP_PREFIX, atomic_write, atomic_write_text

_METADATA_KEY = "metadata"
_LOG = "log.csv"
_CHECKPOINT_NAME = re.compile(r"^ckpt-(\d{5,})\.npz$")
# What a damaged file raises from np.load / reading its members / parsing the metadata.
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)
# Keras numbers auto-generated names per session ("adam_1", "seed_generator_3"),
# so a model rebuilt in the same notebook differs from the saved one only there.
_NAME_COUNTER = re.compile(r"_\d+(?=[/_:]|$)")


class ShadowVariables(Protocol):
    """What the checkpointer needs from an EMA: its shadows, created on demand."""

    def build(self, model: keras.Model) -> None: ...

    @property
    def variables(self) -> Sequence[Any]: ...


class UnreadableCheckpoint(OSError):
    """A checkpoint file is truncated, bit-flipped or otherwise not a complete checkpoint."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the checkpoints stop at the last good epoch."""


def checkpoint_path(directory: str, epochs: int) -> str:
    """Path of the checkpoint written after `epochs` finished epochs."""
    return os.path.join(directory, f"ckpt-{epochs:05d}.npz")


def latest_checkpoint(directory: str) -> Optional[str]:
    """Newest checkpoint in `directory` (not validated), or None."""
    checkpoints = _checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def restore(
    path: str,
    model: keras.Model,
    optimizer: Optional[keras.optimizers.Optimizer] = None,
    ema: Optional[ShadowVariables] = None,
) -> dict:
    """Loads a checkpoint into `model` (and `optimizer`, `ema` if given); returns its metadata.

    Every array is read (so CRCs are checked) and every variable matched before
    the first assignment, so a bad file or a different model changes nothing.
    """
    metadata, arrays = _read(path)
    _assign(path, arrays, _state(model, optimizer, ema))
    return metadata


class Checkpointer(keras.callbacks.Callback):
    """Writes `ckpt-{epochs:05d}.npz` and `log.csv` after every epoch; resumes from them in `fit`.

    With an EMA: `model.fit(..., callbacks=[ema, Checkpointer(directory, ema=ema)])`.
    Exact resumption also needs a reproducible data order (arrays with
    `shuffle=False`, or a dataset whose order depends only on the epoch).
    `history` holds the logs of every finished epoch, restored ones included;
    `initial_epoch` is the number of epochs restored.

    Under multi-worker training every worker resumes from `directory` (the
    chief's, on a filesystem all workers share) and saves each epoch too, as
    saving reads distributed variables; the non-chief workers pass a
    `write_directory` of their own that nobody reads.
    """

    def __init__(self, directory: str, *, ema: Optional[ShadowVariables] = None, keep: int = 2, verbose: int = 1,
                 write_directory: Optional[str] = None):  # fmt: skip
        super().__init__()
        if keep < 1:
            raise ValueError(f"keep={keep} must be at least 1: it is how many newest checkpoints stay on disk.")
        self.directory = directory
        self.write_directory = write_directory or directory
        self.ema = ema
        self.keep = keep
        self.verbose = verbose
        self.history: list[dict[str, float]] = []
        self.initial_epoch = 0
        self._epoch = 0

    def on_train_begin(self, logs=None):
        os.makedirs(self.write_directory, exist_ok=True)
        for name in ("ckpt-*.npz", _LOG):  # Writes cut short by a kill.
            for leftover in glob.glob(os.path.join(self.write_directory, f"{TEMP_PREFIX}*-{name}")):
                os.remove(leftover)
        groups = _state(self.model, self.model.optimizer, self.ema)
        self.history, self.initial_epoch = [], 0
        candidates = _checkpoints(self.directory)
        for path in reversed(candidates):
            try:
                metadata, arrays = _read(path)
            except UnreadableCheckpoint as error:
                if self.write_directory != self.directory:  # only the writer moves its files
                    warnings.warn(f"{error}; trying the previous one.")
                    continue
                os.replace(path, path + ".corrupt")
                warnings.warn(f"{error}; moved it to {path}.corrupt and trying the previous one.")
                continue
            _assign(path, arrays, groups)
            self.history, self.initial_epoch = metadata["history"], metadata["epochs"]
            # Read by Model.fit right after on_train_begin, as for BackupAndRestore.
            self.model._initial_epoch = self.initial_epoch
            self._print(f"Checkpointer: resumed from {path} after epoch {self.initial_epoch}.")
            return
        if candidates:
            warnings.warn(f"No readable checkpoint in {self.directory}; training starts from scratch.")

    def on_epoch_begin(self, epoch, logs=None):
        # fit() has already read it; clearing now keeps an interrupted fit from
        # leaking the resumed epoch into a later fit without this callback.
        self.model._initial_epoch = None
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        step = int(self.model.optimizer.iterations.numpy())
        raise TrainingDiverged(
            f"Training diverged: loss is {loss} at step {step} (epoch {self._epoch + 1}, batch {batch + 1}); "
            f"the last good checkpoint is {latest_checkpoint(self.directory) or 'none (nothing was saved)'}.")

    def on_epoch_end(self, epoch, logs=None):
        self.history.append({name: float(value) for name, value in (logs or {}).items()
                             if isinstance(value, (int, float, np.number))})
        path = checkpoint_path(self.write_directory, epoch + 1)
        arrays = {_METADATA_KEY: np.array(json.dumps(
            {"epochs": epoch + 1, "history": self.history, "keras_version": keras.__version__}))}
        for group, variables in _state(self.model, self.model.optimizer, self.ema).items():
            for index, variable in enumerate(variables):
                arrays[f"{group}/{index:05d}/{_path(variable)}"] = variable.numpy()

        def write(tmp: str) -> None:
            with open(tmp, "wb") as file:
                np.savez(file, **arrays)

        atomic_write(path, write)
        for old in _checkpoints(self.write_directory)[:-self.keep]:
            os.remove(old)
        atomic_write_text(os.path.join(self.write_directory, _LOG), _csv(self.history))
        self._print(f"Checkpointer: saved {path}.")

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None

    def _print(self, message: str) -> None:
        if self.verbose:
            print(message)


def _state(model: keras.Model, optimizer, ema) -> dict[str, list]:
    """The variables a checkpoint holds, by group, creating any that do not exist yet.

    Outside a strategy scope Keras builds the optimizer only when the first
    train step is traced, which is after on_train_begin; inside one, fit's
    symbolic build has done it already. Building in the model's strategy scope
    mirrors new variables like the model's own.
    """
    with model.distribute_strategy.scope():
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        if ema is not None:
            ema.build(model)
    groups = {"model": list(model.variables)}
    if optimizer is not None:
        groups["optimizer"] = list(optimizer.variables)
    if ema is not None:
        groups["ema"] = list(ema.variables)
    return groups


def _assign(path: str, arrays: dict, groups: dict[str, list]) -> None:
    """Matches every variable before assigning any, so a different model changes nothing."""
    pairs = [pair for group, variables in groups.items() for pair in _match(path, arrays, group, variables)]
    for variable, value in pairs:
        variable.assign(value)


def _match(path: str, arrays: dict, group: str, variables: list) -> list:
    """(variable, saved value) pairs; a ValueError names the first variable that differs."""
    saved = sorted(key for key in arrays if key.startswith(group + "/"))
    for index in range(max(len(saved), len(variables))):
        ours = (_path(variables[index]), tuple(variables[index].shape)) if index < len(variables) else None
        theirs = (saved[index].split("/", 2)[2], arrays[saved[index]].shape) if index < len(saved) else None
        if ours is None or theirs is None or _without_counters(ours) != _without_counters(theirs):
            raise ValueError(
                f"{group} variable {index} is {_describe(ours)} here but {_describe(theirs)} in {path}: the "
                "directory belongs to a different model/config; use a new directory or the original config.")
    return [(variable, arrays[key]) for variable, key in zip(variables, saved)]


def _without_counters(entry: tuple) -> tuple:
    return _NAME_COUNTER.sub("", entry[0]), entry[1]


def _describe(variable: Optional[tuple]) -> str:
    return "missing" if variable is None else f"{variable[0]} of shape {variable[1]}"


def _read(path: str) -> tuple[dict, dict]:
    """Metadata and every array of the file, read in full so zip CRCs are checked."""
    try:
        with open(path, "rb") as file, np.load(file) as archive:  # np.load leaks its own handle on a bad zip.
            arrays = {key: archive[key] for key in archive.files}
        return json.loads(str(arrays.pop(_METADATA_KEY))), arrays
    except _UNREADABLE as error:
        raise UnreadableCheckpoint(f"Checkpoint {path} is unreadable ({type(error).__name__}: {one_line(error)})") from error


def _checkpoints(directory: str) -> list[str]:
    """Checkpoint paths, oldest first."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    matches = sorted((int(match.group(1)), name) for name in names if (match := _CHECKPOINT_NAME.match(name)))
    return [os.path.join(directory, name) for _, name in matches]


def _path(variable) -> str:
    return getattr(variable, "path", None) or variable.name


def _csv(history: list[dict[str, float]]) -> str:
    columns = ["epoch", *dict.fromkeys(name for logs in history for name in logs)]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for epoch, logs in enumerate(history, start=1):  # 1-based, as the progress bar counts
        writer.writerow({"epoch": epoch, **logs})
    return text.getvalue()
