"""Pretrained weights: keras.applications files map onto our models exactly, offline.

Each published architecture is checked without network: a keras.applications
model with non-trivial BatchNorm statistics writes its weights in Keras'
published (legacy HDF5) layout, we load them, and both models must agree.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import inspect  # noqa: E402
import socket  # noqa: E402
import warnings  # noqa: E402

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras.src.applications import efficientnet as keras_v1  # noqa: E402
from keras.src.applications import efficientnet_v2 as keras_v2  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

from efficientnet_tf import get_model  # noqa: E402
from efficientnet_tf import weights as weights_lib  # noqa: E402
from harness import assert_one_line_error, images, perturb_statistics  # noqa: E402
from keras_reference import MEAN, STD, randomized_application  # noqa: E402

KERAS_CONSTRUCTORS = {
    **{f"efficientnet-b{i}": f"EfficientNetB{i}" for i in range(8)},
    **{f"efficientnetv2-b{i}": f"EfficientNetV2B{i}" for i in range(4)},
    "efficientnetv2-s": "EfficientNetV2S",
    "efficientnetv2-m": "EfficientNetV2M",
    "efficientnetv2-l": "EfficientNetV2L",
}
SIZE = 64
SHAPE = (SIZE, SIZE, 3)


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


def _keras_model(name):
    return randomized_application(KERAS_CONSTRUCTORS[name], SHAPE)


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
    np.testing.assert_array_equal(copy(images(size=SIZE)).numpy(), source(images(size=SIZE)).numpy())


@pytest.mark.parametrize("name", list(KERAS_CONSTRUCTORS))
def test_keras_applications_file_gives_same_outputs(name, tmp_path):
    x = images(size=SIZE)
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
        assert_one_line_error(error, OSError, str(tmp_path / "models" / file_name))


def test_imagenet_uses_file_placed_in_cache(tmp_path, monkeypatch, offline, capsys):
    """A hand-placed file is loaded without network or hash check; num_classes != 1000 gets a fresh (zero) classifier."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    source = _notop(_keras_model("efficientnet-b0"))
    _write_published(source, tmp_path / "models" / "efficientnetb0_notop.h5")
    x = images(size=SIZE)
    expected = source(x, training=False).numpy()

    backbone = get_model("efficientnet-b0", weights="imagenet", include_top=False, input_shape=SHAPE)
    np.testing.assert_allclose(backbone(x, training=False).numpy(), expected, atol=1e-4)

    capsys.readouterr()
    tuned = get_model("efficientnet-b0", weights="imagenet", num_classes=5, input_shape=SHAPE)
    assert capsys.readouterr().out == (
        "efficientnet-b0: loaded 309 of 311 weights from efficientnetb0_notop.h5; head (1280 -> 5) starts fresh\n"
    )
    assert [w.shape for w in tuned.get_layer("predictions").get_weights()] == [(1280, 5), (5,)]
    assert not any(np.any(w) for w in tuned.get_layer("predictions").get_weights())  # test_fresh_head.py says why
    features = keras.Model(tuned.input, tuned.get_layer("top_activation").output)
    np.testing.assert_allclose(features(x, training=False).numpy(), expected, atol=1e-4)


def test_other_num_classes_from_file_loads_backbone_only(tmp_path, capsys):
    source = _keras_model("efficientnet-b0")
    path = _write_published(source, tmp_path / "b0.h5")
    capsys.readouterr()
    model = get_model("efficientnet-b0", weights=path, num_classes=7, input_shape=SHAPE)
    assert capsys.readouterr().out == (
        "efficientnet-b0: loaded 309 of 311 weights from b0.h5; head (1280 -> 7) starts fresh "
        "(the file's head is 1280 -> 1000)\n"
    )
    np.testing.assert_array_equal(
        model.get_layer("top_bn").moving_mean.numpy(), source.get_layer("top_bn").moving_mean.numpy()
    )


@pytest.mark.parametrize("name", ["efficientnet-b8", "efficientnet-l2", "efficientnet-lite0", "efficientnetv2-xl"])
def test_unpublished_names_say_which_have_weights(name):
    with pytest.raises(ValueError, match="No ImageNet weights are published") as error:
        weights_lib.imagenet_file(name)
    assert "efficientnetv2-l" in str(error.value) and "weights=None" in str(error.value)


