"""Image folders (formats, bad files, errors), TFDS (offline) and sharding."""

import io
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf.data import folder_source, make_datasets, tfds_source


def save(path, fmt="JPEG", mode="RGB", size=(20, 16), seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    a = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    Image.fromarray(a).convert(mode).save(path, fmt)


def jpeg_bytes():
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "train"
    for c in ("cat", "dog"):
        save(f"{root}/{c}/a.JPG")
        save(f"{root}/{c}/b.png", "PNG", "RGBA")
        save(f"{root}/{c}/sub/c.jpeg", mode="L")
        save(f"{root}/{c}/d.Bmp", "BMP")
        save(f"{root}/{c}/e.gif", "GIF")
        save(f"{root}/{c}/f.jpg", mode="CMYK", size=(4, 3))  # smaller than target
        (root / c / "notes.txt").write_text("not an image, ignored by extension")
    return root


def read_all(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_folder_formats_and_deterministic_split(folder):
    a, b = folder_source(str(folder), validation_fraction=0.34), folder_source(str(folder), validation_fraction=0.34)
    assert a.class_names == ["cat", "dog"] and (a.train.size, a.eval.size) == (8, 4)
    assert [p for p, _ in a.eval.make().as_numpy_iterator()] == [p for p, _ in b.eval.make().as_numpy_iterator()]
    train_paths = {p for p, _ in a.train.make().as_numpy_iterator()}
    assert not train_paths & {p for p, _ in a.eval.make().as_numpy_iterator()}
    train, ev, info = make_datasets(a, family="efficientnet", image_size=24, batch_size=4, eval_batch_size=3)
    assert sum(x.shape[0] for x, _ in read_all(train)) == 8
    images = np.concatenate([x for x, _ in read_all(ev)])
    assert images.shape == (4, 24, 24, 3) and info.bad_files == []


def test_bad_files_are_skipped_counted_and_warned_once(folder, caplog):
    cat = folder / "cat"
    (cat / "zero.jpg").write_bytes(b"")
    (cat / "text.png").write_text("hello, not a png")
    (cat / "truncated.jpg").write_bytes(jpeg_bytes()[:200])
    corrupt = bytearray(jpeg_bytes())
    corrupt[400:420] = b"\x00" * 20  # breaks a marker mid-file: only decoding notices
    (cat / "corrupt.jpg").write_bytes(bytes(corrupt))
    caplog.set_level(logging.WARNING, logger="efficientnet_tf.data")
    src = folder_source(str(folder), eval_dir=str(folder))
    scan = [r for r in caplog.records if "while scanning" in r.getMessage()]
    assert len(scan) == 1 and "skipped 2" in scan[0].getMessage() and "zero.jpg" in scan[0].getMessage()
    train, _, info = make_datasets(src, family="efficientnetv2", image_size=16, batch_size=1, augmentation=None)
    assert sum(x.shape[0] for x, _ in read_all(train)) == 12  # 14 pass the scan, 2 of them fail to decode
    decode = [r for r in caplog.records if "failed to decode" in r.getMessage()]
    assert len(decode) == 1 and "skipped 2" in decode[0].getMessage()
    assert "truncated.jpg" in decode[0].getMessage() and "corrupt.jpg" in decode[0].getMessage()
    assert len(info.bad_files) == 4
    caplog.clear()  # a second scan (train.py's folder recipe counts the images first) still skips, warns no more
    again = folder_source(str(folder), eval_dir=str(folder))
    assert again.train.size == 14 and len(again.train.scanned.paths) == 2
    assert not [r for r in caplog.records if "while scanning" in r.getMessage()]


@pytest.mark.parametrize(
    "layout,match",
    [
        ({}, "no class subfolders"),
        ({"only": 2}, "at least 2"),
        ({"a": 2, "empty": 0}, "has no images"),
    ],
)
def test_folder_errors_before_training(tmp_path, layout, match):
    for c, n in layout.items():
        os.makedirs(tmp_path / c)
        for i in range(n):
            save(f"{tmp_path}/{c}/{i}.png", "PNG")
    with pytest.raises(ValueError, match=match):
        folder_source(str(tmp_path))


def test_missing_folder_and_eval_class_mismatch(folder, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        folder_source(str(tmp_path / "nope"))
    save(f"{tmp_path}/val/cow/x.png", "PNG")
    with pytest.raises(ValueError, match="cow"):
        folder_source(str(folder), eval_dir=str(tmp_path / "val"))


def test_tfds_dataset_through_tfds_testing_builder(tmp_path):
    import tensorflow_datasets as tfds

    tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()  # TFDS's offline fake MNIST
    train, ev, info = make_datasets(
        "dummy_mnist", data_dir=str(tmp_path), family="efficientnetv2-base", image_size=32, batch_size=4
    )
    assert info.class_names == [str(i) for i in range(10)] and (info.num_train, info.num_eval) == (20, 20)
    x, y = next(iter(train))
    assert x.shape == (4, 32, 32, 3) and y.shape == (4, 10)
    assert sum(int(x.shape[0]) for x, _ in ev) == 20


def test_tfds_not_prepared_fails_fast_with_instructions(tmp_path):
    with pytest.raises(ValueError, match="tfds build cifar10"):
        tfds_source("cifar10", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no dataset"):
        tfds_source("no_such_dataset_xyz", data_dir=str(tmp_path))


def test_tfds_mock_data_yields_batches(tmp_path):
    import tensorflow_datasets as tfds

    tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):  # random images, real metadata
        train, _, _ = make_datasets("dummy_mnist", data_dir=str(tmp_path), family="efficientnet", image_size=16, batch_size=4)
        assert sum(int(x.shape[0]) for x, _ in train) == 12


def test_sharding_splits_examples_between_workers(folder):
    src = folder_source(str(folder), eval_dir=str(folder))
    seen = []
    for worker in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        _, ev, _ = make_datasets(src, family="efficientnet", image_size=16, batch_size=4, input_context=ctx)
        batches = read_all(ev)
        assert max(x.shape[0] for x, _ in batches) == 2  # per-replica batch
        seen.append(sum(x.shape[0] for x, _ in batches))
    assert seen == [6, 6]


def test_archive_folders_webp_and_tiff(tmp_path, caplog):
    for c in ("cat", "dog"):
        save(f"{tmp_path}/{c}/a.png", "PNG")
        save(f"{tmp_path}/{c}/b.webp", "WEBP")
        save(f"{tmp_path}/{c}/c.tif", "TIFF")
    save(f"{tmp_path}/__MACOSX/cat/._a.png", "PNG")  # what macOS zips carry along
    save(f"{tmp_path}/cat/__MACOSX/x.png", "PNG")
    caplog.set_level(logging.WARNING, logger="efficientnet_tf.data")
    src = folder_source(str(tmp_path), eval_dir=str(tmp_path))
    assert src.class_names == ["cat", "dog"] and src.train.size == 4  # png + webp per class
    tiff = [r.getMessage() for r in caplog.records if "cannot decode" in r.getMessage()]
    assert len(tiff) == 1 and "skipped 2" in tiff[0] and "c.tif" in tiff[0]
    train, _, info = make_datasets(src, family="efficientnet", image_size=16, batch_size=2, augmentation=None)
    assert sum(x.shape[0] for x, _ in read_all(train)) == 4 and info.num_train == 4


def test_palette_bmp_decodes_with_its_colours(tmp_path):
    colour = (200, 30, 90)  # TensorFlow alone reads the palette index (0) as grey: black
    palette = Image.new("RGB", (12, 10), colour).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    for c in ("a", "b"):
        os.makedirs(tmp_path / c)
        palette.save(tmp_path / c / "p.bmp", "BMP")
    assert (tmp_path / "a" / "p.bmp").read_bytes()[28] == 8  # 8 bits per pixel: a palette BMP
    _, ev, _ = make_datasets(
        folder_source(str(tmp_path), eval_dir=str(tmp_path)), family="efficientnetv2", image_size=12, batch_size=1
    )
    for image, _ in read_all(ev):
        np.testing.assert_allclose(image.reshape(-1, 3), np.broadcast_to(colour, (12 * 12, 3)), atol=1)


def test_class_of_only_unreadable_files_is_an_error(tmp_path):
    save(f"{tmp_path}/good/a.png", "PNG")
    save(f"{tmp_path}/good/b.png", "PNG")
    os.makedirs(tmp_path / "broken")
    (tmp_path / "broken" / "a.jpg").write_bytes(b"")
    (tmp_path / "broken" / "b.png").write_text("not a png")
    with pytest.raises(ValueError, match="broken.*no readable image"):
        folder_source(str(tmp_path))


def test_decode_failures_lower_num_train_once_and_are_listed_once(folder):
    corrupt = bytearray(jpeg_bytes())
    corrupt[400:420] = b"\x00" * 20  # passes the scan, fails to decode
    (folder / "cat" / "corrupt.jpg").write_bytes(bytes(corrupt))
    train, _, info = make_datasets(
        folder_source(str(folder), eval_dir=str(folder)), family="efficientnet", image_size=16, batch_size=1,
        augmentation=None,
    )  # fmt: skip
    assert info.num_train == 13 and info.bad_files == []
    for _ in range(2):  # two epochs: counted once, listed once
        assert sum(x.shape[0] for x, _ in read_all(train)) == 12
    assert info.num_train == 12 and info.bad_files == [str(folder / "cat" / "corrupt.jpg")]


def test_broken_symlinks_and_loops_are_skipped_and_counted(folder, caplog):
    cat = folder / "cat"
    os.symlink(cat / "missing.jpg", cat / "dangling.jpg")
    os.symlink(cat / "loop_b.png", cat / "loop_a.png")
    os.symlink(cat / "loop_a.png", cat / "loop_b.png")
    os.symlink(cat, cat / "sub" / "back_to_cat")  # a folder loop
    os.symlink(folder / "dog" / "a.JPG", cat / "linked.jpg")  # a good link is used
    caplog.set_level(logging.WARNING, logger="efficientnet_tf.data")
    src = folder_source(str(folder), eval_dir=str(folder))
    assert src.train.size == 13
    scan = [r.getMessage() for r in caplog.records if "while scanning" in r.getMessage()]
    assert len(scan) == 1 and "skipped 3" in scan[0]


def test_a_clean_folder_pass_logs_nothing_from_tensorflow(folder):
    """The end-of-pass marker is not a file: TF must not log a failed read for it on every pass."""
    import subprocess
    import sys

    script = (f"from efficientnet_tf.data import make_datasets\n"
              f"train, _, _ = make_datasets({str(folder)!r}, family='efficientnetv2', image_size=16, batch_size=4)\n"
              f"for _ in train.take(6): pass\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OP_REQUIRES failed" not in result.stderr and "NOT_FOUND" not in result.stderr, result.stderr[-2000:]
