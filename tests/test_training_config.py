"""Recipes as data and the layered, typed config: golden values from the papers and the released code."""

import json

import pytest

import configs
from efficientnet_tf import get_spec, model_names
from efficientnet_tf.training.config import Config, build_config, config_from_json, differences, parse_overrides


def test_every_model_has_a_recipe_with_its_sizes_and_augmentation():
    for name in model_names():
        config = configs.recipe(name, "imagenet2012")
        assert config.model.name == name
        assert config.optimizer.lr_per_256 == 0.016 and config.optimizer.decay_rate == 0.97
        assert config.optimizer.decay_epochs == 2.4 and config.optimizer.warmup_epochs == 5
        assert config.train.ema_decay == 0.9999 and config.train.label_smoothing == 0.1
        assert config.optimizer.weight_decay == 1e-5 and config.model.survival_prob == 0.8
        assert (config.optimizer.momentum, config.optimizer.rho, config.optimizer.epsilon) == (0.9, 0.9, 1e-3)
        if name in ("efficientnetv2-s", "efficientnetv2-m", "efficientnetv2-l", "efficientnetv2-xl"):
            assert config.data.augmentation == "randaugment" and config.progressive.stages == 4
        elif name.startswith("efficientnetv2"):
            assert config.data.augmentation == "autoaugment" and config.progressive.stages == 4
        else:  # V1 and Lite: fixed size, AutoAugment (tensorflow/tpu)
            assert config.data.augmentation == "autoaugment" and config.progressive.stages == 1


@pytest.mark.parametrize(
    "name, size, magnitude, mixup, dropout",
    [("efficientnetv2-s", 300, 15, 0, 0.3), ("efficientnetv2-m", 380, 20, 0.2, 0.4), ("efficientnetv2-l", 380, 25, 0.4, 0.5)],
)
def test_paper_schedule_is_table_6(name, size, magnitude, mixup, dropout):
    c = configs.recipe(name, "imagenet2012")
    assert (c.progressive.min_image_size, c.data.image_size) == (128, size)
    assert (c.progressive.min_randaug_magnitude, c.data.randaug_magnitude) == (5, magnitude)
    assert (c.progressive.min_mixup_alpha, c.data.mixup_alpha) == (0, mixup)
    assert (c.progressive.min_dropout, c.model.dropout) == (0.1, dropout)
    assert c.progressive.style == "paper"


@pytest.mark.parametrize(
    "name, size, magnitude, alpha", [("efficientnetv2-s", 300, 10, 0), ("efficientnetv2-m", 384, 15, 0.2), ("efficientnetv2-l", 384, 20, 0.5)]
)
def test_automl_schedule_is_the_released_one(name, size, magnitude, alpha):
    c = configs.recipe(name, "imagenet2012", schedule="automl")
    assert c.progressive.style == "automl" and c.progressive.min_dropout is None  # dropout not scheduled
    assert (c.data.image_size, c.data.randaug_magnitude, c.data.mixup_alpha, c.data.cutmix_alpha) == (size, magnitude, alpha, alpha)
    assert c.model.dropout == get_spec(name).dropout  # the model's own rate, resolved


def test_finetune_presets_follow_the_paper_transfer_recipe():
    c = configs.recipe("efficientnetv2-s", "cifar10")
    assert c.model.init_weights == "imagenet" and c.progressive.stages == 1
    assert c.data.image_size == c.data.eval_size == 384  # the model's eval size
    assert c.optimizer.schedule == "constant" and c.optimizer.warmup_epochs == 1
    assert c.optimizer.lr_per_256 * c.data.batch_size / 256 == pytest.approx(0.001)
    assert c.train.ema_decay == 0.9996
    for preset in configs.PRESETS:
        assert configs.recipe("efficientnetv2-b0", preset).data.dataset == preset
    assert configs.recipe("efficientnetv2-b0", "/some/folder").data.dataset == "/some/folder"


def test_command_line_layer_is_typed_and_last():
    c = configs.recipe("efficientnetv2-s", "synthetic", overrides=parse_overrides(["--train.epochs=3", "optimizer.lr_per_256=1e-3", "--progressive.min_dropout=none"]))
    assert (c.train.epochs, c.optimizer.lr_per_256, c.progressive.min_dropout) == (3, 1e-3, None)
    assert isinstance(c.optimizer.lr_per_256, float)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"optimizer.lr": "0.1"}, "Unknown config key 'optimizer.lr'. Did you mean optimizer.lr_per_256"),
        ({"train.epoch": "3"}, "Did you mean train.epochs"),
        ({"train.epochs": "3.5"}, "'train.epochs' takes an integer, got 3.5"),
        ({"train.epochs": "many"}, "'train.epochs' takes an integer, got 'many'"),
        ({"optimizer.lr_per_256": "inf"}, "'optimizer.lr_per_256' takes a number"),
        ({"data.batch_size": True}, "takes an integer"),
        ({"model.name": 3}, "takes a string"),
    ],
)
def test_bad_overrides_are_one_line_errors_naming_the_fix(override, message):
    with pytest.raises(ValueError, match=None) as info:
        build_config(override)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_override_without_value_is_an_error():
    with pytest.raises(ValueError, match="needs a value"):
        parse_overrides(["--train.epochs"])


