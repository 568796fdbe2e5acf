"""benchmarks/bench_gpu_jax.py runs end to end on JAX's CPU backend (--smoke), so its GPU run is one command that works.

It runs with `import tensorflow` refused, as on a GPU machine that has JAX but no TensorFlow.
"""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # compiles two train steps and two forward passes of a quarter-width b0 on JAX's CPU backend: 50 s CPU
def test_smoke_run_prints_the_device_and_both_rows():
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join([REPO, os.path.join(REPO, "tests")]), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_backend_optimization_level=0", "JAX_THREEFRY_PARTITIONABLE": "0"}  # fmt: skip
    run = ("import runpy, sys; from backend_child import refuse_tensorflow; refuse_tensorflow(); "
           "sys.argv = ['bench_gpu_jax.py', '--smoke']; runpy.run_path('benchmarks/bench_gpu_jax.py', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", run], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^JAX [\d.]+ on CPU \(cpu, 1 device\(s\)\), Keras [\d.]+ \(jax\), Python 3", out, re.M), out
    for mode, policy in (("train", "mixed_bfloat16"), ("infer", "float32")):
        row = re.search(rf"^\| efficientnet-b0 \| 32 \| {mode} \| 2 \| {policy} \| (\d+) \| (\d+) \| [\d.]+ \| \d+ / \d+ \|$", out, re.M)
        assert row and int(row[1]) > 0 and int(row[2]) > 0, out
