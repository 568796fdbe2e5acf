"""Deterministic training as a user runs it: the same `train.py` command gives bit-identical
weights, also when it is killed at any moment (mid-step, mid-evaluation, mid-write) and rerun."""

import csv
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import efficientnet_tf  # noqa: F401  (registers the layers model.keras holds)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Everything random is on: shuffling, crops, flips, RandAugment, Mixup and CutMix from stage 2,
# dropout, stochastic depth and EMA. 6 steps per epoch; a long evaluation leaves room to kill in it.
ARGS = [
    "--model=efficientnetv2-b0", "--model.width=0.5", "--model.depth=0.3", "--batch_size=16", "--epochs=4",
    "--data.synthetic_train=96", "--data.synthetic_eval=160", "--data.image_size=32", "--data.eval_size=32",
    "--progressive.stages=4", "--progressive.min_image_size=16", "--data.mixup_alpha=0.2", "--data.cutmix_alpha=0.2",
    "--train.ema_decay=0.9", "--train.deterministic=true",
]  # fmt: skip
TIMING_COLUMNS = ("images_per_sec", "train_seconds")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def read_log(run):
    with open(os.path.join(run, "log.csv")) as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def final_weights(run):
    return keras.models.load_model(os.path.join(run, "model.keras")).get_weights()


def run_until(run, log_path, kill_when):
    """Start the command; SIGKILL it as soon as `kill_when(output, files)` holds (or let it finish)."""
    with open(log_path, "a") as log:
        process = subprocess.Popen([sys.executable, "train.py", *ARGS, f"--model_dir={run}"], cwd=REPO, env=ENV,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.time() + 300
        while process.poll() is None and time.time() < deadline:
            files = os.listdir(run) if os.path.isdir(run) else []
            if kill_when(open(log_path, errors="replace").read(), files):
                process.send_signal(signal.SIGKILL)
                process.wait()
                return files
            time.sleep(0.002)
        process.wait(timeout=max(1, deadline - time.time()))
    assert process.returncode == 0, open(log_path).read()[-3000:]
    return None


def epoch_output(output, epoch):
    """What the newest process printed since it started `epoch` (1-based); None before that."""
    start = output.rfind(f"Epoch {epoch}/4")
    return None if start < 0 or output.rfind("resumed from") > start else output[start:]


def in_training_steps(epoch):
    return lambda output, files: (out := epoch_output(output, epoch)) is not None and "2/6" in out and "6/6" not in out


def in_evaluation(epoch):
    # 6/6 is printed when the last training step ends; val_loss once evaluation is over.
    return lambda output, files: (out := epoch_output(output, epoch)) is not None and "6/6" in out and "val_loss" not in out


def writing_checkpoint(output, files):
    return any(f.startswith(".tmp-") and f.endswith(".npz") for f in files)


@pytest.mark.slow
def test_sigkill_at_any_moment_then_rerun_gives_the_uninterrupted_weights(tmp_path):
    reference = str(tmp_path / "reference")
    run_until(reference, tmp_path / "reference.log", lambda output, files: False)

    run, log = str(tmp_path / "killed"), tmp_path / "killed.log"
    seen = [run_until(run, log, when) for when in (in_training_steps(2), in_evaluation(3), writing_checkpoint)]
    assert all(files is not None for files in seen), "a kill point was never reached"
    run_until(run, log, lambda output, files: False)

    output = log.read_text()
    assert output.count("Checkpointer: resumed from") == 3
    assert read_log(run) == read_log(reference)  # every epoch once, the same losses and accuracies
    for ours, theirs in zip(final_weights(run), final_weights(reference)):
        np.testing.assert_array_equal(ours, theirs)