def test_saved_config_round_trips_and_differences_are_listed():
    c = configs.recipe("efficientnetv2-b0", "synthetic")
    assert config_from_json(json.dumps(c.to_dict())) == c
    other = build_config({"train.epochs": 5})
    assert "train.epochs: 350 -> 5" in differences(Config(), other)
    assert differences(c, c) == []


def test_an_empty_image_folder_is_a_one_line_error_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="has no class subfolders") as info:
        configs.recipe("efficientnetv2-b0", str(tmp_path))  # the folder recipe counts its images
    assert "\n" not in str(info.value)  # the folder recipe itself: tests/test_finetune_recipe.py


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.epochs": 3}, "progressive.stages must be in [1, train.epochs=3], got 4; pass more --epochs or --progressive.stages=3"),
        ({"data.image_size": 96}, "progressive.min_image_size 128 is above the end value 96"),
        ({"model.dropout": 0.05}, "progressive.min_dropout 0.1 is above the end value 0.05"),
        ({"train.epochs": 4, "optimizer.warmup_epochs": 5.0}, "optimizer.warmup_epochs must be in [0, train.epochs=4]"),
        ({"train.ema_decay": -0.5}, "train.ema_decay must be in [0, 1)"),
        ({"data.augmentation": "randaug"}, "data.augmentation must be one of randaugment, autoaugment, none"),
        ({"data.shuffle_buffer": 0}, "data.shuffle_buffer must be at least 1"),
        ({"data.synthetic_variant": "hard"}, "data.synthetic_variant must be one of shapes, fine, got 'hard'"),
        ({"train.checkpoint_every_steps": -1}, "train.checkpoint_every_steps must be at least 0 (0: only at epoch ends)"),
    ],
)
def test_relations_between_fields_are_checked_before_any_work(overrides, message):
    with pytest.raises(ValueError) as info:
        configs.recipe("efficientnetv2-s", "imagenet2012", overrides=overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_automl_style_never_schedules_dropout():
    from efficientnet_tf.training.trainer import stages

    plan = stages(configs.recipe("efficientnetv2-s", "imagenet2012", "automl", {"progressive.min_dropout": 0.1}))
    assert [s.image_size for s in plan] == [171, 214, 257, 300] and {s.dropout for s in plan} == {None}
    plan = stages(configs.recipe("efficientnetv2-s", "imagenet2012"))
    assert [s.image_size for s in plan] == [128, 185, 243, 300] and [s.first_epoch for s in plan] == [0, 87, 175, 262]
    assert [round(s.dropout, 3) for s in plan] == [0.1, 0.167, 0.233, 0.3]


def test_resolve_fills_the_models_values_once_and_config_json_states_them(tmp_path):
    from efficientnet_tf.training.config import resolve
    from efficientnet_tf.training.trainer import prepare_model_dir

    config = resolve({"model.name": "efficientnetv2-b1", "data.augmentation": "none", "train.epochs": 8})
    # efficientnetv2-b1's ModelSpec: trains at 192 px, evaluates at 240 px, head dropout 0.2.
    assert (config.data.image_size, config.data.eval_size, config.model.dropout) == (192, 240, 0.2)
    assert config.data.augmentation is None  # one spelling: `none` on the command line is None in the config
    assert resolve(config) == config
    prepare_model_dir(str(tmp_path), config)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["data"]["image_size"], saved["data"]["eval_size"], saved["model"]["dropout"]) == (192, 240, 0.2)
    assert saved["data"]["augmentation"] is None


def test_a_run_saved_before_resolution_still_resumes_and_a_real_change_is_one_line(tmp_path):
    from efficientnet_tf.training.config import resolve
    from efficientnet_tf.training.trainer import prepare_model_dir

    config = resolve({"model.name": "efficientnetv2-b0", "data.augmentation": "none", "train.epochs": 8})
    old = config.to_dict()  # as older versions saved it: the model's values as 0/None, augmentation as text
    old["data"].update(image_size=0, eval_size=0, augmentation="none")
    old["model"]["dropout"] = None
    (tmp_path / "config.json").write_text(json.dumps(old))
    prepare_model_dir(str(tmp_path), config)  # the same run: no error
    with pytest.raises(ValueError, match=r"another config \(data.image_size: 192 -> 160\); use a new --model_dir") as info:
        prepare_model_dir(str(tmp_path), resolve(config, {"data.image_size": 160}))
    assert "\n" not in str(info.value)


def test_the_synthetic_variant_reaches_the_trainers_data():
    from efficientnet_tf.training.config import resolve
    from efficientnet_tf.training.trainer import make_data

    config = resolve({"model.name": "efficientnetv2-b0", "data.synthetic_variant": "fine", "data.batch_size": 4,
                      "data.synthetic_train": 8, "data.synthetic_eval": 4, "data.image_size": 32, "data.eval_size": 32,
                      "progressive.stages": 1})
    _, _, info = make_data(config)
    assert info.class_names[:1] + info.class_names[5:6] == ["red_horizontal", "red_vertical"]
