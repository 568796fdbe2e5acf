"""Precision and strategy defaults follow the hardware; TF_CONFIG mistakes are one line; mixed precision trains.

The startup watchdog is tested on a real lone worker in test_distribute_multi_worker.py."""

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import efficientnet_tf
from efficientnet_tf.training import Checkpointer, ExponentialMovingAverage, build_config, restore, trainer
from efficientnet_tf.training.hardware import cpu_has_bf16, describe, describe_cpu, is_chief, make_strategy, pick_precision


def test_describe_cpu_names_the_instructions_speed_depends_on(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("model name\t: Some CPU\nflags\t\t: fpu sse avx2 fma avx512f avx512_vnni\n")
    assert describe_cpu(str(path)).startswith("Some CPU, ")
    assert describe_cpu(str(path)).endswith(" cores, avx2 avx512f avx512_vnni")


def test_bf16_only_where_the_cpu_has_native_bf16(tmp_path):
    for flags, expected in (("fpu avx2 fma", False), ("avx2 avx512f avx512_bf16", True), ("avx2 amx_bf16 amx_tile", True)):
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert cpu_has_bf16(str(path)) is expected
    assert cpu_has_bf16(str(tmp_path / "missing")) is False


def test_auto_precision_on_this_machine():
    expected = "mixed_bfloat16" if cpu_has_bf16() else "float32"
    assert not tf.config.list_physical_devices("GPU")  # CI has no GPU
    assert pick_precision("auto") == expected
    assert pick_precision("auto", tf.distribute.get_strategy()) == expected
    assert pick_precision("float32") == "float32"
    with pytest.raises(ValueError, match="mixed_precision must be one of auto, float32"):
        pick_precision("bf16")


def test_strategies(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert make_strategy("auto") is tf.distribute.get_strategy()
    one = make_strategy("one_device")
    assert one.num_replicas_in_sync == 1 and is_chief(one)
    assert describe(one) == "OneDeviceStrategy, 1 replica(s)"
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_strategy("horovod")
    with pytest.raises(ValueError, match=r"startup_timeout must be in \(0.0, inf\]"):
        make_strategy("multi_worker", startup_timeout=0)


@pytest.mark.parametrize(
    "tf_config, message",
    [
        ("", "strategy multi_worker needs the cluster in TF_CONFIG, e.g. TF_CONFIG='{\"cluster\""),
        ("{cluster:", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["a:1", "b:1"]}}', 'TF_CONFIG needs a "cluster" and a "task" object'),
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "is not in its cluster"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "is not in its cluster"),
    ],
)
def test_bad_tf_config_is_one_line_before_any_connection(monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")) as error:
        make_strategy("multi_worker")
    assert "\n" not in str(error.value)


def test_mixed_float16_scales_the_loss_keeps_float32_logits_and_saves_with_ema(tmp_path):
    config = build_config({"model.name": "efficientnetv2-b0", "data.batch_size": 8, "optimizer.warmup_epochs": 0,
                           "train.epochs": 1, "progressive.stages": 1, "train.mixed_precision": "mixed_float16"})  # fmt: skip
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, 16)]
    keras.mixed_precision.set_global_policy(pick_precision(config.train.mixed_precision))
    try:
        model = efficientnet_tf.get_model("efficientnetv2-b0", blocks=["r1_k3_s1_e1_i16_o16_c1"], width=0.5, num_classes=3)
        trainer.compile_model(model, config, steps_per_epoch=2)
        ema = ExponentialMovingAverage(0.9)
        model.fit(images, labels, batch_size=8, verbose=0, callbacks=[ema, Checkpointer(str(tmp_path), ema=ema)])
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.get_layer("stem_conv").compute_dtype == "float16"
        assert model(images[:2]).dtype == "float32"  # logits and softmax
        assert {v.dtype for v in model.trainable_variables} == {"float32"} and {v.dtype for v in ema.variables} == {"float32"}
        assert int(model.optimizer.iterations.numpy()) == 2
        ema.copy_to_model()
        model.save(tmp_path / "model.keras")
        reloaded = keras.models.load_model(tmp_path / "model.keras")
        np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
        restore(str(tmp_path / "ckpt-00001.npz"), model, model.optimizer, ema)  # loss-scale state included
    finally:
        keras.mixed_precision.set_global_policy("float32")
