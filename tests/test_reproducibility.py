"""Deterministic training as a user runs it: the same `train.py` command gives bit-identical
weights, also when it is killed at any moment (mid-step, mid-evaluation, mid-write) and rerun."""

import csv
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import efficientnet_tf  # noqa: F401  (registers the layers model.keras holds)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Everything random is on: shuffling, crops, flips, RandAugment, Mixup and CutMix from stage 2,
# dropout, stochastic depth and EMA. 6 training and 10 evaluation steps per epoch.
ARGS = [
    "--model=efficientnetv2-b0", "--model.width=0.5", "--model.depth=0.3", "--batch_size=16", "--epochs=4",
    "--data.synthetic_train=96", "--data.synthetic_eval=160", "--data.image_size=32", "--data.eval_size=32",
    "--progressive.stages=4", "--progressive.min_image_size=16", "--data.mixup_alpha=0.2", "--data.cutmix_alpha=0.2",
    "--train.ema_decay=0.9", "--train.deterministic=true",
]  # fmt: skip
TIMING_COLUMNS = ("images_per_sec", "train_seconds")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}

# Runs train.py unchanged in a process that SIGKILLs itself at the moment KILL_AT names, so each
# kill lands where it is meant to on any machine (watching the output from outside missed short
# moments: Keras prints progress at most every 50 ms, and a checkpoint write takes milliseconds).
# "train:E:B" / "test:E:B": after batch B of epoch E's training / evaluation (0-based);
# "checkpoint": in the first checkpoint write, with the temporary file cut to half its bytes.
KILLING_TRAIN_PY = """
import os, runpy, signal, sys
import keras

kind, *at = os.environ["KILL_AT"].split(":")
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if kind == "checkpoint":
    replace = os.replace
    def torn_replace(source, target):
        name = os.path.basename(source)
        if name.startswith(".tmp-") and name.endswith(".npz"):
            with open(source, "r+b") as file:
                file.truncate(os.path.getsize(source) // 2)
            die()
        replace(source, target)
    os.replace = torn_replace
else:
    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if kind == "train" and [self.epoch, batch] == [int(a) for a in at]:
                die()
        def on_test_batch_end(self, batch, logs=None):
            if kind == "test" and [self.epoch, batch] == [int(a) for a in at]:
                die()
    fit = keras.Model.fit
    keras.Model.fit = lambda self, *args, callbacks=(), **kwargs: fit(self, *args, callbacks=[*callbacks, Kill()], **kwargs)
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def read_log(run):
    with open(os.path.join(run, "log.csv")) as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def final_weights(run):
    return keras.models.load_model(os.path.join(run, "model.keras")).get_weights()


def train(run, log_path, kill_at=None):
    """Runs the command to the end, or until it kills itself at `kill_at`; returns the exit status."""
    command = [sys.executable, "train.py"] if kill_at is None else [sys.executable, "-c", KILLING_TRAIN_PY]
    with open(log_path, "a") as log:
        process = subprocess.run([*command, *ARGS, f"--model_dir={run}"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                 env={**ENV, "KILL_AT": kill_at or ""}, timeout=600)  # fmt: skip
    return process.returncode


@pytest.mark.slow
def test_sigkill_at_any_moment_then_rerun_gives_the_uninterrupted_weights(tmp_path):
    reference = str(tmp_path / "reference")
    assert train(reference, tmp_path / "reference.log") == 0, (tmp_path / "reference.log").read_text()[-3000:]

    run, log = str(tmp_path / "killed"), tmp_path / "killed.log"
    # Mid-step in epoch 2, mid-evaluation in epoch 3, then in the write of epoch 3's checkpoint.
    for kill_at in ("train:1:2", "test:2:4", "checkpoint"):
        assert train(run, log, kill_at) == -signal.SIGKILL, f"{kill_at} was never reached:\n{log.read_text()[-3000:]}"
    assert any(name.startswith(".tmp-") for name in os.listdir(run)), "the torn checkpoint was left for the rerun"
    assert train(run, log) == 0, log.read_text()[-3000:]

    output = log.read_text()
    assert output.count("Checkpointer: resumed from") == 3
    assert read_log(run) == read_log(reference)  # every epoch once, the same losses and accuracies
    for ours, theirs in zip(final_weights(run), final_weights(reference)):
        np.testing.assert_array_equal(ours, theirs)
