"""`load_trained`: a training directory (its model.keras, else its newest checkpoint's EMA weights) or a bare .keras file.

Also: `train.py --mode=eval` restores the same weights, and every bad path is a one-line error.
"""

import json

import keras
import numpy as np
import pytest

import efficientnet_tf
from efficientnet_tf.training import Trained, load_trained, trainer
from efficientnet_tf.training.checkpoint import Checkpointer
from efficientnet_tf.training.config import build_config
from efficientnet_tf.training.ema import ExponentialMovingAverage

IMAGE_SIZE = 48
NAMES = ["a", "b", "c"]


def tiny_model(width: float = 0.25, **options) -> keras.Model:
    return efficientnet_tf.get_model("efficientnet-lite0", width=width, depth=0.25, num_classes=len(NAMES), **options)


def write_config(directory, width: float = 0.25, ema_decay: float = 0.9, **overrides) -> None:
    """config.json and class_names.json as train.py writes them."""
    config = build_config({"model.name": "efficientnet-lite0", "model.width": width, "model.depth": 0.25,
                           "data.eval_size": IMAGE_SIZE, "train.ema_decay": ema_decay, **overrides})  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config.to_dict()))
    (directory / "class_names.json").write_text(json.dumps(NAMES))


def write_checkpoint(directory, width: float, ema_offset: float = None) -> keras.Model:
    """A training directory as train.py leaves it mid-run: config, class names, one checkpoint, no model.keras.

    With `ema_offset` the EMA shadows are the raw weights plus it, so the test
    can tell which ones were loaded; without it the run has no EMA. Returns a
    model holding the weights inference must use.
    """
    write_config(directory, width, ema_decay=0.0 if ema_offset is None else 0.9)
    model = tiny_model(width)
    model.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    ema = None if ema_offset is None else ExponentialMovingAverage(0.9)
    if ema is not None:
        ema.build(model)
        for average in ema.variables:
            average.assign(average + ema_offset)
    checkpointer = Checkpointer(str(directory), ema=ema, verbose=0)
    checkpointer.set_model(model)
    checkpointer.on_epoch_end(0)
    if ema is not None:
        ema.copy_to_model()
    return model


def assert_same_weights(ours: keras.Model, theirs: keras.Model) -> None:
    assert len(ours.weights) == len(theirs.weights)
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_training_dir_without_final_model_gives_the_checkpoints_ema_weights(tmp_path):
    expected = write_checkpoint(tmp_path, width=0.25, ema_offset=0.01)
    trained = load_trained(str(tmp_path))
    assert (trained.class_names, trained.family, trained.image_size) == (NAMES, "efficientnet-lite", IMAGE_SIZE)
    assert trained.config.model.name == "efficientnet-lite0"
    assert_same_weights(trained.model, expected)


def test_training_dir_trained_without_ema_gives_the_raw_weights(tmp_path):
    expected = write_checkpoint(tmp_path, width=0.25)
    assert_same_weights(load_trained(str(tmp_path)).model, expected)


def test_final_model_wins_over_checkpoints_from_the_directory_or_its_file(tmp_path):
    write_checkpoint(tmp_path, width=0.25, ema_offset=0.01)
    final = tiny_model()
    final.save(str(tmp_path / "model.keras"))
    for path in (tmp_path, tmp_path / "model.keras"):
        trained = load_trained(str(path))
        assert (trained.class_names, trained.image_size, trained.config.model.width) == (NAMES, IMAGE_SIZE, 0.25)
        assert_same_weights(trained.model, final)


