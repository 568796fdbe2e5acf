"""Checkpointer: exact resumption, corrupt files, other models, divergence; atomic writes."""

import csv
import os
import pathlib
import re
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import efficientnet_tf
from efficientnet_tf.files import atomic_write, atomic_write_text
from efficientnet_tf.training.checkpoint import (
    Checkpointer,
    TrainingDiverged,
    UnreadableCheckpoint,
    checkpoint_path,
    latest_checkpoint,
    restore,
)
from efficientnet_tf.training.ema import ExponentialMovingAverage

TINY_BLOCKS = ["r1_k3_s1_e1_i16_o16_c1", "r1_k3_s2_e4_i16_o24_se0.25"]


def _efficientnet():
    keras.utils.set_random_seed(7)
    # Dropout and stochastic depth on: their seed-generator states must be restored too.
    model = efficientnet_tf.get_model(
        "efficientnetv2-b0", blocks=TINY_BLOCKS, width=0.5, num_classes=3, dropout_rate=0.5, survival_prob=0.8)
    schedule = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=8)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _dense(classes=3):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, activation="relu", name="hidden"),
        keras.layers.BatchNormalization(name="norm"),
        keras.layers.Dense(classes, activation="softmax", name="logits"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    return model


def _dense_data(samples=32):
    x = np.random.default_rng(0).normal(size=(samples, 4)).astype("float32")
    return x, np.eye(3, dtype="float32")[np.arange(samples) % 3]


def _values(variables):
    return [v.numpy() for v in variables]


def _csv_rows(directory):
    with open(os.path.join(directory, "log.csv")) as file:
        return list(csv.DictReader(file))


def test_resumed_fit_equals_uninterrupted_fit(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 16)]
    fit = dict(x=x, y=y, batch_size=8, shuffle=False, verbose=0)
    directory = str(tmp_path / "run")

    reference, reference_ema = _efficientnet(), ExponentialMovingAverage(decay=0.9)
    snapshots = {}
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.__setitem__(epoch + 1, _values(reference.variables)))
    reference_history = reference.fit(
        epochs=4, callbacks=[reference_ema, Checkpointer(directory, ema=reference_ema, keep=4, verbose=0), record],
        **fit)
    # What a kill during epoch 3 leaves behind (plus a log.csv that is ahead, which must not duplicate rows).
    for epoch in (3, 4):
        os.remove(checkpoint_path(directory, epoch))

    resumed, ema = _efficientnet(), ExponentialMovingAverage(decay=0.9)
    checkpointer = Checkpointer(directory, ema=ema, verbose=0)
    restored = []
    probe = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: restored.append(_values(resumed.variables)))
    history = resumed.fit(epochs=4, callbacks=[ema, checkpointer, probe], **fit)

    assert history.epoch == [2, 3] and checkpointer.initial_epoch == 2
    assert resumed._initial_epoch is None  # A later fit without the callback starts where it is told.
    _assert_same(restored[0], snapshots[2])
    assert int(resumed.optimizer.iterations) == int(reference.optimizer.iterations) == 8
    _assert_same(_values(resumed.variables), _values(reference.variables))
    _assert_same(_values(resumed.optimizer.variables), _values(reference.optimizer.variables))
    _assert_same(_values(ema.variables), _values(reference_ema.variables))

    assert checkpointer.history == [
        {name: values[epoch] for name, values in reference_history.history.items()} for epoch in range(4)]
    rows = _csv_rows(directory)
    assert [row["epoch"] for row in rows] == ["1", "2", "3", "4"]
    assert [float(row["loss"]) for row in rows] == reference_history.history["loss"]
    assert sorted(os.listdir(directory)) == ["ckpt-00003.npz", "ckpt-00004.npz", "log.csv"]
    assert latest_checkpoint(directory) == checkpoint_path(directory, 4)

    # As export does: weights only, the optimizer stays as it was.
    assert restore(checkpoint_path(directory, 3), reference)["epochs"] == 3
    _assert_same(_values(reference.variables), snapshots[3])
    assert int(reference.optimizer.iterations) == 8


