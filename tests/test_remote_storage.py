"""Remote paths (gs://, s3://) go through tf.io.gfile: TensorFlow's in-memory ram:// filesystem stands in for a bucket.

Training, resuming, `load_trained`, export, predict, initial weights and an
image-folder dataset all work on ram:// paths and never create a local
folder named after the URL; a scheme TensorFlow cannot open is one line.
ram:// lives in this process only, so everything runs in-process.
"""

import io
import json
import os
import uuid

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import efficientnet_tf
from efficientnet_tf.data.synthetic import render_split
from efficientnet_tf.files import TEMP_PREFIX, atomic_write_text
from efficientnet_tf.predict import main as predict_main
from efficientnet_tf.training import load_trained, trainer
from efficientnet_tf.training.config import build_config
from export import calibration_images, export_trained
from harness import TINY, assert_one_line_error

SIZE = 32
CLASSES = ["circle", "square"]


def bucket() -> str:
    """A fresh ram:// "bucket" (the filesystem is shared by the whole process)."""
    return f"ram://bucket-{uuid.uuid4().hex[:8]}"


def write_image_folder(root: str, per_class: int, seed: int) -> list[str]:
    """root/<class>/<i>.png images, written through tf.io.gfile; returns their paths."""
    images = render_split(per_class * len(CLASSES), len(CLASSES), SIZE, seed=seed, stream=0)[0]
    paths = []
    for index, image in enumerate(images):
        path = f"{root}/{CLASSES[index % len(CLASSES)]}/{index}.png"
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
        with tf.io.gfile.GFile(path, "wb") as file:
            file.write(buffer.getvalue())
        paths.append(path)
    return paths


def tiny_config(data: str, epochs: int):
    return build_config({
        "model.name": "efficientnet-lite0", "model.width": TINY["width"], "model.depth": 0.1, "data.dataset": f"{data}/train",
        "data.eval_dir": f"{data}/eval", "data.batch_size": 4, "data.image_size": SIZE, "data.eval_size": SIZE,
        "data.augmentation": "none", "progressive.stages": 1, "train.epochs": epochs, "optimizer.warmup_epochs": 0,
        "train.ema_decay": 0.5, "train.mixed_precision": "float32",
    })  # fmt: skip


def assert_no_local_url_folder(directory) -> None:
    assert not [name for name in os.listdir(directory) if name.startswith("ram:")], os.listdir(directory)


