"""Runs `train.py` unchanged in a process that signals itself at an exact moment.

Each signal then lands where it is meant to on any machine (watching the
output from outside missed short moments: Keras prints progress at most every
50 ms, and a checkpoint write takes milliseconds). `at` names the moment:
"train:E:B" / "test:E:B": after batch B of epoch E's training / evaluation
(0-based, as Keras counts them in this process); "checkpoint": in the first
checkpoint write, before its rename. SIGKILL there also cuts the temporary
file to half its bytes; SIGTERM lets the write go on. The process prints
`signalled: SIGNAME at <time.time()>` just before it sends the signal.
"""

import csv
import os
import subprocess
import sys

import keras

import efficientnet_tf  # noqa: F401  (registers the layers model.keras holds)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING_COLUMNS = ("images_per_sec", "train_seconds")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "PYTHONPATH": REPO}

PRELUDE = """
import os, runpy, signal, sys, time
import keras

kind, *at = os.environ["SIGNAL_AT"].split(":")
number = getattr(signal, os.environ["SIGNAL"])

def send():
    print(f"\\nsignalled: {number.name} at {time.time()}", flush=True)
    os.kill(os.getpid(), number)

if kind == "checkpoint":
    replace, sent = os.replace, []
    def replace_after_signal(source, target):
        name = os.path.basename(source)
        if name.startswith(".tmp-") and name.endswith(".npz") and not sent:
            sent.append(True)
            if number == signal.SIGKILL:
                with open(source, "r+b") as file:
                    file.truncate(os.path.getsize(source) // 2)
            send()
        replace(source, target)
    os.replace = replace_after_signal
else:
    class Signal(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if kind == "train" and [self.epoch, batch] == [int(a) for a in at]:
                send()
        def on_test_batch_end(self, batch, logs=None):
            if kind == "test" and [self.epoch, batch] == [int(a) for a in at]:
                send()
    fit = keras.Model.fit
    keras.Model.fit = lambda self, *args, callbacks=(), **kwargs: fit(self, *args, callbacks=[*callbacks, Signal()], **kwargs)
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def run_train(args, run, log_path, at=None, signal="SIGKILL"):
    """Runs train.py with `args` into `run` (to the end, or signalled `at`); returns the exit status.

    stdout and stderr are appended to `log_path`.
    """
    command = [sys.executable, "train.py"] if at is None else [sys.executable, "-c", PRELUDE]
    with open(log_path, "a") as log:
        process = subprocess.run([*command, *args, f"--model_dir={run}"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                 env={**ENV, "SIGNAL_AT": at or "", "SIGNAL": signal}, timeout=600)  # fmt: skip
    return process.returncode


def read_log(run):
    """log.csv's rows without the timing columns, which differ between runs."""
    with open(os.path.join(run, "log.csv")) as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def final_weights(run):
    return keras.models.load_model(os.path.join(run, "model.keras")).get_weights()