def test_without_eval_size_in_the_config_the_models_default_is_used(tmp_path):
    write_checkpoint(tmp_path, width=0.25, ema_offset=0.0)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["data"]["eval_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert load_trained(str(tmp_path)).image_size == efficientnet_tf.get_spec("efficientnet-lite0").eval_size


def test_bare_keras_file_names_classes_by_the_file_beside_it_or_by_index(tmp_path):
    model = tiny_model(input_shape=(40, 40, 3))
    model.save(str(tmp_path / "fixed.keras"))
    trained = load_trained(str(tmp_path / "fixed.keras"))
    assert (trained.class_names, trained.family, trained.image_size, trained.config) == (
        ["class_0", "class_1", "class_2"], "efficientnet-lite", 40, None)
    assert_same_weights(trained.model, model)
    tiny_model().save(str(tmp_path / "any_size.keras"))
    (tmp_path / "class_names.json").write_text(json.dumps(NAMES))
    trained = load_trained(str(tmp_path / "any_size.keras"))
    assert (trained.class_names, trained.image_size) == (NAMES, efficientnet_tf.get_spec("efficientnet-lite0").eval_size)


def test_eval_mode_of_the_trainer_restores_what_load_trained_gives(tmp_path):
    overrides = {"model.name": "efficientnet-lite0", "model.width": 0.25, "model.depth": 0.1, "data.batch_size": 4,
                 "data.image_size": 32, "data.eval_size": 32, "data.synthetic_train": 8, "data.synthetic_eval": 4,
                 "progressive.stages": 1, "train.epochs": 1, "optimizer.warmup_epochs": 0, "train.ema_decay": 0.5,
                 "train.mixed_precision": "float32"}  # fmt: skip
    run = tmp_path / "run"
    trained = trainer.run(build_config(overrides), str(run), mode="train", verbose=0)
    (run / "model.keras").unlink()  # so load_trained reads the checkpoint, as the eval mode does
    evaluated = trainer.run(build_config(overrides), str(run), mode="eval", verbose=0)
    loaded = load_trained(str(run))
    assert_same_weights(evaluated["model"], trained["model"])  # the EMA weights train.py evaluated and saved
    assert_same_weights(loaded.model, trained["model"])
    assert evaluated["top1"] == trained["top1"] and evaluated["loss"] == pytest.approx(trained["loss"], rel=1e-6)


def write_other_file(tmp_path) -> str:
    (tmp_path / "model.h5").write_bytes(b"weights")
    return str(tmp_path / "model.h5")


def write_garbage_keras(tmp_path) -> str:
    (tmp_path / "broken.keras").write_bytes(b"not a zip archive\nat all")
    return str(tmp_path / "broken.keras")


def write_unnamed_keras(tmp_path) -> str:
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)), name="mine").save(
        str(tmp_path / "mine.keras"))
    return str(tmp_path / "mine.keras")


def write_mismatched_checkpoint(tmp_path) -> str:
    write_checkpoint(tmp_path, width=0.5, ema_offset=0.0)
    write_config(tmp_path, width=0.25)
    return str(tmp_path)


def write_names_only(tmp_path) -> str:
    write_config(tmp_path)
    return str(tmp_path)


def write_config_only(tmp_path) -> str:
    write_config(tmp_path)
    (tmp_path / "class_names.json").unlink()
    return str(tmp_path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: str(tmp / "nothing"), "does not exist; pass a training directory or a .keras file."),
        (write_other_file, "is neither a training directory nor a .keras file; pass one of those."),
        (lambda tmp: str(tmp), "has no config.json, so it is not a training directory; pass the --model_dir"),
        (write_config_only, "has no class_names.json; train there first"),
        (write_names_only, "has neither model.keras nor a ckpt-*.npz checkpoint; train there first."),
        (write_mismatched_checkpoint, "does not match the model in config.json"),
        (write_garbage_keras, "as a Keras model ("),
        (write_unnamed_keras, "'mine' is not named after a registry model"),
    ],
)
def test_bad_paths_are_one_line_errors_naming_the_fix(tmp_path, make, message):
    with pytest.raises(ValueError) as error:
        load_trained(make(tmp_path))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_class_names_must_match_the_outputs():
    with pytest.raises(ValueError, match="class_names has 2 names but the model has 3 outputs; pass one name per class."):
        Trained(tiny_model(), ["a", "b"], "efficientnet-lite", IMAGE_SIZE)
