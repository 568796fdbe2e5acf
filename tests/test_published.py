"""Named official weights: the table, the download (from a server on 127.0.0.1), the cache, the models they need."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses  # noqa: E402
import functools  # noqa: E402
import http.server  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from test_official import random_values, recorded, write_archive, write_checkpoint  # noqa: E402

from efficientnet_tf import get_model, published  # noqa: E402
from efficientnet_tf.weights import weights_names  # noqa: E402

SHAPE = (64, 64, 3)
TPU = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/"


def test_table_holds_the_readmes_checkpoints():
    """URLs and top-1 as printed in the official READMEs (tensorflow/tpu, its lite/, google/automl efficientnetv2)."""
    table = published.CHECKPOINTS
    assert [n for n in table if table[n].get("autoaugment")] == [f"efficientnet-b{i}" for i in range(8)]
    assert [n for n in table if table[n].get("advprop")] == [f"efficientnet-b{i}" for i in range(9)]
    assert [n for n in table if table[n].get("noisy-student")] == [f"efficientnet-b{i}" for i in range(8)] + ["efficientnet-l2"]
    assert [n for n in table if table[n].get("randaugment")] == ["efficientnet-b5", "efficientnet-b7"]
    assert table["efficientnet-b0"]["autoaugment"] == published.Checkpoint(TPU + "ckptsaug/efficientnet-b0.tar.gz", 77.1)
    assert table["efficientnet-b8"]["advprop"].url == TPU + "advprop/efficientnet-b8.tar.gz"
    assert table["efficientnet-b8"]["advprop"].top1 == 85.5
    assert table["efficientnet-b7"]["randaugment"].url == TPU + "randaug/efficientnet-b7-randaug.tar.gz"
    assert table["efficientnet-l2"]["noisy-student"] == published.Checkpoint(
        TPU + "noisystudent/noisy_student_efficientnet-l2.tar.gz", 88.4
    )
    assert table["efficientnet-lite4"]["imagenet"] == published.Checkpoint(TPU + "lite/efficientnet-lite4.tar.gz", 81.5)
    xl = table["efficientnetv2-xl"]
    assert xl["imagenet21k"] == published.Checkpoint(
        TPU + "v2/efficientnetv2-xl-21k.tgz", None, num_classes=21843, normalization=((128.0,) * 3, (128.0,) * 3)
    )
    assert xl["imagenet21k-ft1k"] == published.Checkpoint(
        TPU + "v2/efficientnetv2-xl-21k-ft1k.tgz", 87.2, normalization=((127.5,) * 3, (127.5,) * 3)
    )
    # automl's 21k and ft1k recipes scale to [-1, 1] for B0-B3 too, not B0-B3's 1k ImageNet mean/std.
    assert table["efficientnetv2-b0"]["imagenet21k"].normalization == ((128.0,) * 3, (128.0,) * 3)
    assert table["efficientnetv2-b0"]["imagenet21k-ft1k"].normalization == ((127.5,) * 3, (127.5,) * 3)
    for size in ("b0", "b1", "b2", "b3", "s", "m", "l", "xl"):
        assert set(table[f"efficientnetv2-{size}"]) == {"imagenet21k", "imagenet21k-ft1k"}
    assert weights_names("efficientnetv2-s") == ["imagenet", "imagenet21k", "imagenet21k-ft1k"]  # 1k: Keras' files
    assert weights_names("efficientnet-b0") == ["imagenet", "baseline", "autoaugment", "advprop", "noisy-student"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras" / "models"


@pytest.fixture(scope="module")
def lite0_archive(tmp_path_factory):
    """An official-layout lite0 archive and its EMA values."""
    folder = tmp_path_factory.mktemp("served") / "efficientnet-lite0"
    values = random_values(recorded("efficientnet-lite0"), 3)
    write_checkpoint(folder, {k: v - 1 for k, v in values.items()}, ema=values)
    return write_archive(folder, folder.parent / "efficientnet-lite0.tar.gz"), values


@pytest.fixture
def server(lite0_archive):
    """A local http.server over the archive's folder; yields the base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=os.path.dirname(lite0_archive[0]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _serve(monkeypatch, base, file_name, model="efficientnet-lite0", weights="imagenet"):
    entry = published.CHECKPOINTS[model][weights]
    monkeypatch.setitem(published.CHECKPOINTS[model], weights, dataclasses.replace(entry, url=base + file_name))


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_download_with_progress_into_cache_then_offline(cache, server, lite0_archive, monkeypatch, capsys):
    path, values = lite0_archive
    _serve(monkeypatch, server, os.path.basename(path))
    model = get_model("efficientnet-lite0", weights="imagenet", input_shape=SHAPE)
    out = capsys.readouterr().out
    assert f"Downloading data from {server}efficientnet-lite0.tar.gz" in out  # Keras' get_file, with its progress bar
    assert out.endswith("efficientnet-lite0: loaded 247 of 247 weights from efficientnet-lite0_imagenet.tar.gz\n")
    cached = cache / "efficientnet-lite0_imagenet.tar.gz"
    assert sorted(os.listdir(cache)) == [cached.name]
    assert cached.read_bytes() == open(path, "rb").read()
    np.testing.assert_array_equal(model.get_layer("stem_conv").kernel.numpy(), values["efficientnet-lite0/stem/conv2d/kernel"])

    _serve(monkeypatch, "http://no-such-host.invalid/", "x.tar.gz")  # the cache is used, no network
    again = get_model("efficientnet-lite0", weights="imagenet", num_classes=4, input_shape=SHAPE)
    assert capsys.readouterr().out.endswith("head (1280 -> 4) starts fresh (the file's head is 1280 -> 1000)\n")
    np.testing.assert_array_equal(again.get_layer("top_bn").gamma.numpy(), values["efficientnet-lite0/head/tpu_batch_normalization/gamma"])


