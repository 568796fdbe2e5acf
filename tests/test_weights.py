"""Pretrained weights: keras.applications files map onto our models exactly, offline.

Each published architecture is checked without network: a keras.applications
model with non-trivial BatchNorm statistics writes its weights in Keras'
published (legacy HDF5) layout, we load them, and both models must agree.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import inspect  # noqa: E402
import logging  # noqa: E402
import socket  # noqa: E402

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras.src.applications import efficientnet as keras_v1  # noqa: E402
from keras.src.applications import efficientnet_v2 as keras_v2  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

from efficientnet_tf import get_model  # noqa: E402
from efficientnet_tf import weights as weights_lib  # noqa: E402

KERAS_CONSTRUCTORS = {
    **{f"efficientnet-b{i}": f"EfficientNetB{i}" for i in range(8)},
    **{f"efficientnetv2-b{i}": f"EfficientNetV2B{i}" for i in range(4)},
    "efficientnetv2-s": "EfficientNetV2S",
    "efficientnetv2-m": "EfficientNetV2M",
    "efficientnetv2-l": "EfficientNetV2L",
}
SIZE = 64
SHAPE = (SIZE, SIZE, 3)
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture(autouse=True)
def _free_models():
    yield
    keras.backend.clear_session()


@pytest.fixture
def offline(monkeypatch):
    """No name resolution, so any download attempt fails the way it does offline."""

    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _images(seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (2, *SHAPE)).astype("float32")


def _keras_model(name):
    """keras.applications model with random non-trivial BN statistics and biases.

    Built with weights=None, Keras' V1 Normalization layer computes
    (x/255 - mean) / sqrt(variance) without the extra rescaling it adds for its
    ImageNet weights (tensorflow/tensorflow#49930); variance = std**2 makes it
    the official normalization, which is what our model applies.
    """
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(2)
    model = getattr(keras.applications, KERAS_CONSTRUCTORS[name])(
        weights=None, input_shape=SHAPE, classifier_activation=None
    )
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            # Small residual branches, as in trained networks, keep deep activations (and float32 error) bounded.
            residual_scale = 0.1 if layer.name.endswith("project_bn") else 1.0
            layer.gamma.assign(rng.uniform(0.5, 1.5, n) * residual_scale)
            layer.beta.assign(rng.normal(0, 0.2, n) * residual_scale)
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
        elif isinstance(layer, keras.layers.Normalization) and layer.weights:
            layer.adapt_mean.assign(MEAN)
            layer.adapt_variance.assign(STD**2)
            layer.finalize_state()
        elif getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    return model


def _notop(model):
    """The include_top=False view of a keras.applications model (same layers as its _notop file)."""
    return keras.Model(model.input, model.get_layer("top_activation").output)


def _write_published(model, path):
    """Writes weights in the layout of Keras' published .h5 files (what model.save_weights('x.h5') did)."""
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return str(path)


def _preprocessing_output(model, layer_name, x):
    return keras.Model(model.input, model.get_layer(layer_name).output)(x).numpy()


def test_published_table_matches_keras_source():
    for name, (stem, url, md5_top, md5_notop) in weights_lib.PUBLISHED.items():
        suffix = name.split("-")[1]
        if name.startswith("efficientnetv2"):
            keras_module, key = keras_v2, suffix if suffix.startswith("b") else "-" + suffix
        else:
            keras_module, key = keras_v1, suffix
        assert url == keras_module.BASE_WEIGHTS_PATH
        assert (md5_top, md5_notop) == keras_module.WEIGHTS_HASHES[key]
        constructor = getattr(keras.applications, KERAS_CONSTRUCTORS[name])
        assert stem == inspect.signature(constructor).parameters["name"].default


def test_written_file_has_published_layout(tmp_path):
    """Keras' own legacy loader reads our test files, and they carry the published attributes."""
    source = _keras_model("efficientnet-b0")
    path = _write_published(source, tmp_path / "efficientnetb0.h5")
    with h5py.File(path, "r") as f:
        assert "layer_names" in f.attrs and "keras_version" in f.attrs
        names = [n.decode() if isinstance(n, bytes) else n for n in f["stem_bn"].attrs["weight_names"]]
        assert names == ["stem_bn/gamma", "stem_bn/beta", "stem_bn/moving_mean", "stem_bn/moving_variance"]
    copy = keras.applications.EfficientNetB0(weights=None, input_shape=SHAPE, classifier_activation=None)
    copy.load_weights(path)
    np.testing.assert_array_equal(copy(_images()).numpy(), source(_images()).numpy())


@pytest.mark.parametrize("name", list(KERAS_CONSTRUCTORS))
def test_keras_applications_file_gives_same_outputs(name, tmp_path):
    x = _images()
    source = _keras_model(name)
    source_notop = _notop(source)
    top_file = _write_published(source, tmp_path / "top.h5")
    notop_file = _write_published(source_notop, tmp_path / "notop.h5")
    expected_logits = source(x, training=False).numpy()
    expected_features = source_notop(x, training=False).numpy()
    imagenet_stats = name.startswith("efficientnet-") or name[-2] == "b"  # V1 and V2-B0..B3.
    # Keras' preprocessing ends in Normalization (V1, V2-B0..B3) or Rescaling x/128 - 1 (V2-S/M/L).
    keras_preprocessed = _preprocessing_output(source, source.layers[2 if imagenet_stats else 1].name, x)
    del source, source_notop

    ours = get_model(name, weights=top_file, input_shape=SHAPE, classifier_activation=None)
    ours_preprocessed = _preprocessing_output(ours, "normalization", x)
    np.testing.assert_allclose(ours_preprocessed, keras_preprocessed, atol=1e-5)
    if imagenet_stats:
        np.testing.assert_allclose(ours_preprocessed, (x - MEAN * 255) / (STD * 255), atol=1e-5)
    else:
        np.testing.assert_allclose(ours_preprocessed, (x - 128) / 128, atol=1e-5)
    logits = ours(x, training=False).numpy()
    assert np.abs(logits - expected_logits).max() <= 1e-4, np.abs(logits - expected_logits).max()
    del ours

    ours_notop = get_model(name, weights=notop_file, input_shape=SHAPE, include_top=False)
    features = ours_notop(x, training=False).numpy()
    assert np.abs(features - expected_features).max() <= 1e-4, np.abs(features - expected_features).max()


def test_imagenet_offline_names_file_and_place(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for include_top, file_name in ((True, "efficientnetv2-b0.h5"), (False, "efficientnetv2-b0_notop.h5")):
        with pytest.raises(OSError) as error:
            get_model("efficientnetv2-b0", weights="imagenet", include_top=include_top, input_shape=SHAPE)
        message = str(error.value)
        assert "\n" not in message and file_name in message
        assert str(tmp_path / "models" / file_name) in message


def test_imagenet_uses_file_placed_in_cache(tmp_path, monkeypatch, offline, caplog):
    """A hand-placed file is loaded without network or hash check; num_classes != 1000 keeps a fresh classifier."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    source = _notop(_keras_model("efficientnet-b0"))
    _write_published(source, tmp_path / "models" / "efficientnetb0_notop.h5")
    x = _images()
    expected = source(x, training=False).numpy()

    backbone = get_model("efficientnet-b0", weights="imagenet", include_top=False, input_shape=SHAPE)
    np.testing.assert_allclose(backbone(x, training=False).numpy(), expected, atol=1e-4)

    keras.utils.set_random_seed(5)
    fresh = get_model("efficientnet-b0", num_classes=5, input_shape=SHAPE).get_layer("predictions").get_weights()
    keras.utils.set_random_seed(5)
    with caplog.at_level(logging.INFO, logger="efficientnet_tf.weights"):
        tuned = get_model("efficientnet-b0", weights="imagenet", num_classes=5, input_shape=SHAPE)
    assert [r.getMessage() for r in caplog.records if "classifier stays initialized" in r.getMessage()]
    for ours, init in zip(tuned.get_layer("predictions").get_weights(), fresh):
        np.testing.assert_array_equal(ours, init)
    features = keras.Model(tuned.input, tuned.get_layer("top_activation").output)
    np.testing.assert_allclose(features(x, training=False).numpy(), expected, atol=1e-4)


def test_other_num_classes_from_file_loads_backbone_only(tmp_path, caplog):
    source = _keras_model("efficientnet-b0")
    path = _write_published(source, tmp_path / "b0.h5")
    with caplog.at_level(logging.INFO, logger="efficientnet_tf.weights"):
        model = get_model("efficientnet-b0", weights=path, num_classes=7, input_shape=SHAPE)
    logged = [r.getMessage() for r in caplog.records]
    assert any("7-class classifier stays initialized (file has 1000 classes)" in line for line in logged)
    np.testing.assert_array_equal(
        model.get_layer("top_bn").moving_mean.numpy(), source.get_layer("top_bn").moving_mean.numpy()
    )


@pytest.mark.parametrize("name", ["efficientnet-b8", "efficientnet-l2", "efficientnet-lite0", "efficientnetv2-xl"])
def test_unpublished_names_say_which_have_weights(name):
    with pytest.raises(ValueError, match="No ImageNet weights are published") as error:
        weights_lib.imagenet_file(name)
    assert "efficientnetv2-l" in str(error.value) and "weights=None" in str(error.value)


def test_unpublished_name_through_get_model():
    with pytest.raises(ValueError, match="No ImageNet weights.*'efficientnet-lite0'"):
        get_model("efficientnet-lite0", weights="imagenet", input_shape=SHAPE)


def test_imagenet_refuses_modified_architecture():
    with pytest.raises(ValueError, match="unmodified"):
        get_model("efficientnet-b0", weights="imagenet", width=0.5, input_shape=SHAPE)


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(TypeError, match="weights must be None, 'imagenet' or a file path"):
        get_model("efficientnet-b0", weights=1, input_shape=SHAPE)
    missing = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match="not found"):
        get_model("efficientnet-b0", weights=str(missing), input_shape=SHAPE)
    text = tmp_path / "text.h5"
    text.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        get_model("efficientnet-b0", weights=str(text), input_shape=SHAPE)
    whole = _write_published(_keras_model("efficientnet-b0"), tmp_path / "whole.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(open(whole, "rb").read()[: os.path.getsize(whole) // 2])
    with pytest.raises(ValueError, match="not a readable") as error:
        get_model("efficientnet-b0", weights=str(truncated), input_shape=SHAPE)
    assert "\n" not in str(error.value)


def test_wrong_model_file_names_the_layer(tmp_path):
    b0_file = _write_published(_keras_model("efficientnet-b0"), tmp_path / "b0.h5")
    with pytest.raises(ValueError, match="no weights for layer block1b_dwconv of efficientnet-b1"):
        get_model("efficientnet-b1", weights=b0_file, input_shape=SHAPE)
    with pytest.raises(ValueError, match="Shape mismatch for stem_conv"):
        get_model("efficientnet-b3", weights=b0_file, input_shape=SHAPE)
    with pytest.raises(ValueError, match="Shape mismatch for block1a_project_conv kernel of efficientnetv2-b0"):
        get_model("efficientnetv2-b0", weights=b0_file, input_shape=SHAPE)


def test_file_with_extra_layers_is_rejected(tmp_path):
    b1_file = _write_published(_keras_model("efficientnet-b1"), tmp_path / "b1.h5")
    with pytest.raises(ValueError, match="has weights for layers efficientnet-b0 lacks .*block1b"):
        get_model("efficientnet-b0", weights=b1_file, input_shape=SHAPE)


def test_own_weights_file_round_trip(tmp_path):
    x = _images()
    keras.utils.set_random_seed(3)
    source = get_model("efficientnetv2-b0", input_shape=SHAPE)
    for variable in source.weights:
        if "moving_variance" in variable.path:
            variable.assign(np.random.default_rng(0).uniform(0.5, 2.0, variable.shape))
    path = str(tmp_path / "mine.weights.h5")
    source.save_weights(path)
    loaded = get_model("efficientnetv2-b0", weights=path, input_shape=SHAPE)
    np.testing.assert_array_equal(loaded(x).numpy(), source(x).numpy())

    with pytest.raises(ValueError, match="does not fit efficientnetv2-b1") as error:
        get_model("efficientnetv2-b1", weights=path, input_shape=SHAPE)
    assert "\n" not in str(error.value)
    renamed = tmp_path / "mine.h5"
    os.rename(path, renamed)
    with pytest.raises(ValueError, match="end in .weights.h5"):
        get_model("efficientnetv2-b0", weights=str(renamed), input_shape=SHAPE)
