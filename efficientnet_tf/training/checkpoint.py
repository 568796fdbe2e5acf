"""Crash-safe, exactly resumable training checkpoints as a plain Keras callback.

Keras' BackupAndRestore restores neither callback state (EMA shadows) nor the
per-epoch logs, and does not write atomically. Here, every finished epoch is
one self-contained `.npz` written atomically: a rerun of the same `model.fit`
after a kill at any moment continues from the last finished epoch with the
same weights, optimizer state (its `iterations` drive the LR schedule), EMA
shadows and seed-generator states, and `log.csv` holds every epoch once.

A run can also stop mid-epoch: on SIGTERM (see `preemption`) and every
`every_steps` steps, `ckpt-{epochs}-{batches}.npz` holds the same state after
`batches` batches of the next epoch, with the epoch's metric totals; given
the training data's `AugmentState` (`data=`), a rerun continues that epoch
from its next batch, so the weights and `log.csv` equal an uninterrupted
run's. Mid-epoch checkpoints do not count against `keep`: only the newest
is kept, until the next epoch-end checkpoint replaces it.

An `.npz` is a zip whose members carry CRCs that `np.load` checks while
reading, so truncated or bit-flipped files are detected rather than loaded.

Under tf.distribute, variables are read and assigned in cross-replica
context: per-replica copies that drift apart (BatchNorm moving statistics)
are saved from the first replica and restored to all, as `save_weights` does.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import contextlib
import warnings
import zipfile
from typing import Any, Optional, Protocol, Sequence

import keras
import numpy as np
import tensorflow as tf

from efficientnet_tf.errors import one_line
from efficientnet_tf.files import TEMP_PREFIX, atomic_write, atomic_write_text
from efficientnet_tf.training.keras_patches import is_multi_worker
from efficientnet_tf.training.preemption import Preempted, SigtermListener

_METADATA_KEY = "metadata"
_LOG = "log.csv"
_CHECKPOINT_NAME = re.compile(r"^ckpt-(\d{5,})(?:-(\d{5,}))?\.npz$")  # epochs done[-batches of the next one]
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


class ResumableData(Protocol):
    """What a mid-epoch resume needs from the training data: start the next pass at a batch (`AugmentState`)."""

    def resume_at(self, batch: int) -> None: ...


class UnreadableCheckpoint(OSError):
    """A checkpoint file is truncated, bit-flipped or otherwise not a complete checkpoint."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the checkpoints stop at the last good epoch."""


def checkpoint_path(directory: str, epochs: int) -> str:
    """Path of the checkpoint written after `epochs` finished epochs."""
    return os.path.join(directory, f"ckpt-{epochs:05d}.npz")


