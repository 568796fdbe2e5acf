"""benchmarks/bench_gpu.py runs end to end on a CPU (--smoke), so its first GPU run is one command that works."""

import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # traces two efficientnet-b0 train steps on the CPU: 110 s on a shared 2-core machine
def test_smoke_run_prints_the_environment_the_pipeline_and_the_table():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "benchmarks/bench_gpu.py", "--smoke"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert f"TensorFlow {tf.__version__}, Keras " in out and "; no GPU; CPU " in out and " cores, " in out
    assert re.search(r"^input pipeline: \d+ img/s on \d+ cores, \d+ img/s per core \(64-px JPEGs -> 48 px", out, re.M)
    assert "| model | px | batch | precision | XLA | ours img/s | keras img/s | ours/keras | ours peak GiB |" in out
    row = re.search(r"^\| efficientnet-b0 \| 32 \| 2 \| mixed_float16 \| off \| (\d+) \| (\d+) \| [\d.]+ \| n/a \| n/a \|", out,
                    re.M)  # fmt: skip
    assert row and int(row[1]) > 0 and int(row[2]) > 0
    assert re.search(r"^ours/keras: [\d.]+x to [\d.]+x \(target >= 1.15x\); .* takes about [\d.]+ host cores", out, re.M)
