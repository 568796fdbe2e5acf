"""`.keras` and `.weights.h5` round trips, the deepest models included."""

import numpy as np
import keras
import pytest

from efficientnet_tf import features_model, get_model

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, size=(2, 64, 64, 3)).astype("float32")


def _perturb_statistics(model):
    """Non-trivial BN statistics, so a lost moving mean/variance shows up."""
    for weight in model.non_trainable_weights:
        weight.assign(RNG.uniform(0.5, 1.5, size=weight.shape).astype(weight.dtype))


def _assert_round_trips(model, tmp_path, rebuild):
    expected = model.predict(IMAGES, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)  # no custom_objects
    np.testing.assert_array_equal(restored.predict(IMAGES, verbose=0), expected)
    weights = tmp_path / "model.weights.h5"
    model.save_weights(weights)
    fresh = rebuild()
    fresh.load_weights(weights)
    np.testing.assert_array_equal(fresh.predict(IMAGES, verbose=0), expected)
    return restored


@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnetv2-s", "efficientnet-lite1"])
def test_small_models_round_trip(name, tmp_path):
    options = dict(width=0.25, depth=0.3, num_classes=5, dropout_rate=0.1)
    model = get_model(name, **options)
    _perturb_statistics(model)
    model.get_layer("top_dropout").rate = 0.35
    restored = _assert_round_trips(model, tmp_path, lambda: get_model(name, **options))
    assert restored.get_layer("top_dropout").rate == pytest.approx(0.35)
    assert restored.get_layer("block2a").get_config() == model.get_layer("block2a").get_config()
    assert sorted(features_model(restored).output) == [f"reduction_{i}" for i in range(1, 6)]


def test_trained_mixed_precision_model_round_trips(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = get_model("efficientnetv2-b0", width=0.25, depth=0.2, num_classes=3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(IMAGES, np.array([0, 2]), epochs=1, verbose=0)
    restored = _assert_round_trips(
        model, tmp_path, lambda: get_model("efficientnetv2-b0", width=0.25, depth=0.2, num_classes=3)
    )
    assert restored.get_layer("block1a").compute_dtype == "bfloat16"


@pytest.mark.slow  # full-size XL: minutes on 2 cores
def test_efficientnetv2_xl_round_trips(tmp_path):
    model = get_model("efficientnetv2-xl")
    _assert_round_trips(model, tmp_path, lambda: get_model("efficientnetv2-xl"))


@pytest.mark.slow  # full-depth L2: minutes on 2 cores
def test_efficientnet_l2_depth_builds_saves_and_loads(tmp_path):
    # L2's depth (88 blocks) at B0's width: the graph depth that
    # would hit recursion limits, without writing 1.9 GB of weights.
    model = get_model("efficientnet-l2", width=1.0)
    assert len(model.layers) > 88
    _assert_round_trips(model, tmp_path, lambda: get_model("efficientnet-l2", width=1.0))
