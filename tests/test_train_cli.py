"""`train.py` as a user runs it: one-line errors, a real run, and resume after SIGKILL."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A small V2-B0 on a small built-in dataset: seconds per epoch on 2 cores.
TINY = [
    "--model=efficientnetv2-b0", "--model.width=0.5", "--model.depth=0.3", "--batch_size=16",
    "--data.synthetic_train=96", "--data.synthetic_eval=32", "--data.image_size=32", "--data.eval_size=32",
    "--progressive.min_image_size=16",
]  # fmt: skip


def train(*args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def error_line(result):
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=efficientnetv2-q"], "Unknown model name 'efficientnetv2-q'. Did you mean efficientnetv2-"),
        (["--optimizer.lr=0.1"], "Did you mean optimizer.lr_per_256"),
        (["--train.epochs=many"], "'train.epochs' takes an integer"),
        (["--dataset=mnist", "--data_dir={tmp}/tfds"], "is not prepared"),
        (["--model_dir=/proc/forbidden"], "is not writable"),
        (["--model_dir=foo://bucket/run"], "model_dir 'foo://bucket/run': TensorFlow has no filesystem for foo://"),
        (["--batch_size=512", "--data.synthetic_train=64"],
         "batch_size 512 is larger than the 64 training examples of 'synthetic10', so an epoch would have no batch; "
         "pass --batch_size=64 or smaller."),
        (["--model=efficientnetv2-b0", "--init_weights=noisy-student"], "Pass one of those, --init_weights=none or a"),
        (["--bogus=1"], "Unknown command line flag 'bogus'; `python train.py --help` lists the flags."),
        (["--train.sync_batchnorm=maybe"], "'train.sync_batchnorm' takes true or false, got 'maybe'"),
        (["--strategy=tpu", "--tpu=local"], "strategy tpu: no TPU reachable at 'local' (NotFoundError"),
        (["--strategy=multi_worker"], "strategy multi_worker needs the cluster in TF_CONFIG, e.g. TF_CONFIG="),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    if not any(a.startswith("--model_dir") for a in args):
        args.append(f"--model_dir={tmp_path / 'run'}")
    assert message in error_line(train(*args, "--data.synthetic_eval=16"))


def test_eval_of_an_empty_directory_writes_nothing(tmp_path):
    run = tmp_path / "nothing"
    assert "has no checkpoint to evaluate" in error_line(train("--mode=eval", f"--model_dir={run}"))
    assert not run.exists()


@pytest.mark.slow
def test_a_directory_refuses_a_different_config(tmp_path):
    run = str(tmp_path / "run")
    assert train(*TINY, "--epochs=1", "--progressive.stages=1", f"--model_dir={run}").returncode == 0
    line = error_line(train(*TINY, "--epochs=1", "--progressive.stages=1", "--train.label_smoothing=0.2", f"--model_dir={run}"))
    assert "train.label_smoothing: 0.1 -> 0.2" in line and "--allow_config_change" in line


@pytest.mark.slow
def test_a_failed_start_writes_nothing_and_the_suggested_fix_then_runs_one_plain_line_per_epoch(tmp_path):
    run = tmp_path / "run"
    tiny = [a for a in TINY if not a.startswith("--batch_size")]
    line = error_line(train(*tiny, "--batch_size=512", "--epochs=2", "--progressive.stages=2", f"--model_dir={run}"))
    assert not run.exists()  # no config.json that would refuse the corrected command as "another config"
    suggested = line.rsplit("--batch_size=", 1)[1].split()[0]
    assert int(suggested) <= 96  # the reason: batch_size 512 is larger than the 96 training examples
    result = train(*tiny, f"--batch_size={suggested}", "--epochs=2", "--progressive.stages=2", f"--model_dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    # stdout is a pipe here, as under nohup, Slurm or CI: no progress bar, one plain line per epoch
    # besides the stage and checkpoint lines.
    assert not any(code in result.stdout for code in ("\x1b[", "\b", "\r")), result.stdout[-2000:]
    after_config = result.stdout.split("\n}\n", 1)[1].splitlines()
    assert [line.split(":")[0] for line in after_config if not line.startswith(("Stage ", "Checkpointer: "))] == [
        "Epoch 1/2", "Epoch 2/2", "efficientnetv2-b0 on synthetic10"], result.stdout[-3000:]
    epochs = [line for line in after_config if line.startswith("Epoch ")]
    assert all("val_top1" in line and "top5" in line for line in epochs)  # 10 classes: top-5 is reported
    assert "top-5" in after_config[-1]


def read_log(run):
    with open(os.path.join(run, "log.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sigkill_then_the_same_command_resumes_and_logs_each_epoch_once(tmp_path):
    run = str(tmp_path / "run")
    args = [*TINY, "--epochs=4", "--progressive.stages=4", f"--model_dir={run}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        while not os.path.exists(os.path.join(run, "ckpt-00002.npz")) and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # mid-epoch 3 (or while writing its checkpoint)
        first.wait()
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-2000:]
    done = sorted(f for f in os.listdir(run) if f.startswith("ckpt-") and f.endswith(".npz"))
    resumed_after = int(done[-1][5:10])
    assert 2 <= resumed_after < 4

    second = train(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed from {os.path.join(run, done[-1])} after epoch {resumed_after}" in second.stdout
    assert f"Epoch {resumed_after + 1}/4" in second.stdout and f"Epoch {resumed_after}/4" not in second.stdout
    first_stage = next(line for line in second.stdout.splitlines() if line.startswith("Stage "))
    assert first_stage.startswith(f"Stage {resumed_after + 1}/4 from epoch {resumed_after + 1}")  # one stage per epoch
    rows = read_log(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["image_size"]) for r in rows] == [16, 21, 27, 32]
    assert not [f for f in os.listdir(run) if f.startswith(".tmp-")]
    assert os.path.exists(os.path.join(run, "model.keras")) and os.path.exists(os.path.join(run, "history.png"))
    assert "top-1" in second.stdout.splitlines()[-1]
