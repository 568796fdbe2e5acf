"""The models on JAX and PyTorch give TensorFlow's outputs from the same files, and import without TensorFlow.

TensorFlow (this process) writes random TINY weights for every constructor,
a `.keras` file and a keras.applications `.h5` file; tests/backend_child.py
loads them on another backend in a child process (one per backend, all 23
models in it) and writes its outputs back. Float32 throughout; the bound is
relative to the largest output, as float32 kernels differ between backends.
"""

import os
import re
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

import efficientnet_tf
from harness import TINY, images, perturb_statistics
from keras_reference import randomized_application

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32
RTOL = 1e-4
BACKENDS = ("jax", "torch")
CONSTRUCTORS = sorted(name for name in dir(efficientnet_tf) if name.startswith("EfficientNet"))
# Compile time dominates on JAX's CPU backend; unoptimized XLA code is fast enough at 32 px.
FAST_JAX = {"XLA_FLAGS": "--xla_backend_optimization_level=0", "JAX_THREEFRY_PARTITIONABLE": "0"}


def run_child(backend, directory):
    env = {**os.environ, **FAST_JAX, "KERAS_BACKEND": backend, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, os.path.join(REPO, "tests", "backend_child.py"), str(directory)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def assert_close(actual, expected, what):
    error = np.abs(np.asarray(actual) - expected).max() / max(np.abs(expected).max(), 1e-6)
    assert error <= RTOL, f"{what}: relative difference {error:.2e}"


def _training_outputs(directory, x):
    model = efficientnet_tf.EfficientNetV2B0(
        weights=str(directory / "EfficientNetV2B0.weights.h5"), input_shape=x.shape[1:], classifier_activation=None,
        dropout_rate=0.0, survival_prob=1.0, **TINY,
    )
    outputs = {"train/logits": model(x, training=True).numpy()}
    outputs.update({f"train/{weight.path}": weight.numpy() for weight in model.non_trainable_weights})
    return outputs


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The files the children read, and TensorFlow's outputs on them."""
    directory = tmp_path_factory.mktemp("backends")
    x = images(n=4, size=SIZE)
    np.save(directory / "images.npy", x)
    (directory / "model.ckpt-1.index").write_bytes(b"")  # an official checkpoint, as far as its name goes
    expected = {}
    for constructor in CONSTRUCTORS:
        model = getattr(efficientnet_tf, constructor)(input_shape=x.shape[1:], classifier_activation=None, **TINY)
        perturb_statistics(model)
        model.save_weights(directory / f"{constructor}.weights.h5")
        expected[f"logits/{constructor}"] = model(x, training=False).numpy()
        if constructor == "EfficientNetV2B0":
            model.save(directory / "tensorflow.keras")
        if constructor == "EfficientNetV2S":
            backbone = efficientnet_tf.features_model(model)
            expected.update({f"features/{key}": value.numpy() for key, value in backbone(x, training=False).items()})
        keras.backend.clear_session()
    expected.update(_training_outputs(directory, x))
    applications = randomized_application("EfficientNetB0", x.shape[1:])
    with h5py.File(directory / "efficientnetb0.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, applications)
    expected["applications/logits"] = applications(x, training=False).numpy()
    return directory, x, expected


@pytest.fixture(scope="module", params=BACKENDS)
def child(request, written):
    """What the child process on one backend computed from the written files, and what it printed."""
    directory, _, _ = written
    printed = run_child(request.param, directory)
    return request.param, dict(np.load(directory / f"{request.param}.npz")), printed


def test_every_constructor_gives_tensorflows_logits(child, written):
    backend, outputs, _ = child
    _, _, expected = written
    for constructor in CONSTRUCTORS:
        assert_close(outputs[f"logits/{constructor}"], expected[f"logits/{constructor}"], f"{backend} {constructor}")


def test_features_only_backbone_gives_tensorflows_feature_maps(child, written):
    backend, outputs, _ = child
    _, _, expected = written
    for key in (f"reduction_{i}" for i in range(1, 6)):
        assert_close(outputs[f"features/{key}"], expected[f"features/{key}"], f"{backend} {key}")


def test_training_mode_normalizes_and_updates_statistics_as_tensorflow(child, written):
    """Batch statistics in the forward pass, and the moving mean and (unbiased) variance they move to."""
    backend, outputs, _ = child
    _, _, expected = written
    keys = [key for key in expected if key.startswith("train/")]
    assert len(keys) > 20 and any(key.endswith("moving_variance") for key in keys)
    for key in keys:
        assert_close(outputs[key], expected[key], f"{backend} {key}")


def test_keras_file_moves_between_backends(child, written):
    backend, outputs, _ = child
    directory, x, expected = written
    assert_close(outputs["keras_file/logits"], expected["logits/EfficientNetV2B0"], f"{backend} loads tensorflow.keras")
    restored = keras.models.load_model(directory / f"{backend}.keras")
    assert_close(restored(x, training=False).numpy(), expected["logits/EfficientNetV2B0"], f"tensorflow loads {backend}.keras")


def test_keras_applications_file_gives_keras_logits(child, written):
    backend, outputs, _ = child
    if backend != "torch":
        pytest.skip("the full-size keras.applications model is built on torch (its loader is NumPy on every backend)")
    _, _, expected = written
    assert_close(outputs["applications/logits"], expected["applications/logits"], f"{backend} efficientnetb0.h5")


def test_fit_on_jax_lowers_the_loss(child):
    backend, outputs, _ = child
    if backend != "jax":
        pytest.skip("the fit check runs on JAX")
    loss = outputs["fit/loss"]
    assert np.isfinite(loss).all() and loss[-1] < loss[0], loss


def test_model_runs_without_tensorflow_and_training_says_what_to_install(child):
    """The children refuse `import tensorflow`: the models above ran; training and official checkpoints say one line."""
    _, _, printed = child
    for name in ("load_trained", "ExponentialMovingAverage"):
        line = re.search(rf"^{name}: (.*)$", printed, re.M)
        assert line and "efficientnet_tf.training needs TensorFlow" in line[1] and "pip install tensorflow" in line[1], printed
    line = re.search(r"^official checkpoint: (.*)$", printed, re.M)
    assert line and "TensorFlow's checkpoint reader" in line[1] and "pip install tensorflow" in line[1], printed
