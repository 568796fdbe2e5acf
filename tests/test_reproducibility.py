"""Deterministic training as a user runs it: the same `train.py` command gives bit-identical
weights, also when it is killed at any moment (mid-step, mid-evaluation, mid-write) and rerun."""

import os
import signal

import numpy as np
import pytest
from signalled_train import final_weights, read_log, run_train

# Everything random is on: shuffling, crops, flips, RandAugment, Mixup and CutMix from stage 2,
# dropout, stochastic depth and EMA. 6 training and 10 evaluation steps per epoch.
ARGS = [
    "--model=efficientnetv2-b0", "--model.width=0.5", "--model.depth=0.3", "--batch_size=16", "--epochs=4",
    "--data.synthetic_train=96", "--data.synthetic_eval=160", "--data.image_size=32", "--data.eval_size=32",
    "--progressive.stages=4", "--progressive.min_image_size=16", "--data.mixup_alpha=0.2", "--data.cutmix_alpha=0.2",
    "--train.ema_decay=0.9", "--train.deterministic=true",
]  # fmt: skip


def train(run, log_path, kill_at=None):
    """Runs the command to the end, or until it SIGKILLs itself at `kill_at` (see signalled_train); returns the exit status."""
    return run_train(ARGS, run, log_path, at=kill_at)


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