def test_unpublished_name_through_get_model():
    with pytest.raises(ValueError, match="No ImageNet weights.*'efficientnet-b8'.*named weights for it: advprop"):
        get_model("efficientnet-b8", weights="imagenet", input_shape=SHAPE)


def test_imagenet_refuses_modified_architecture():
    with pytest.raises(ValueError, match="unmodified"):
        get_model("efficientnet-b0", weights="imagenet", width=0.5, input_shape=SHAPE)


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(TypeError, match="weights must be None, a weights name such as 'imagenet', or a file path"):
        get_model("efficientnet-b0", weights=1, input_shape=SHAPE)
    missing = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match="not found"):
        get_model("efficientnet-b0", weights=str(missing), input_shape=SHAPE)
    text = tmp_path / "text.h5"
    text.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="not a readable weights file"):
        get_model("efficientnet-b0", weights=str(text), input_shape=SHAPE)
    whole = _write_published(_keras_model("efficientnet-b0"), tmp_path / "whole.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(open(whole, "rb").read()[: os.path.getsize(whole) // 2])
    with pytest.raises(ValueError) as error:
        get_model("efficientnet-b0", weights=str(truncated), input_shape=SHAPE)
    assert_one_line_error(error, ValueError, "not a readable")


def test_wrong_model_file_names_the_weight_and_both_shapes(tmp_path):
    b0_file = _write_published(_keras_model("efficientnet-b0"), tmp_path / "b0.h5")
    with pytest.raises(ValueError, match=r"does not fit efficientnet-b1: it lacks block1b/se/reduce/kernel \(\(1, 1, 16, 4\) in the model\)"):
        get_model("efficientnet-b1", weights=b0_file, input_shape=SHAPE)
    with pytest.raises(ValueError, match=r"stem_conv/kernel is \(3, 3, 3, 32\) in the file, \(3, 3, 3, 40\) in the model"):
        get_model("efficientnet-b3", weights=b0_file, input_shape=SHAPE)
    with pytest.raises(ValueError, match=r"efficientnetv2-b0: block1a/project_conv/kernel is \(1, 1, 32, 16\) in the file, \(3, 3"):
        get_model("efficientnetv2-b0", weights=b0_file, input_shape=SHAPE)


def test_file_with_extra_layers_is_rejected(tmp_path):
    b1_file = _write_published(_keras_model("efficientnet-b1"), tmp_path / "b1.h5")
    with pytest.raises(ValueError, match="it has block1b_dwconv/kernel .*which the model lacks"):
        get_model("efficientnet-b0", weights=b1_file, input_shape=SHAPE)


def test_own_weights_file_round_trip(tmp_path):
    x = images(size=SIZE)
    keras.utils.set_random_seed(3)
    source = get_model("efficientnetv2-b0", input_shape=SHAPE)
    perturb_statistics(source)
    path = str(tmp_path / "mine.weights.h5")
    source.save_weights(path)
    loaded = get_model("efficientnetv2-b0", weights=path, input_shape=SHAPE)
    np.testing.assert_array_equal(loaded(x).numpy(), source(x).numpy())

    with pytest.raises(ValueError) as error:
        get_model("efficientnetv2-b1", weights=path, input_shape=SHAPE)
    assert_one_line_error(error, ValueError, "does not fit efficientnetv2-b1")
    renamed = tmp_path / "mine.h5"  # read by name, so Keras' file-name rule does not apply
    os.rename(path, renamed)
    loaded = get_model("efficientnetv2-b0", weights=str(renamed), input_shape=SHAPE)
    np.testing.assert_array_equal(loaded(x).numpy(), source(x).numpy())


def _lite0(**options):
    return get_model("efficientnet-lite0", input_shape=SHAPE, classifier_activation=None, **options)


def _features(model, x):
    return keras.Model(model.input, model.get_layer("top_activation").output)(x, training=False).numpy()


@pytest.fixture(scope="module")
def lite0_files(tmp_path_factory):
    """Issue 17's files: lite0 weights saved with the 1000-class top and without a top."""
    folder = tmp_path_factory.mktemp("lite0")
    keras.utils.set_random_seed(11)
    top = _lite0()
    top.save_weights(folder / "lite0.weights.h5")
    notop = _lite0(include_top=False)
    notop.save_weights(folder / "lite0_notop.weights.h5")
    x = images(size=SIZE)
    return {
        "top": str(folder / "lite0.weights.h5"), "notop": str(folder / "lite0_notop.weights.h5"), "x": x,
        "top_features": _features(top, x), "notop_features": notop(x, training=False).numpy(),
        "logits": top(x, training=False).numpy(), "folder": folder,
    }


@pytest.mark.parametrize("kind", ["top", "notop"])
def test_any_own_file_into_another_head(lite0_files, kind, capsys):
    """The issue's two failures: a 2-class lite0 from lite0 weights with and without a top."""
    path = lite0_files[kind]
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _lite0(num_classes=2, weights=path)
    assert not [w for w in caught if "Skipping" in str(w.message) or "retain" in str(w.message)]
    expected = "efficientnet-lite0: loaded 245 of 247 weights from " + os.path.basename(path)
    expected += "; head (1280 -> 2) starts fresh" + (" (the file's head is 1280 -> 1000)" if kind == "top" else "")
    assert capsys.readouterr().out == expected + "\n"
    np.testing.assert_array_equal(_features(model, lite0_files["x"]), lite0_files[f"{kind}_features"])
    assert not any(np.any(w) for w in model.get_layer("predictions").get_weights())  # a fresh head starts at zero


def test_own_file_with_top_into_backbone_and_same_head(lite0_files, capsys):
    x = lite0_files["x"]
    capsys.readouterr()
    backbone = _lite0(include_top=False, weights=lite0_files["top"])
    assert capsys.readouterr().out == (
        "efficientnet-lite0: loaded 245 of 245 weights from lite0.weights.h5; the file's head (1280 -> 1000) is not used\n"
    )
    np.testing.assert_array_equal(backbone(x, training=False).numpy(), lite0_files["top_features"])
    same = _lite0(weights=lite0_files["top"])
    assert capsys.readouterr().out == "efficientnet-lite0: loaded 247 of 247 weights from lite0.weights.h5\n"
    np.testing.assert_array_equal(same(x, training=False).numpy(), lite0_files["logits"])


def test_dot_keras_file_as_weights(lite0_files):
    keras.utils.set_random_seed(11)
    source = _lite0()
    path = str(lite0_files["folder"] / "whole.keras")
    source.save(path)
    model = _lite0(weights=path, num_classes=3)
    np.testing.assert_array_equal(_features(model, lite0_files["x"]), _features(source, lite0_files["x"]))


def test_own_file_of_another_architecture_is_one_line_and_loads_nothing(lite0_files):
    from efficientnet_tf.registry import get_spec

    with pytest.raises(ValueError) as error:
        _lite0(width=0.5, weights=lite0_files["top"])
    assert_one_line_error(error, ValueError, "block1a/project_conv/kernel is (1, 1, 32, 16) in the file, (1, 1, 32, 8) in the model")
    narrow = _lite0(width=0.5)
    before = [w.copy() for w in narrow.get_weights()]
    spec = get_spec("efficientnet-lite0").replace(width=0.5)
    with pytest.raises(ValueError, match="does not fit"):
        weights_lib.load_weights(narrow, lite0_files["top"], spec)
    for now, then in zip(narrow.get_weights(), before):  # stem and block1a fit, yet nothing was assigned
        np.testing.assert_array_equal(now, then)


def test_keras_applications_notop_file_into_any_head(tmp_path, capsys):
    source = _notop(_keras_model("efficientnetv2-b0"))
    path = _write_published(source, tmp_path / "v2b0_notop.h5")
    x = images(size=SIZE)
    capsys.readouterr()
    model = get_model("efficientnetv2-b0", weights=path, num_classes=3, input_shape=SHAPE)
    line = capsys.readouterr().out
    assert line.endswith("weights from v2b0_notop.h5; head (1280 -> 3) starts fresh\n") and line.count("\n") == 1
    np.testing.assert_allclose(_features(model, x), source(x, training=False).numpy(), atol=1e-4)