@pytest.fixture
def three_epochs(tmp_path):
    """A directory with ckpt-00001..3 of the dense model, and its weights after each epoch."""
    directory = str(tmp_path / "run")
    model = _dense()
    snapshots = {}
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.__setitem__(epoch + 1, _values(model.variables)))
    x, y = _dense_data()
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
              callbacks=[Checkpointer(directory, keep=3, verbose=0), record])
    return directory, snapshots


def _resume(directory):
    """Fits a fresh dense model; returns (epochs run, checkpointer, weights when the first epoch began)."""
    model, checkpointer, at_start = _dense(), Checkpointer(directory, keep=3, verbose=0), []
    probe = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: at_start or at_start.append(_values(model.variables)))
    x, y = _dense_data()
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[checkpointer, probe])
    return history.epoch, checkpointer, at_start[0]


def _assert_same(values, expected):
    for a, b in zip(values, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_truncated_newest_checkpoint_falls_back_to_previous(three_epochs):
    directory, snapshots = three_epochs
    newest = checkpoint_path(directory, 3)
    with open(newest, "r+b") as file:
        file.truncate(os.path.getsize(newest) // 2)
    leftover = os.path.join(directory, ".tmp-0badf00d-ckpt-00004.npz")  # A write cut short by a kill.
    pathlib.Path(leftover).touch()
    with pytest.raises(UnreadableCheckpoint, match=f"^Checkpoint {re.escape(newest)} is unreadable \\(BadZipFile: "):
        restore(newest, _dense())

    with pytest.warns(UserWarning, match="ckpt-00003.npz is unreadable") as caught:
        epochs_run, checkpointer, at_start = _resume(directory)

    ours = [str(warning.message) for warning in caught if "Checkpoint" in str(warning.message)]
    assert len(ours) == 1 and "\n" not in ours[0]
    assert epochs_run == [2] and checkpointer.initial_epoch == 2
    _assert_same(at_start, snapshots[2])
    assert os.path.exists(newest + ".corrupt") and not os.path.exists(leftover)
    assert [row["epoch"] for row in _csv_rows(directory)] == ["1", "2", "3"]
    restore(newest, _dense())  # Rewritten by the resumed epoch, readable again.


def test_bit_flip_in_newest_checkpoint_is_detected(three_epochs):
    directory, snapshots = three_epochs
    newest = checkpoint_path(directory, 3)
    with np.load(newest) as archive:
        kernel = archive[[key for key in archive.files if key.endswith("hidden/kernel")][0]]
    raw = bytearray(pathlib.Path(newest).read_bytes())
    raw[raw.find(kernel.tobytes()) + 5] ^= 0x10
    pathlib.Path(newest).write_bytes(bytes(raw))

    with pytest.warns(UserWarning, match="ckpt-00003.npz is unreadable.*CRC"):
        epochs_run, checkpointer, at_start = _resume(directory)

    assert epochs_run == [2]
    _assert_same(at_start, snapshots[2])


def test_all_checkpoints_corrupt_starts_from_scratch(three_epochs):
    directory, _ = three_epochs
    for epoch in (1, 2, 3):
        pathlib.Path(checkpoint_path(directory, epoch)).write_bytes(b"")

    with pytest.warns(UserWarning) as caught:
        epochs_run, checkpointer, at_start = _resume(directory)

    messages = [str(warning.message) for warning in caught if "checkpoint" in str(warning.message).lower()]
    assert len(messages) == 4 and all(f"ckpt-0000{epoch}.npz is unreadable" in messages[3 - epoch] for epoch in (1, 2, 3))
    assert messages[-1] == f"No readable checkpoint in {directory}; training starts from scratch."
    assert epochs_run == [0, 1, 2] and checkpointer.initial_epoch == 0
    _assert_same(at_start, _values(_dense().variables))  # Fresh initial weights, nothing restored.
    assert [row["epoch"] for row in _csv_rows(directory)] == ["1", "2", "3"]
    assert latest_checkpoint(directory) == checkpoint_path(directory, 3)


def test_checkpoint_of_another_model_is_refused(three_epochs):
    directory, _ = three_epochs
    other = _dense(classes=4)
    before = _values(other.variables)
    x, _ = _dense_data()
    y = np.eye(4, dtype="float32")[np.arange(len(x)) % 4]

    with pytest.raises(ValueError, match=r"logits/kernel of shape \(8, 4\) here but .*logits/kernel of shape "
                                         r"\(8, 3\) in .*ckpt-00003.npz: the directory belongs to a different model"):
        other.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[Checkpointer(directory, verbose=0)])

    _assert_same(_values(other.variables), before)


def test_nan_loss_stops_with_the_step_and_keeps_last_good_checkpoint(tmp_path):
    directory = str(tmp_path / "run")
    x, y = _dense_data(96)
    # A non-finite label makes the loss itself NaN in the 6th batch (epoch 2, batch 2 with 4
    # batches per epoch). A NaN input would depend on the CPU's kernels: oneDNN's ReLU can drop it.
    y[5 * 8 + 3, 0] = np.nan
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = _dense()

    with pytest.raises(TrainingDiverged) as raised:
        model.fit(dataset, epochs=3, steps_per_epoch=4, shuffle=False, verbose=0,
                  callbacks=[Checkpointer(directory, verbose=0)])

    message = str(raised.value)
    assert int(model.optimizer.iterations) == 6
    assert "at step 6 (epoch 2, batch 2)" in message and "\n" not in message
    assert message.endswith(f"last good checkpoint is {checkpoint_path(directory, 1)}.")
    assert sorted(os.listdir(directory)) == ["ckpt-00001.npz", "log.csv"]
    assert len(_csv_rows(directory)) == 1
    assert model._initial_epoch is None


def test_failed_checkpoint_write_stops_fit_and_keeps_the_previous_checkpoint(tmp_path):
    directory = str(tmp_path / "run")
    blocked = checkpoint_path(directory, 2)
    # Runs before the Checkpointer's on_epoch_end: a directory takes the second checkpoint's name.
    block = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch == 1 and os.mkdir(blocked))
    x, y = _dense_data()

    with pytest.raises(OSError, match=f"^Could not write {re.escape(blocked)}: Is a directory$"):
        _dense().fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[block, Checkpointer(directory, verbose=0)])

    # No temporary file left; "ckpt-00002.npz" is the blocking directory.
    assert sorted(os.listdir(directory)) == ["ckpt-00001.npz", "ckpt-00002.npz", "log.csv"]
    assert restore(checkpoint_path(directory, 1), _dense())["epochs"] == 1


