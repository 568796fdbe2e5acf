"""A real 2-process MultiWorkerMirroredStrategy run on localhost: a worker killed mid-run,
the survivor's one-line exit, and the restart that resumes, crosses a progressive stage and
ends with identical weights on both workers while only the chief wrote the model directory."""

import csv
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # two processes each

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny V2-B0, 2 epochs in 2 progressive stages (16 px, then 32 px), global batch 16,
# synchronized BatchNorm (else each worker keeps the moving statistics of its own batches).
OVERRIDES = {
    "model.width": "0.25", "model.depth": "0.1", "data.batch_size": "16", "data.synthetic_train": "64",
    "data.synthetic_eval": "16", "data.image_size": "32", "data.eval_size": "32", "progressive.min_image_size": "16",
    "train.epochs": "2", "progressive.stages": "2", "optimizer.warmup_epochs": "1", "train.sync_batchnorm": "true",
}  # fmt: skip
# trainer.run as train.py calls it, keeping the final weights for the comparison.
WORKER = """
import os, sys
import numpy as np
sys.path.insert(0, {repo!r})
import configs
from efficientnet_tf.training import trainer
config = configs.recipe("efficientnetv2-b0", "synthetic", "paper", {overrides!r})
result = trainer.run(config, {model_dir!r}, mode="train", strategy="multi_worker", startup_timeout=60)
np.savez(sys.argv[1], *[w.numpy() for w in result["model"].weights])
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(tmp_path, name, command):
    """Two processes of `command(index)`, each in its own session with its own TMPDIR."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        tmpdir = tmp_path / f"tmp{index}"
        tmpdir.mkdir(exist_ok=True)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmpdir),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}  # fmt: skip
        log = open(tmp_path / f"{name}{index}.log", "w")
        workers.append((subprocess.Popen(command(index), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True), log))  # fmt: skip
    return workers


def wait(workers, deadline):
    """Return codes; any process still running at `deadline` is SIGKILLed with its group and fails the test."""
    codes = []
    for process, log in workers:
        try:
            codes.append(process.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            codes.append("timeout")
        log.close()
    return codes


def kill_all(workers):
    for process, _ in workers:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_lost_worker_then_restart_resumes_with_identical_weights_and_chief_only_writes(tmp_path):
    model_dir = str(tmp_path / "run")
    flags = [f"--{key}={value}" for key, value in OVERRIDES.items()]
    train = [sys.executable, "train.py", "--model=efficientnetv2-b0", "--strategy=multi_worker", "--mode=train",
             f"--model_dir={model_dir}", "--startup_timeout=60", *flags]  # fmt: skip
    first = start_workers(tmp_path, "first", lambda index: train)
    try:
        start = time.monotonic()
        while not os.path.exists(os.path.join(model_dir, "ckpt-00001.npz")):
            assert time.monotonic() - start < 240, "the chief wrote no checkpoint in 240 s"
            assert all(p.poll() is None for p, _ in first), (tmp_path / "first0.log").read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(first[1][0].pid, signal.SIGKILL)
        killed = time.monotonic()
        codes = wait(first, killed + 90)
    finally:
        kill_all(first)
    chief_log = (tmp_path / "first0.log").read_text()
    assert codes[0] == 2, chief_log[-3000:]
    errors = [line for line in chief_log.splitlines() if line.startswith("train.py: error:")]
    assert len(errors) == 1 and "a peer worker stopped answering" in errors[0], chief_log[-3000:]
    assert "resume from the last finished epoch" in errors[0] and "Traceback" not in chief_log

    script = WORKER.format(repo=REPO, overrides=OVERRIDES, model_dir=model_dir)
    second = start_workers(tmp_path, "second", lambda index: [sys.executable, "-c", script, str(tmp_path / f"w{index}.npz")])
    try:
        codes = wait(second, time.monotonic() + 240)
    finally:
        kill_all(second)
    logs = [(tmp_path / f"second{index}.log").read_text() for index in range(2)]
    assert codes == [0, 0], "\n=====\n".join(log[-3000:] for log in logs)
    for log in logs:  # both resumed from the chief's checkpoint of epoch 1 and trained epoch 2, the next stage, only
        assert f"Checkpointer: resumed from {model_dir}/ckpt-00001.npz after epoch 1." in log
        assert "Epoch 1/2" not in log and "Epoch 2/2" in log and "Stage 2/2 from epoch 2: image 32 px" in log
    weights = [np.load(tmp_path / f"w{index}.npz") for index in range(2)]
    assert len(weights[0].files) > 50
    for key in weights[0].files:
        np.testing.assert_array_equal(weights[0][key], weights[1][key], err_msg=key)

    # The chief wrote the model directory; the other worker wrote into a temporary directory, now gone.
    with open(os.path.join(model_dir, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert [float(r["image_size"]) for r in rows] == [16, 32]
    checkpoints = sorted(os.path.basename(p) for p in glob.glob(os.path.join(model_dir, "ckpt-*")))
    assert checkpoints == ["ckpt-00001.npz", "ckpt-00002.npz"]
    assert os.path.exists(os.path.join(model_dir, "model.keras"))
    saved = [line.split("Checkpointer: saved ")[1] for line in logs[1].splitlines() if "Checkpointer: saved " in line]
    worker_dirs = {os.path.dirname(path) for path in saved}
    assert len(worker_dirs) == 1
    worker_dir = worker_dirs.pop()
    assert worker_dir.startswith(str(tmp_path / "tmp1")) and not os.path.exists(worker_dir)
    assert f"Checkpointer: saved {model_dir}/ckpt-00002.npz" in logs[0] and f"saved {model_dir}" not in logs[1]


def test_a_lone_worker_gives_up_after_the_startup_timeout(tmp_path):
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}  # worker 1 never starts
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": tf_config}
    command = [sys.executable, "train.py", "--strategy=multi_worker", "--startup_timeout=5", f"--model_dir={tmp_path / 'run'}"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr[-3000:]  # killed by the watchdog: TensorFlow ignores SIGTERM there
    assert result.stderr.strip().splitlines()[-1] == (
        "error: strategy multi_worker: worker 0 did not reach its 1 peer(s) in TF_CONFIG within 5 s; "
        "start every task listed there (same command), or raise --startup_timeout."
    )


def test_deterministic_mode_is_refused_under_multi_worker_in_one_line(tmp_path):
    command = lambda index: [sys.executable, "train.py", "--strategy=multi_worker", "--train.deterministic=true",  # noqa: E731
                             "--startup_timeout=60", f"--model_dir={tmp_path / 'run'}"]  # fmt: skip
    workers = start_workers(tmp_path, "worker", command)
    codes = wait(workers, time.monotonic() + 180)
    for index, code in enumerate(codes):
        log = (tmp_path / f"worker{index}.log").read_text()
        assert code == 2, log[-3000:]
        assert log.strip().splitlines()[-1].startswith(
            "train.py: error: train.deterministic=true is not supported with multi-worker training"), log[-3000:]
