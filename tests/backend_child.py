"""The model family on one Keras backend, run by tests/test_backends.py in a child process.

    KERAS_BACKEND=jax python tests/backend_child.py DIR

DIR holds what the TensorFlow parent wrote: one TINY ``.weights.h5`` per
constructor, a ``.keras`` file, a keras.applications ``.h5`` file, the input
images and an empty official-checkpoint index. This process builds every
constructor's model from those files on its own backend and writes what it
computed to ``DIR/<backend>.npz`` (and its own ``.keras`` file), which the
parent compares with TensorFlow's; it prints what the TensorFlow-only parts
say. An import finder refuses ``tensorflow`` first, as if it were not
installed (Keras then skips it too, which also saves its import time).
"""

import argparse
import importlib.abc
import importlib.machinery
import os
import sys


class _Missing(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)

    def exec_module(self, module):
        raise AssertionError("unreachable: create_module refuses")


class _RefuseTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "tensorflow" or fullname.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(fullname, _Missing())
        return None


def refuse_tensorflow() -> None:
    """Makes `import tensorflow` fail with ModuleNotFoundError, as where TensorFlow is not installed.

    The finder answers with a spec (no file) whose loader refuses, rather than
    raising: torch probes with `importlib.util.find_spec` and expects an
    answer, and Keras probes `sys.modules`, which a failed import leaves alone.
    """
    sys.meta_path.insert(0, _RefuseTensorFlow())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    args = parser.parse_args()
    refuse_tensorflow()

    import keras
    import numpy as np

    import efficientnet_tf
    from harness import TINY

    backend = keras.backend.backend()
    out = {}
    x = np.load(os.path.join(args.dir, "images.npy"))
    options = dict(TINY, input_shape=x.shape[1:], classifier_activation=None)

    def numpy(value):
        return keras.ops.convert_to_numpy(value)

    constructors = sorted(name for name in dir(efficientnet_tf) if name.startswith("EfficientNet"))
    for constructor in constructors:
        weights = os.path.join(args.dir, f"{constructor}.weights.h5")
        model = getattr(efficientnet_tf, constructor)(weights=weights, **options)
        out[f"logits/{constructor}"] = numpy(model(x, training=False))
        keras.backend.clear_session()

    backbone = efficientnet_tf.get_model(
        "efficientnetv2-s", weights=os.path.join(args.dir, "EfficientNetV2S.weights.h5"), features_only=True, **TINY
    )
    for key, value in backbone(x, training=False).items():
        out[f"features/{key}"] = numpy(value)

    # Training mode: batch statistics normalize, and the moving statistics move (no dropout, no stochastic depth).
    train_options = dict(options, dropout_rate=0.0, survival_prob=1.0)
    model = efficientnet_tf.EfficientNetV2B0(weights=os.path.join(args.dir, "EfficientNetV2B0.weights.h5"), **train_options)
    out["train/logits"] = numpy(model(x, training=True))
    for weight in model.non_trainable_weights:
        out[f"train/{weight.path}"] = numpy(weight)

    saved = keras.models.load_model(os.path.join(args.dir, "tensorflow.keras"))
    out["keras_file/logits"] = numpy(saved(x, training=False))
    saved.save(os.path.join(args.dir, f"{backend}.keras"))

    if backend == "torch":  # The loader is NumPy and h5py on every backend; a full-size build costs 15 s CPU on JAX.
        applications = efficientnet_tf.get_model(
            "efficientnet-b0", weights=os.path.join(args.dir, "efficientnetb0.h5"), input_shape=x.shape[1:],
            classifier_activation=None,
        )
        out["applications/logits"] = numpy(applications(x, training=False))

    if backend == "jax":  # fit compiles a train step; the loss on a fixed batch goes down.
        model = efficientnet_tf.EfficientNetV2B0(**dict(TINY, input_shape=x.shape[1:], num_classes=4))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        history = model.fit(x, np.arange(len(x)) % 4, batch_size=len(x), epochs=8, verbose=0)
        out["fit/loss"] = np.array(history.history["loss"])

    for name in ("load_trained", "ExponentialMovingAverage"):
        try:
            getattr(efficientnet_tf, name)
        except ImportError as error:
            print(f"{name}: {error}")
    try:
        efficientnet_tf.get_model("efficientnetv2-b0", weights=os.path.join(args.dir, "model.ckpt-1"), **options)
    except ImportError as error:
        print(f"official checkpoint: {error}")
    np.savez(os.path.join(args.dir, f"{backend}.npz"), **out)


if __name__ == "__main__":
    main()