def mid_epoch_checkpoint_path(directory: str, epochs: int, batches: int) -> str:
    """Path of the checkpoint written after `epochs` finished epochs and `batches` batches of the next one."""
    return os.path.join(directory, f"ckpt-{epochs:05d}-{batches:05d}.npz")


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
    `initial_epoch` is the number of epochs restored, `initial_step` the
    batches of the next epoch a mid-epoch checkpoint had done.

    With `data` (the train dataset's `AugmentState`), SIGTERM during fit
    saves a mid-epoch checkpoint at the next step boundary (the epoch's
    evaluation, if running, is abandoned) and raises `Preempted`, and
    `every_steps` > 0 saves one every that many steps; fit resumes both
    mid-epoch. Without `data`, SIGTERM stops at the next step boundary, to
    resume from the last finished epoch.

    Under multi-worker training every worker resumes from `directory` (the
    chief's, on a filesystem all workers share) and saves each epoch too, as
    saving reads distributed variables; the non-chief workers pass a
    `write_directory` of their own that nobody reads.
    """

    def __init__(self, directory: str, *, ema: Optional[ShadowVariables] = None, keep: int = 2, verbose: int = 1,
                 write_directory: Optional[str] = None, data: Optional[ResumableData] = None,
                 every_steps: int = 0):  # fmt: skip
        super().__init__()
        if keep < 1:
            raise ValueError(f"keep={keep} must be at least 1: it is how many newest checkpoints stay on disk.")
        if every_steps < 0 or (every_steps and data is None):
            raise ValueError(f"every_steps={every_steps} needs to be 0, or positive with data= the train dataset's "
                             "AugmentState (which resumes an epoch mid-way).")  # fmt: skip
        self.directory = directory
        self.write_directory = write_directory or directory
        self.ema = ema
        self.keep = keep
        self.verbose = verbose
        self.history: list[dict[str, float]] = []
        self.initial_epoch = 0
        self.initial_step = 0
        self.data = data
        self.every_steps = every_steps
        self._epoch = 0
        self._batches = 0  # done in the current epoch, resumed ones included
        self._stopped_short = False
        self._restored_logs: Optional[dict] = None
        self._metrics: Optional[dict] = None  # a mid-epoch checkpoint's metric totals, not yet added back
        self._train_metrics: Optional[list] = None  # the epoch's totals, kept while the validation resets them
        self._sigterm: Optional[SigtermListener] = None
        self._quiet_resume = contextlib.ExitStack()

    def on_train_begin(self, logs=None):
        tf.io.gfile.makedirs(self.write_directory)
        for name in ("ckpt-*.npz", _LOG):  # Writes cut short by a kill.
            for leftover in tf.io.gfile.glob(os.path.join(self.write_directory, f"{TEMP_PREFIX}*-{name}")):
                tf.io.gfile.remove(leftover)
        self._close()  # a fit that failed before its end left its listener
        self._restore()
        self._sigterm = SigtermListener()

    def _restore(self) -> None:
        """Loads the newest readable checkpoint, if any, and tells fit where to start."""
        groups = _state(self.model, self.model.optimizer, self.ema)
        self.history, self.initial_epoch, self.initial_step, self._metrics = [], 0, 0, None
        candidates = _checkpoints(self.directory)
        for path in reversed(candidates):
            try:
                metadata, arrays = _read(path)
            except UnreadableCheckpoint as error:
                if self.write_directory != self.directory:  # only the writer moves its files
                    warnings.warn(f"{error}; trying the previous one.")
                    continue
                tf.io.gfile.rename(path, path + ".corrupt", overwrite=True)
                warnings.warn(f"{error}; moved it to {path}.corrupt and trying the previous one.")
                continue
            batches = metadata.get("batches", 0)
            if batches and self.data is None:
                raise ValueError(f"{path} is a mid-epoch checkpoint; pass Checkpointer(..., data=) the train "
                                 "dataset's AugmentState to resume it, or delete it to resume from the epoch before.")
            _assign(path, arrays, groups)
            self.history, self.initial_epoch, self.initial_step = metadata["history"], metadata["epochs"], batches
            self._metrics = {key: value for key, value in arrays.items() if key.startswith("metrics/")} if batches else None
            # Read by Model.fit right after on_train_begin, as for BackupAndRestore.
            self.model._initial_epoch = self.initial_epoch
            where = f"at epoch {self.initial_epoch + 1} step {batches}" if batches else f"after epoch {self.initial_epoch}"
            self._print(f"Checkpointer: resumed from {path} {where}.")
            return
        if candidates:
            warnings.warn(f"No readable checkpoint in {self.directory}; training starts from scratch.")

    def on_epoch_begin(self, epoch, logs=None):
        # fit() has already read it; clearing now keeps an interrupted fit from
        # leaking the resumed epoch into a later fit without this callback.
        self.model._initial_epoch = None
        self._epoch = epoch
        self._batches, self._train_metrics = 0, None
        if epoch == self.initial_epoch and self.initial_step:
            self._resume_mid_epoch()
        if self.data is not None:
            self.data.resume_at(self._batches)

    def _resume_mid_epoch(self) -> None:
        """The epoch continues after its first `initial_step` batches, with their metric totals (fit has just reset them)."""
        self._batches = self.initial_step
        if is_multi_worker(self.model.distribute_strategy):  # there each worker would add its copy
            self._metrics = None
        if self._batches < (self.params.get("steps") or math.inf):
            return  # on_train_batch_end stops the shorter epoch after its last batch
        # Nothing is left to train (preempted in the validation): Keras runs at least one step per epoch, so
        # its first train-function call ends the epoch instead, as an input that ran out would.
        train_function = self.model.train_function

        def end_epoch(iterator):
            self.model.train_function = train_function
            if self._metrics is not None:
                # Keras builds compile metrics in a step; without one they are built here, on zeros.
                zeros = keras.ops.zeros((1, *self.model.output_shape[1:]))
                with self.model.distribute_strategy.scope():
                    self.model.compute_metrics(None, zeros, zeros)
                self.model.reset_metrics()
                self._add_metric_totals()
                self._restored_logs = {name: float(value) for name, value in self.model.get_metrics_result().items()}
            raise StopIteration

        self.model.train_function = end_epoch
        self._quiet_resume.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="Your input ran out of data")

    def _add_metric_totals(self) -> None:
        """Adds the restored totals of the epoch's first batches to the metrics.

        Keras builds compile metrics in the first train step, so they are added
        after it: each total is a sum, and `restored + step` is bitwise
        `step + restored`, so the epoch's metrics equal an uninterrupted run's.
        """
        pairs = _match("the mid-epoch checkpoint", self._metrics, "metrics", self.model.metrics_variables)
        for variable, value in pairs:
            holder = variable.value
            components = holder.values if isinstance(holder, tf.distribute.DistributedValues) else (holder,)
            components[0].assign_add(value)  # read back summed over replicas
        self._metrics = None

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._metrics is not None:
            self._add_metric_totals()
        self._check_finite(batch, logs)
        last = self._batches == self.params.get("steps")  # then the validation or the epoch end saves
        if last and self._epoch == self.initial_epoch and self.initial_step:
            # The resumed epoch's shorter pass is done: Keras, counting a whole epoch, would ask for more.
            # on_epoch_end clears the flag again, so fit goes on with the next epoch.
            self.model.stop_training = self._stopped_short = True
        saved = None
        if self.every_steps and self._batches % self.every_steps == 0 and not last:
            saved = self._save_mid_epoch()
        if self._sigterm_here() and not last:
            if saved is None and self.data is not None:
                saved = self._save_mid_epoch()
            self._stop_preempted(saved)

    def on_test_begin(self, logs=None):
        if self._sigterm is not None:  # inside fit: its validation is about to reset the epoch's metric totals
            self._train_metrics = [variable.numpy() for variable in self.model.metrics_variables]

    def _sigterm_here(self) -> bool:
        """SIGTERM arrived, and this step may save: under multi-worker training each worker gets its own
        signal at its own step, so there only the epoch end (a step all workers share) saves."""
        received = self._sigterm is not None and self._sigterm.received
        return received and not is_multi_worker(self.model.distribute_strategy)

    def on_test_batch_end(self, batch, logs=None):
        if not self._sigterm_here():
            return
        # The training epoch is done: its state is saved as a mid-epoch checkpoint at its last batch, and the
        # rerun evaluates it. Keras skips on_test_end when a callback raises: the EMA swaps its averages out first.
        if self.ema is not None and hasattr(self.ema, "on_test_end"):
            self.ema.on_test_end()
        self._stop_preempted(self._save_mid_epoch() if self.data is not None else None)

    def _stop_preempted(self, saved: Optional[str]) -> None:
        self._close()
        where = f"epoch {self._epoch + 1} step {self._batches}"
        if saved is None:
            saved = latest_checkpoint(self.directory)
            raise Preempted(f"preempted (SIGTERM) at {where}; the last checkpoint is {saved or 'none'}; "
                            "rerun the same command to resume from it.")  # fmt: skip
        raise Preempted(f"preempted (SIGTERM) at {where}; saved {saved}; rerun the same command to resume.")

    def _save_mid_epoch(self) -> str:
        if self._metrics is not None:  # resumed after its last batch: the restored totals, not added back yet
            extra = dict(self._metrics)
        else:
            metrics = self._train_metrics or [variable.numpy() for variable in self.model.metrics_variables]
            extra = {f"metrics/{index:05d}/{_path(variable)}": value
                     for index, (variable, value) in enumerate(zip(self.model.metrics_variables, metrics))}
        path = mid_epoch_checkpoint_path(self.write_directory, self._epoch, self._batches)
        self._write(path, {"epochs": self._epoch, "batches": self._batches}, extra)
        return path

    def _check_finite(self, batch, logs) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        self._close()
        step = int(self.model.optimizer.iterations.numpy())
        raise TrainingDiverged(
            f"Training diverged: loss is {loss} at step {step} (epoch {self._epoch + 1}, batch {batch + 1}); "
            f"the last good checkpoint is {latest_checkpoint(self.directory) or 'none (nothing was saved)'}.")

    def on_epoch_end(self, epoch, logs=None):
        self._quiet_resume.close()
        if self._stopped_short:
            self.model.stop_training = self._stopped_short = False
        if logs is not None and self._restored_logs:
            # Resumed after its last batch (preempted in evaluation): Keras ran no train step and logged no
            # training metrics; they are the restored totals'.
            logs.update({name: value for name, value in self._restored_logs.items() if name not in logs})
            self._restored_logs = None
        self.history.append({name: float(value) for name, value in (logs or {}).items()
                             if isinstance(value, (int, float, np.number))})
        path = checkpoint_path(self.write_directory, epoch + 1)
        self._write(path, {"epochs": epoch + 1})
        atomic_write_text(os.path.join(self.write_directory, _LOG), _csv(self.history))
        self._print(f"Checkpointer: saved {path}.")
        if self._sigterm is not None and self._sigterm.received:  # also when it came during the write
            self._batches = self.params.get("steps") or self._batches
            self._stop_preempted(path)

    def _write(self, path: str, metadata: dict, extra: Optional[dict] = None) -> None:
        """One atomic checkpoint of the model, optimizer and EMA (and `extra` arrays), then the rotation."""
        arrays = {_METADATA_KEY: np.array(json.dumps(
            {**metadata, "history": self.history, "keras_version": keras.__version__}))}
        for group, variables in _state(self.model, self.model.optimizer, self.ema).items():
            for index, variable in enumerate(variables):
                arrays[f"{group}/{index:05d}/{_path(variable)}"] = variable.numpy()
        arrays.update(extra or {})

        def write(tmp: str) -> None:
            with open(tmp, "wb") as file:
                np.savez(file, **arrays)

        atomic_write(path, write)
        checkpoints = _checkpoints(self.write_directory)
        epoch_ends = [old for old in checkpoints if not _is_mid_epoch(old)]
        # The newest checkpoint stays whatever it is; older mid-epoch ones go, and all but `keep` epoch ends.
        for old in checkpoints[:-1]:
            if _is_mid_epoch(old) or old in epoch_ends[:-self.keep]:
                tf.io.gfile.remove(old)

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None
        self._quiet_resume.close()
        received = self._sigterm is not None and self._sigterm.received
        self._close()
        if received:  # after the last checkpoint's check: the run is complete, and stops here all the same
            self._stop_preempted(None)  # names the last checkpoint of the run's directory

    def _close(self) -> None:
        if self._sigterm is not None:
            self._sigterm.close()
            self._sigterm = None

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
        with tf.io.gfile.GFile(path, "rb") as file, np.load(file) as archive:  # np.load leaks its own handle on a bad zip.
            arrays = {key: archive[key] for key in archive.files}
        return json.loads(str(arrays.pop(_METADATA_KEY))), arrays
    except _UNREADABLE as error:
        raise UnreadableCheckpoint(f"Checkpoint {path} is unreadable ({type(error).__name__}: {one_line(error)})") from error


def _checkpoints(directory: str) -> list[str]:
    """Checkpoint paths, oldest first."""
    names = tf.io.gfile.listdir(directory) if tf.io.gfile.isdir(directory) else []
    matches = sorted((int(match.group(1)), int(match.group(2) or 0), name)
                     for name in names if (match := _CHECKPOINT_NAME.match(name)))  # fmt: skip
    return [os.path.join(directory, name) for *_, name in matches]


def _is_mid_epoch(path: str) -> bool:
    return _CHECKPOINT_NAME.match(os.path.basename(path)).group(2) is not None


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
