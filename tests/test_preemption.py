"""Preemptible machines: SIGTERM saves at the next step boundary and exits 143 with one line; the
rerun of the same command resumes mid-epoch at that step, and the run ends bit for bit where an
uninterrupted one does. `train.checkpoint_every_steps` bounds what a SIGKILL loses the same way."""

import os
import re
import signal
import time

import numpy as np
import pytest
import tensorflow as tf
from signalled_train import final_weights, read_log, run_train

from efficientnet_tf.data import make_datasets, synthetic_source
from efficientnet_tf.training import Checkpointer
from efficientnet_tf.training.preemption import SigtermListener

# 2 epochs of 6 training and 8 evaluation steps; progressive learning changes the stage at epoch 2;
# crops, flips, Mixup, CutMix, dropout, stochastic depth and EMA are on. A mid-epoch checkpoint
# every 4 steps (the reference run writes them too, so the configs match).
ARGS = [
    "--model=efficientnetv2-b0", "--model.width=0.25", "--model.depth=0.2", "--batch_size=8", "--epochs=2",
    "--data.synthetic_train=48", "--data.synthetic_eval=64", "--data.image_size=16", "--data.eval_size=16",
    "--progressive.stages=2", "--progressive.min_image_size=8", "--data.mixup_alpha=0.2", "--data.cutmix_alpha=0.2",
    "--train.ema_decay=0.9", "--train.deterministic=true", "--train.checkpoint_every_steps=4",
]  # fmt: skip
PREEMPTED = re.compile(r"train\.py: preempted \(SIGTERM\) at epoch (\d+) step (\d+); saved (\S+); "
                       r"rerun the same command to resume\.$", re.M)  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = str(tmp_path_factory.mktemp("reference") / "run")
    log = tmp_path_factory.getbasetemp() / "reference.log"
    assert run_train(ARGS, run, log) == 0, log.read_text()[-3000:]
    return run


def preempt(run, log, at):
    """Runs the command until it sends itself SIGTERM `at`; returns (epoch, step, saved path) from its one line."""
    status = run_train(ARGS, run, log, at=at, signal="SIGTERM")
    ended = time.time()
    output = log.read_text()
    assert status == 143, f"{at}: exit status {status}\n{output[-3000:]}"
    sent = float(re.search(r"signalled: SIGTERM at ([\d.]+)$", output, re.M).group(1))
    assert ended - sent < 30
    lines = PREEMPTED.findall(output)
    assert len(lines) == 1, output[-3000:]
    epoch, step, saved = lines[0]
    assert os.path.isfile(saved)
    return int(epoch), int(step), os.path.basename(saved)


@pytest.mark.slow
def test_sigterm_at_any_moment_then_rerun_resumes_there_bit_for_bit(reference, tmp_path):
    run = str(tmp_path / "run")

    # In epoch 1's evaluation: it is abandoned, and the finished training epoch saved at its last step.
    assert preempt(run, tmp_path / "1.log", "test:0:3") == (1, 6, "ckpt-00000-00006.npz")
    # In the write of epoch 1's checkpoint, on the rerun (which evaluates epoch 1 first): the write is finished.
    assert preempt(run, tmp_path / "2.log", "checkpoint") == (1, 6, "ckpt-00001.npz")
    assert "Checkpointer: resumed from" in (tmp_path / "2.log").read_text()
    assert f"resumed from {run}/ckpt-00000-00006.npz at epoch 1 step 6." in (tmp_path / "2.log").read_text()
    # Mid-step: sent after epoch 2's first batch, it is seen after the second.
    assert preempt(run, tmp_path / "3.log", "train:1:0") == (2, 2, "ckpt-00001-00002.npz")
    assert f"resumed from {run}/ckpt-00001.npz after epoch 1." in (tmp_path / "3.log").read_text()
    assert sorted(name for name in os.listdir(run) if name.endswith(".npz")) == ["ckpt-00001-00002.npz", "ckpt-00001.npz"]

    # SIGKILL at step 5 (the third batch of this process): the mid-epoch checkpoint of step 4 is what is left.
    assert run_train(ARGS, run, tmp_path / "4.log", at="train:1:2") == -signal.SIGKILL
    assert f"resumed from {run}/ckpt-00001-00002.npz at epoch 2 step 2." in (tmp_path / "4.log").read_text()
    assert sorted(name for name in os.listdir(run) if name.endswith(".npz")) == ["ckpt-00001-00004.npz", "ckpt-00001.npz"]

    assert run_train(ARGS, run, tmp_path / "5.log") == 0, (tmp_path / "5.log").read_text()[-3000:]
    assert f"resumed from {run}/ckpt-00001-00004.npz at epoch 2 step 4." in (tmp_path / "5.log").read_text()
    assert sorted(name for name in os.listdir(run) if name.endswith(".npz")) == ["ckpt-00001.npz", "ckpt-00002.npz"]
    assert read_log(run) == read_log(reference)  # each epoch once, its metrics over all its steps
    for ours, theirs in zip(final_weights(run), final_weights(reference), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("replicas", [1, 2])
def test_resumed_pass_continues_with_the_batches_of_the_full_pass(replicas):
    source = synthetic_source(num_classes=4, resolution=32, train_size=48, eval_size=8, seed=0)
    # Two replicas fed by one input pipeline (MirroredStrategy): a step takes two per-replica batches,
    # and `resume_at` counts steps.
    context = tf.distribute.InputContext(num_input_pipelines=1, num_replicas_in_sync=replicas) if replicas > 1 else None
    # Mixup and CutMix draw per batch: the resumed batches keep their numbers in the pass.
    train, _, info = make_datasets(source, family="efficientnetv2", image_size=24, batch_size=8, augmentation=None,
                                   mixup_alpha=0.2, cutmix_alpha=0.2, seed=3, input_context=context)  # fmt: skip
    full = [images.numpy() for images, _ in train]
    following = [images.numpy() for images, _ in train]
    assert len(full) == 6 * replicas  # 6 steps of 8 images
    for first in (4, 6):  # mid-pass, and after its last step (an epoch preempted in its evaluation)
        info.state.epoch.assign(0)
        info.state.resume_at(first)
        rest = [images.numpy() for images, _ in train]
        assert len(rest) == len(full) - first * replicas
        for ours, theirs in zip(rest, full[first * replicas:]):
            np.testing.assert_array_equal(ours, theirs)
        # The next pass is whole and the same as without the resume.
        after = [images.numpy() for images, _ in train]
        assert len(after) == len(following)
        for ours, theirs in zip(after, following):
            np.testing.assert_array_equal(ours, theirs)


def test_mid_epoch_checkpoints_need_the_data_state(tmp_path):
    with pytest.raises(ValueError, match="data= the train dataset's AugmentState"):
        Checkpointer(str(tmp_path), every_steps=100)


def test_sigterm_listener_records_one_signal_and_passes_a_second_on():
    calls = []

    def record(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, record)
    try:
        listener = SigtermListener()
        signal.raise_signal(signal.SIGTERM)
        assert listener.received and calls == []
        signal.raise_signal(signal.SIGTERM)  # a run that no longer reaches a step boundary still stops
        assert calls == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is record  # the previous handler is back
        listener.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