def test_atomic_write_replaces_whole_file_and_keeps_the_target_suffix(tmp_path):
    target = str(tmp_path / "model.weights.h5")
    atomic_write_text(target, "old")
    seen = []

    def write(tmp):
        seen.append(tmp)
        pathlib.Path(tmp).write_text("new")

    atomic_write(target, write)
    assert pathlib.Path(target).read_text() == "new"
    assert seen[0].endswith("model.weights.h5") and os.path.dirname(seen[0]) == str(tmp_path)
    assert os.listdir(tmp_path) == ["model.weights.h5"]


def test_failing_writer_leaves_old_file_and_no_temp(tmp_path):
    target = str(tmp_path / "log.csv")
    atomic_write_text(target, "old")

    def write(tmp):
        pathlib.Path(tmp).write_text("half")
        raise RuntimeError("disk went away")

    with pytest.raises(OSError, match=r"^Could not write .*log.csv: RuntimeError: disk went away$"):
        atomic_write(target, write)
    assert os.listdir(tmp_path) == ["log.csv"] and pathlib.Path(target).read_text() == "old"


def test_atomic_write_into_deleted_directory_names_path_and_cause(tmp_path):
    directory = tmp_path / "gone"
    directory.mkdir()
    shutil.rmtree(directory)
    target = str(directory / "config.json")

    with pytest.raises(OSError) as raised:
        atomic_write_text(target, "{}")

    assert str(raised.value) == f"Could not write {target}: No such file or directory"
