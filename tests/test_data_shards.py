"""TFRecord shards in the official ImageNet layout: written from a folder, read as the folder's pixels."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from harness import assert_one_line_error
from PIL import Image

from efficientnet_tf.data import make_datasets, shard_source
from efficientnet_tf.data.badfiles import BadFileLog
from efficientnet_tf.data.pipeline import resolve_source
from efficientnet_tf.data.shards import main as write_main
from efficientnet_tf.data.sources import Source, Split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("cat", "dog", "emu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """8 images a class: JPEGs of several sizes, a PNG and a grey JPEG, so both decode paths run."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c in CLASSES:
        os.makedirs(root / c)
        for i in range(6):
            pixels = (rng.random((28 + 3 * i, 36 - 2 * i, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.jpg", quality=90)
        Image.fromarray((rng.random((30, 30, 3)) * 255).astype(np.uint8)).save(root / c / "p.png")
        Image.fromarray((rng.random((26, 34)) * 255).astype(np.uint8)).save(root / c / "g.jpeg")
    return str(root)


def write(folder, out, train_shards, validation_shards=1):
    assert write_main([folder, str(out), f"--train_shards={train_shards}", f"--validation_shards={validation_shards}",
                       "--validation_fraction=0.25"]) == 0  # fmt: skip
    return str(out)


@pytest.fixture(scope="module")
def one_shard(folder, tmp_path_factory):
    return write(folder, tmp_path_factory.mktemp("one"), 1)


def files_in_record_order(folder, shard):
    """The folder's (path, class) pairs in the order the shard holds them, read back from `image/filename`."""
    pairs = []
    for record in tf.data.TFRecordDataset(shard).as_numpy_iterator():
        features = tf.train.Example.FromString(record).features.feature
        name = features["image/filename"].bytes_list.value[0].decode()
        pairs.append((os.path.join(folder, name), features["image/class/label"].int64_list.value[0] - 1))
    return pairs


def as_folder_split(pairs):
    paths, labels = [p for p, _ in pairs], np.array([y for _, y in pairs], np.int32)
    return Split(lambda: tf.data.Dataset.from_tensor_slices((paths, labels)), "path", len(pairs), BadFileLog("test"))


@pytest.mark.parametrize("family, augmentation", [("efficientnet", "autoaugment"), ("efficientnetv2", "randaugment")])
def test_shards_give_the_folder_pipelines_pixels_and_classes(folder, one_shard, family, augmentation):
    shards = shard_source(one_shard)
    assert shards.class_names == list(CLASSES) and (shards.train.size, shards.eval.size) == (18, 6)
    train_pairs = files_in_record_order(folder, os.path.join(one_shard, "train-00000-of-00001"))
    eval_pairs = files_in_record_order(folder, os.path.join(one_shard, "validation-00000-of-00001"))
    assert sorted(y for _, y in train_pairs + eval_pairs) == sorted(list(range(3)) * 8)
    files = Source("files", as_folder_split(train_pairs), as_folder_split(eval_pairs), list(CLASSES))
    options = dict(family=family, image_size=24, batch_size=6, augmentation=augmentation, seed=3)
    ours, theirs = make_datasets(shards, **options), make_datasets(files, **options)
    for a, b in [(ours[0], theirs[0]), (ours[1], theirs[1])]:  # train (one keyed pass), then eval
        batches = list(zip(a, b))
        assert len(batches) == (3 if a is ours[0] else 1)
        for (x, y), (x_ref, y_ref) in batches:
            np.testing.assert_array_equal(x.numpy(), x_ref.numpy())
            np.testing.assert_array_equal(y.numpy(), y_ref.numpy())


def test_interleaved_shards_give_the_same_batches_for_the_same_seed(folder, tmp_path):
    """Three shards read in parallel: a seed fixes every pass (order and crops); the next pass differs."""
    out = write(folder, tmp_path / "out", 3)
    options = dict(family="efficientnetv2", image_size=16, batch_size=6, augmentation=None, seed=5)
    passes = [[x.numpy() for x, _ in make_datasets(shard_source(out), **options)[0].repeat().take(6)] for _ in range(2)]
    np.testing.assert_array_equal(np.stack(passes[0]), np.stack(passes[1]))
    assert not np.array_equal(np.stack(passes[0][:3]), np.stack(passes[0][3:]))  # pass 1 is not pass 0 again


def records(ds):
    return [x for x, _ in ds.as_numpy_iterator()]


@pytest.mark.parametrize("train_shards", [2, 3, 1])
def test_two_input_pipelines_read_every_record(folder, tmp_path, train_shards):
    source = shard_source(write(folder, tmp_path / "out", train_shards, validation_shards=2))
    everything = sorted(records(source.train.make()))
    parts = [records(source.train.make_shard(2, i)) for i in range(2)]
    assert len(everything) == 18
    if train_shards != 3:  # 2 shards split by file, 1 by record: each record once
        assert [len(p) for p in parts] == [9, 9] and sorted(parts[0] + parts[1]) == everything
    else:  # shards of 6: pipeline 0 reads two (12 records), pipeline 1 one, and repeats 3 up to its share of 9
        assert [len(p) for p in parts] == [12, 9] and parts[1][6:] == parts[1][:3]
        assert sorted(parts[0] + parts[1][:6]) == everything
    evaluation = [records(source.eval.make_shard(2, i)) for i in range(2)]
    assert sorted(evaluation[0] + evaluation[1]) == sorted(records(source.eval.make())) and len(evaluation[0]) == 3


def test_shards_on_another_filesystem_read_the_same(one_shard):
    """gfile paths (here TF's in-memory ram://, as gs:// would be) are listed, sized and read like local ones."""
    remote = "ram://test_data_shards/one"
    tf.io.gfile.makedirs(remote)
    for name in tf.io.gfile.listdir(one_shard):
        tf.io.gfile.copy(os.path.join(one_shard, name), f"{remote}/{name}", overwrite=True)
    local, source = shard_source(one_shard), shard_source(remote)
    assert source.class_names == list(CLASSES) and (source.train.size, source.eval.size) == (18, 6)
    assert records(source.train.make()) == records(local.train.make())


def test_a_truncated_shard_is_skipped_and_named(folder, tmp_path, caplog):
    out = write(folder, tmp_path / "out", 3)
    broken = os.path.join(out, "train-00001-of-00003")
    data = open(broken, "rb").read()
    with open(broken, "wb") as f:
        f.write(data[: len(data) // 2])
    caplog.set_level(logging.WARNING, logger="efficientnet_tf.data")
    source = shard_source(out)
    warned = [r.getMessage() for r in caplog.records if "corrupt or truncated" in r.getMessage()]
    assert len(warned) == 1 and broken in warned[0] and "skipped 1 unreadable shard(s)" in warned[0]
    assert source.train.size == 12 and len(records(source.train.make())) == 12
    train, _, info = make_datasets(source, family="efficientnetv2", image_size=16, batch_size=4, augmentation=None, seed=0)
    assert sum(int(x.shape[0]) for x, _ in train) == 12 and info.bad_files == [broken]


def test_bad_shard_folders_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError) as error:
        resolve_source("tfrecord")
    assert_one_line_error(error, ValueError, "The tfrecord dataset needs --data_dir=")
    with pytest.raises(ValueError) as error:
        shard_source(str(tmp_path))
    assert_one_line_error(error, ValueError, f"No TFRecord shards match {os.path.join(str(tmp_path), 'train-*')!r}")
    for split in ("train", "validation"):
        with tf.io.TFRecordWriter(str(tmp_path / f"{split}-00000-of-00001")) as writer:
            label = tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))
            writer.write(tf.train.Example(features=tf.train.Features(feature={"image/class/label": label})).SerializeToString())
    with pytest.raises(ValueError) as error:
        shard_source(str(tmp_path))
    assert_one_line_error(error, ValueError, "has no feature 'image/encoded'")


@pytest.mark.slow
def test_train_py_on_tfrecord_shards(folder, one_shard, tmp_path):
    args = ["--dataset=tfrecord", f"--data_dir={one_shard}", "--model=efficientnetv2-b0", "--model.width=0.25",
            "--model.depth=0.2", "--batch_size=6", "--data.image_size=32", "--data.eval_size=32", "--epochs=1",
            "--progressive.stages=1", "--optimizer.warmup_epochs=0", "--init_weights=none", f"--model_dir={tmp_path / 'run'}"]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    result = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(18 train, 6 eval images" in result.stdout, result.stdout[-2000:]
    assert open(tmp_path / "run" / "class_names.json").read().strip() == '["cat", "dog", "emu"]'
