"""The checks every EfficientNet model and layer must pass, in one place.

After keras-hub's `TestCase.run_backbone_test` / `run_model_saving_test`:
`run_backbone_test(name, tmp_path, ...)` builds one model and runs the
per-model checks on it (name, output, precision, training, `.keras` and
`.weights.h5` round trips, feature endpoints); its sibling checks
(`assert_features`, `assert_layer_round_trips`, `assert_one_line_error`)
serve tests that need one of them alone. Test files import this module
(`from harness import ...`) instead of keeping private copies.
"""

import json
import math

import keras
import numpy as np

from efficientnet_tf import features_model, get_model
from efficientnet_tf.layers import FusedMBConv, MBConv

TINY = dict(width=0.25, depth=0.2)  # a named model's block structure at a fraction of its width and depth
REDUCTIONS = [f"reduction_{i}" for i in range(1, 6)]


def images(n=2, size=64, seed=0):
    """`n` random RGB images of `size` x `size` in [0, 255], float32: what the models take."""
    return np.random.default_rng(seed).uniform(0, 255, size=(n, size, size, 3)).astype("float32")


def blocks(model):
    """The model's MBConv and FusedMBConv blocks, in order."""
    return [layer for layer in model.layers if isinstance(layer, (MBConv, FusedMBConv))]


def perturb_statistics(model, seed=1):
    """Non-trivial batch-norm statistics (every non-trainable weight), so a lost moving mean or variance shows up."""
    rng = np.random.default_rng(seed)
    for weight in model.non_trainable_weights:
        weight.assign(rng.uniform(0.5, 1.5, size=weight.shape).astype(weight.dtype))


def _config_json(layer_or_model):
    return json.dumps(layer_or_model.get_config(), sort_keys=True)


def assert_layer_round_trips(layer, x, atol=1e-6):
    """`layer` through its JSON config as load_model rebuilds it (no custom_objects), with its weights.

    The clone has the same type and config, and gives the same output on `x`.
    """
    y = layer(x)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert _config_json(clone) == _config_json(layer)
    if not clone.built:
        clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), y, atol=atol)
    return clone


def assert_features(backbone, x):
    """`backbone` maps `x` to `reduction_1` .. `reduction_5` at strides 2 .. 32 (SAME padding: sizes round up)."""
    features = backbone(x, training=False)
    assert sorted(features) == REDUCTIONS
    batch, height, width = x.shape[:3]
    for i, key in enumerate(REDUCTIONS, start=1):
        expected = (batch, math.ceil(height / 2**i), math.ceil(width / 2**i))
        assert tuple(features[key].shape[:3]) == expected, (key, features[key].shape)
    return {key: np.float32(value) for key, value in features.items()}


def assert_precision(model, policy):
    """Under `policy`: every block computes in its compute dtype, variables are in its variable dtype, logits float32."""
    policy = keras.mixed_precision.Policy(policy)
    assert {block.compute_dtype for block in blocks(model)} == {policy.compute_dtype}
    assert {weight.dtype for weight in model.weights} == {policy.variable_dtype}
    if "predictions" in [layer.name for layer in model.layers]:
        assert model.get_layer("predictions").compute_dtype == "float32"


def assert_one_line_error(error, kind, text):
    """A `pytest.raises` result is exactly a `kind` whose one-line message contains `text`."""
    message = str(error.value)
    assert error.type is kind, (error.type, message)
    assert text in message and "\n" not in message, message


def _train_one_epoch(model, x, num_classes):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x, np.arange(len(x)) % num_classes, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def run_backbone_test(name, tmp_path, options=None, x=None, policy=None, train=False, prepare=None):
    """Builds `get_model(name, **options)` (default: TINY) and runs every per-model check on it.

    - build: the Keras model is named `name`; BN statistics are perturbed, then
      `prepare(model)` (if given) changes what the test wants carried through;
    - precision (`policy`, e.g. "mixed_bfloat16", set before the build): see
      `assert_precision`, and float32 outputs;
    - train: one epoch of fit (adam) gives a finite loss, and the checks below
      run on the trained model;
    - output: (batch, num_classes) float32 from the eager call and the compiled
      predict alike (rows not saturated), rows summing to one unless a
      classifier_activation is given;
    - `.keras` save and load_model (no custom_objects, in a float32 session):
      same model config, precision and identical outputs;
    - `.weights.h5` into a fresh build: identical outputs;
    - features: `features_model` of the loaded model gives `reduction_1` ..
      `reduction_5` (see `assert_features`), the last as wide as the last block.

    Returns (model, restored) for the test's own assertions.
    """
    options = dict(TINY if options is None else options)
    x = images() if x is None else x
    if policy is not None:
        keras.mixed_precision.set_global_policy(policy)
    model = get_model(name, **options)
    assert model.name == options.get("name", name)
    perturb_statistics(model)
    if prepare is not None:
        prepare(model)
    if policy is not None:
        assert_precision(model, policy)
    num_classes = options.get("num_classes", 1000)
    if train:
        _train_one_epoch(model, x, num_classes)

    eager = model(x, training=False)
    expected = model.predict(x, verbose=0)
    assert keras.backend.standardize_dtype(eager.dtype) == "float32" and expected.dtype == np.float32
    assert expected.shape == eager.shape == (len(x), num_classes)
    # Eager and compiled calls run different kernels (oneDNN fuses ops in graphs), so they agree to float
    # tolerance, except in a saturated softmax row (a full-size random model's), where a near-tie of two
    # huge logits flips the 1 between classes.
    unsaturated = np.asarray(eager).max(axis=1) < 0.999
    np.testing.assert_allclose(expected[unsaturated], np.asarray(eager)[unsaturated], rtol=1e-4, atol=1e-6)
    if options.get("classifier_activation", "softmax") == "softmax":
        np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-5)

    path = tmp_path / "model.keras"
    model.save(path)
    model.save_weights(tmp_path / "model.weights.h5")
    keras.mixed_precision.set_global_policy("float32")  # the saved policy comes back on its own
    restored = keras.models.load_model(path)
    assert type(restored) is type(model)
    assert _config_json(restored) == _config_json(model)
    if policy is not None:
        assert_precision(restored, policy)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), expected)

    if policy is not None:
        keras.mixed_precision.set_global_policy(policy)
    fresh = get_model(name, **options)
    fresh.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), expected)

    features = assert_features(features_model(restored), x)
    assert features["reduction_5"].shape[-1] == blocks(restored)[-1].output_filters
    return model, restored