def test_short_download_leaves_nothing_in_cache(cache, server, lite0_archive, monkeypatch, tmp_path):
    path, _ = lite0_archive
    short = os.path.join(os.path.dirname(path), "short.tar.gz")
    with open(short, "wb") as f:
        f.write(open(path, "rb").read()[: os.path.getsize(path) // 2])
    _serve(monkeypatch, server, "short.tar.gz")
    with pytest.raises(OSError) as error:
        get_model("efficientnet-lite0", weights="imagenet", input_shape=SHAPE)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"Could not download {server}short.tar.gz")
    assert str(cache / "efficientnet-lite0_imagenet.tar.gz") in message
    assert os.listdir(cache) == []


def test_offline_names_the_file_and_where_to_put_it(cache, offline):
    with pytest.raises(OSError) as error:
        get_model("efficientnetv2-b0", weights="imagenet21k", input_shape=SHAPE)
    message = str(error.value)
    assert "\n" not in message and "Offline?" in message
    assert TPU + "v2/efficientnetv2-b0-21k.tgz" in message
    assert str(cache / "efficientnetv2-b0_imagenet21k.tgz") in message


def test_hand_placed_archives_load_offline(cache, offline, tmp_path, capsys):
    """21k weights bring their 21843-class head; AdvProp weights bring their [-1, 1] input scaling."""
    cache.mkdir(parents=True)
    shapes = recorded("efficientnetv2-b0")
    shapes["efficientnetv2-b0/head/dense/kernel"] = (1280, 21843)
    shapes["efficientnetv2-b0/head/dense/bias"] = (21843,)
    write_checkpoint(tmp_path / "efficientnetv2-b0-21k", random_values(shapes, 0))
    write_archive(tmp_path / "efficientnetv2-b0-21k", cache / "efficientnetv2-b0_imagenet21k.tgz")
    x = np.random.default_rng(0).uniform(0, 255, (2, *SHAPE)).astype("float32")
    model = get_model("efficientnetv2-b0", weights="imagenet21k", input_shape=SHAPE)
    assert model(x).shape == (2, 21843)
    tuned = get_model("efficientnetv2-b0", weights="imagenet21k", num_classes=5, input_shape=SHAPE)
    assert tuned(x).shape == (2, 5)
    assert capsys.readouterr().out.endswith("head (1280 -> 5) starts fresh (the file's head is 1280 -> 21843)\n")
    keras.backend.clear_session()

    b0 = random_values(recorded("efficientnet-b0"), 1)
    write_checkpoint(tmp_path / "efficientnet-b0", b0)
    write_archive(tmp_path / "efficientnet-b0", cache / "efficientnet-b0_advprop.tar.gz")
    advprop = get_model("efficientnet-b0", weights="advprop", input_shape=SHAPE)
    normalized = keras.Model(advprop.input, advprop.get_layer("normalization").output)(x).numpy()
    np.testing.assert_allclose(normalized, x * 2.0 / 255 - 1.0, atol=1e-6)  # the official advprop_preprocessing
    np.testing.assert_array_equal(advprop.get_layer("predictions").bias.numpy(), b0["efficientnet-b0/head/dense/bias"])
    plain = get_model("efficientnet-b0", input_shape=SHAPE)
    mean, std = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
    np.testing.assert_allclose(keras.Model(plain.input, plain.get_layer("normalization").output)(x).numpy(),
                               (x - mean) / std, atol=1e-5)


def test_damaged_archive_in_cache_names_the_fix(cache, offline):
    cache.mkdir(parents=True)
    damaged = cache / "efficientnet-lite0_imagenet.tar.gz"
    damaged.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(ValueError) as error:
        get_model("efficientnet-lite0", weights="imagenet", input_shape=SHAPE)
    message = str(error.value)
    assert "\n" not in message and str(damaged) in message
    assert "truncated or damaged archive" in message and "delete it and download it again" in message


def test_wrong_weights_names_are_one_line_errors():
    with pytest.raises(ValueError, match=r"No 'advprob' weights are published for 'efficientnet-b0' \(named weights for it: "
                       r"imagenet, baseline, autoaugment, advprop, noisy-student\)"):
        get_model("efficientnet-b0", weights="advprob", input_shape=SHAPE)
    with pytest.raises(ValueError, match=r"No 'advprop' weights are published for 'efficientnet-lite0' \(named weights for it: imagenet\)"):
        get_model("efficientnet-lite0", weights="advprop", input_shape=SHAPE)
    with pytest.raises(ValueError, match="No ImageNet weights are published for 'efficientnet-l2'.*noisy-student"):
        get_model("efficientnet-l2", weights="imagenet", input_shape=SHAPE)
    with pytest.raises(ValueError, match="did you mean weights='imagenet21k'"):
        get_model("efficientnetv2-s", weights="ImageNet21k", input_shape=SHAPE)
    with pytest.raises(ValueError, match="unmodified 'efficientnet-b0'; drop the blocks/width/depth"):
        get_model("efficientnet-b0", weights="noisy-student", width=0.5, input_shape=SHAPE)
