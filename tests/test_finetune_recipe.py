"""The image-folder fine-tuning recipe: its values, how they scale with the folder, and a real `train.py` run on one."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import configs
from configs.datasets import EMA_SPAN, FOLDER_EPOCHS, FOLDER_STEPS, WARMUP_FRACTION

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_folder(root, counts, size=8):
    """root/<class>/<i>.png, `counts[c]` small RGB images per class."""
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        os.makedirs(root / name, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(root / name / f"{i}.png")
    return str(root)


def folder_recipe(tmp_path, train_images, model="efficientnetv2-b0", **overrides):
    """The recipe for a 2-class folder of `train_images` (69% one class) with a separate 4-image eval folder."""
    major = round(train_images * 0.69)
    train = make_folder(tmp_path / f"train{train_images}", {"cats": major, "dogs": train_images - major})
    held = make_folder(tmp_path / "val", {"cats": 2, "dogs": 2})
    return configs.recipe(model, train, overrides={"data.eval_dir": held, **overrides})


def run_steps(config, train_images):
    return config.train.epochs * (train_images // config.data.batch_size)


def test_a_folder_gets_the_finetuning_recipe_at_the_models_own_size(tmp_path):
    c = folder_recipe(tmp_path, 640, model="efficientnetv2-m")
    assert c.model.init_weights == "imagenet" and c.progressive.stages == 1
    assert c.data.image_size == c.data.eval_size == 480  # V2-M's eval size
    assert (c.optimizer.name, c.optimizer.schedule, c.optimizer.weight_decay) == ("adam", "cosine", 0.0)
    assert (c.data.augmentation, c.data.randaug_magnitude) == ("randaugment", 5.0)
    assert c.data.mixup_alpha == c.data.cutmix_alpha == 0.0  # V2-M's ImageNet recipe has 0.2


@pytest.mark.parametrize("train_images", [320, 2000, 6400])
def test_epochs_warmup_and_ema_follow_the_folders_size(tmp_path, train_images):
    c = folder_recipe(tmp_path, train_images)
    steps_per_epoch = train_images // c.data.batch_size
    steps = run_steps(c, train_images)
    assert FOLDER_EPOCHS[0] <= c.train.epochs <= FOLDER_EPOCHS[1]
    if FOLDER_EPOCHS[0] < c.train.epochs < FOLDER_EPOCHS[1]:
        assert abs(steps - FOLDER_STEPS) <= steps_per_epoch / 2  # the nearest whole number of epochs
    assert c.optimizer.warmup_epochs == pytest.approx(WARMUP_FRACTION * c.train.epochs, abs=1e-3)
    assert c.train.ema_decay == pytest.approx(1 - 1 / (EMA_SPAN * steps), abs=1e-5)  # averages the last tenth


def test_a_larger_folder_gets_fewer_epochs_and_a_longer_average(tmp_path):
    small, large = folder_recipe(tmp_path, 320), folder_recipe(tmp_path, 2000)
    assert small.train.epochs > large.train.epochs
    assert small.train.ema_decay < large.train.ema_decay


def test_the_command_lines_epochs_and_batch_size_set_the_derived_values(tmp_path):
    c = folder_recipe(tmp_path, 2000, **{"train.epochs": "8", "data.batch_size": "64"})
    assert (c.train.epochs, c.data.batch_size) == (8, 64)
    assert c.train.ema_decay == pytest.approx(1 - 1 / (EMA_SPAN * 8 * (2000 // 64)), abs=1e-5)
    assert c.optimizer.warmup_epochs == pytest.approx(WARMUP_FRACTION * 8)
    c = folder_recipe(tmp_path, 2000, **{"train.ema_decay": "0", "optimizer.warmup_epochs": "2"})
    assert (c.train.ema_decay, c.optimizer.warmup_epochs) == (0.0, 2.0)  # what the user set wins


def test_a_run_too_short_to_average_gets_no_ema(tmp_path):
    c = folder_recipe(tmp_path, 64, **{"train.epochs": "1"})  # 2 steps
    assert c.train.ema_decay == 0.0


def test_without_an_eval_folder_the_held_out_tenth_is_not_counted(tmp_path):
    folder = make_folder(tmp_path / "all", {"cats": 700, "dogs": 300})
    c = configs.recipe("efficientnetv2-b0", folder, overrides={"train.epochs": "10"})
    assert c.train.ema_decay == pytest.approx(1 - 1 / (EMA_SPAN * 10 * (900 // 32)), abs=1e-5)


def test_a_folder_without_init_weights_warns_that_it_trains_from_scratch(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        c = folder_recipe(tmp_path, 320, **{"model.init_weights": "none"})
    assert c.model.init_weights is None
    assert "trains from scratch" in caplog.text and "--init_weights=imagenet" in caplog.text


def test_the_benchmark_datasets_keep_the_papers_transfer_recipe(tmp_path):
    for preset in ("cifar10", "tf_flowers", "oxford_flowers102"):
        c = configs.recipe("efficientnetv2-b0", preset)
        assert (c.optimizer.name, c.optimizer.schedule, c.train.ema_decay) == ("rmsprop", "constant", 0.9996)


@pytest.mark.slow
def test_train_py_fine_tunes_a_folder_from_a_weights_file(tmp_path):
    import efficientnet_tf

    tiny = {"width": 0.5, "depth": 0.3}
    weights = str(tmp_path / "backbone.weights.h5")
    efficientnet_tf.get_model("efficientnetv2-b0", num_classes=10, **tiny).save_weights(weights)
    train = make_folder(tmp_path / "train", {"cats": 22, "dogs": 10}, size=40)
    held = make_folder(tmp_path / "val", {"cats": 4, "dogs": 4}, size=40)
    run = tmp_path / "run"
    args = ["--model=efficientnetv2-b0", "--model.width=0.5", "--model.depth=0.3", f"--dataset={train}",
            f"--eval_dir={held}", f"--init_weights={weights}", "--epochs=1", "--batch_size=16",
            "--data.image_size=32", "--data.eval_size=32", f"--model_dir={run}"]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = [line for line in result.stdout.splitlines() if "from backbone.weights.h5" in line]
    assert len(loaded) == 1 and "; head (" in loaded[0] and "-> 2) starts fresh" in loaded[0], result.stdout[-3000:]
    assert os.path.exists(run / "model.keras")
    # Top-5 of 2 classes is always 1: neither printed nor logged.
    assert "top5" not in result.stdout and "top-5" not in result.stdout and "top1" in result.stdout
    assert "top5" not in (run / "log.csv").read_text().splitlines()[0]