def test_train_resume_load_export_and_predict_all_on_a_bucket(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a URL mistaken for a local path would appear here as a "ram:" folder
    root = bucket()
    write_image_folder(f"{root}/data/train", per_class=6, seed=0)  # 10% of 6 per class: calibration takes 1
    images = write_image_folder(f"{root}/data/eval", per_class=2, seed=1)
    run = f"{root}/runs/b0"

    first = trainer.run(tiny_config(f"{root}/data", epochs=1), run, mode="train", verbose=0)
    written = set(tf.io.gfile.listdir(run))
    assert {"config.json", "class_names.json", "ckpt-00001.npz", "log.csv", "history.png", "model.keras"} <= written
    assert any(name.startswith("tensorboard") for name in written)
    with tf.io.gfile.GFile(f"{run}/class_names.json") as file:
        assert json.load(file) == CLASSES

    # A kill mid-upload leaves a temporary object: resuming neither reads it nor keeps it.
    leftover = f"{run}/{TEMP_PREFIX}0badc0de-ckpt-00009.npz"
    with tf.io.gfile.GFile(leftover, "wb") as file:
        file.write(b"torn")
    second = trainer.run(tiny_config(f"{root}/data", epochs=2), run, mode="train", allow_config_change=True, verbose=0)
    assert second["history"][0] == first["history"][0]  # epoch 1 restored from the bucket, not trained again
    assert len(second["history"]) == 2 and not tf.io.gfile.exists(leftover)
    with tf.io.gfile.GFile(f"{run}/log.csv") as file:
        assert len(file.read().splitlines()) == 3  # header and two epochs

    trained = load_trained(run)
    for ours, theirs in zip(trained.model.weights, second["model"].weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert (trained.class_names, load_trained(f"{run}/model.keras").class_names) == (CLASSES, CLASSES)

    # Calibration images come from the config's dataset, itself in the bucket.
    out = f"{root}/exports/b0"
    export_trained(trained, out, formats=["saved_model"], calibration=calibration_images(trained, 4))
    assert {"export.json", "saved_model"} <= {name.rstrip("/") for name in tf.io.gfile.listdir(out)}

    capsys.readouterr()
    results = {}
    for model in (run, out):
        assert predict_main(["--model", model, "--json", *images[:2]]) == 0
        results[model] = json.loads(capsys.readouterr().out)
    for ours, theirs in zip(results[run], results[out]):
        assert ours["image"] == theirs["image"]
        assert [p["class"] for p in ours["predictions"]] == [p["class"] for p in theirs["predictions"]]
        np.testing.assert_allclose([p["probability"] for p in ours["predictions"]],
                                   [p["probability"] for p in theirs["predictions"]], atol=1e-5)  # fmt: skip
    assert_no_local_url_folder(tmp_path)


@pytest.mark.parametrize("file_name", ["tiny.weights.h5", "tiny.keras"])
def test_initial_weights_from_a_bucket(tmp_path, monkeypatch, file_name):
    monkeypatch.chdir(tmp_path)
    source = efficientnet_tf.get_model("efficientnet-lite0", **TINY, num_classes=3)
    local = str(tmp_path / file_name)
    source.save_weights(local) if file_name.endswith(".weights.h5") else source.save(local)
    remote = f"{bucket()}/weights/{file_name}"
    tf.io.gfile.makedirs(remote.rsplit("/", 1)[0])
    tf.io.gfile.copy(local, remote)
    os.remove(local)
    loaded = efficientnet_tf.get_model("efficientnet-lite0", **TINY, num_classes=3, weights=remote)
    for ours, theirs in zip(loaded.weights, source.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert_no_local_url_folder(tmp_path)


def test_text_is_written_atomically_to_a_bucket(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = f"{bucket()}/run/notes.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    with tf.io.gfile.GFile(path) as file:
        assert file.read() == "second"
    assert tf.io.gfile.listdir(path.rsplit("/", 1)[0]) == ["notes.txt"]  # no temporary object left behind
    assert_no_local_url_folder(tmp_path)


def has_tensorflow_io() -> bool:
    try:
        import tensorflow_io  # noqa: F401
    except ImportError:
        return False
    return True


UNKNOWN = [("foo://bucket/run", "foo://")]
if not has_tensorflow_io():
    UNKNOWN.append(("s3://bucket/run", "pip install tensorflow-io"))


@pytest.mark.parametrize("url, text", UNKNOWN)
def test_a_scheme_tensorflow_cannot_open_is_one_line_error_before_training(tmp_path, monkeypatch, capsys, url, text):
    monkeypatch.chdir(tmp_path)
    config = tiny_config("synthetic", epochs=1)
    with pytest.raises(OSError) as error:
        trainer.prepare_model_dir(url, config)
    assert_one_line_error(error, OSError, text)
    with pytest.raises(OSError) as error:
        load_trained(url)
    assert_one_line_error(error, OSError, text)
    assert predict_main(["--model", url, "image.png"]) == 2
    assert text in capsys.readouterr().err
    assert_no_local_url_folder(tmp_path)
    assert not os.listdir(tmp_path)


def test_a_bare_keras_file_in_a_bucket_takes_the_class_names_beside_it(tmp_path):
    """The bare .keras file in a bucket, with class_names.json beside it, loads like a local one."""
    model = efficientnet_tf.get_model("efficientnet-lite0", **TINY, num_classes=2)
    local = str(tmp_path / "m.keras")
    model.save(local)
    remote_dir = f"{bucket()}/models"
    tf.io.gfile.makedirs(remote_dir)
    tf.io.gfile.copy(local, f"{remote_dir}/m.keras")
    atomic_write_text(f"{remote_dir}/class_names.json", json.dumps(CLASSES))
    trained = load_trained(f"{remote_dir}/m.keras")
    assert trained.class_names == CLASSES
    assert isinstance(trained.model, keras.Model)
