"""Precision, XLA and strategy defaults follow the hardware; TF_CONFIG mistakes are one line; mixed precision trains.

The startup watchdog is tested on a real lone worker in test_distribute_multi_worker.py."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import efficientnet_tf
from efficientnet_tf.training import Checkpointer, ExponentialMovingAverage, build_config, restore, trainer
from efficientnet_tf.training.hardware import (
    ProbeTarget, cpu_has_bf16, describe, describe_cpu, is_chief, make_strategy, pick_jit_compile, pick_precision,
    probe_cache_path, probe_precision,
)  # fmt: skip
from harness import assert_one_line_error, assert_precision


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


def test_auto_precision_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert not tf.config.list_physical_devices("GPU")  # CI has no GPU
    target = ProbeTarget("efficientnetv2-b0", 32, 2, width=0.25, depth=0.1)
    policy, reason = pick_precision("auto", tf.distribute.get_strategy(), probe=target)
    if cpu_has_bf16():
        assert reason.startswith("auto: probe: bf16 ") and os.path.exists(probe_cache_path())
    else:  # never bf16, and never a probe
        assert (policy, reason) == ("float32", "auto: this CPU has no native bf16 (AVX512_BF16/AMX), where bf16 trains "
                                               "several times slower")  # fmt: skip
        assert not os.path.exists(probe_cache_path())
    assert pick_precision("mixed_float16") == ("mixed_float16", "requested")
    with pytest.raises(ValueError, match="mixed_precision must be one of auto, float32"):
        pick_precision("bf16")


def test_xla_is_off_on_cpus_unless_requested():
    assert pick_jit_compile("auto") == (False, "auto: CPU")
    assert pick_jit_compile("true") == (True, "requested")
    assert pick_jit_compile("false", tf.distribute.get_strategy()) == (False, "requested")
    with pytest.raises(ValueError, match="jit_compile must be one of auto, true, false, got 'yes'"):
        pick_jit_compile("yes")


def test_the_run_names_its_precision_and_xla_in_its_first_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # where a CPU with native bf16 caches its probe
    overrides = {"model.name": "efficientnetv2-b0", "model.width": 0.25, "model.depth": 0.1, "data.batch_size": 4,
                 "data.image_size": 32, "data.eval_size": 32, "data.synthetic_train": 8, "data.synthetic_eval": 4,
                 "progressive.stages": 1, "train.epochs": 1, "optimizer.warmup_epochs": 0, "train.ema_decay": 0}  # fmt: skip
    with pytest.raises(ValueError, match="^jit_compile must be one of auto, true, false, got 'maybe'.$"):
        trainer.run(build_config({**overrides, "train.jit_compile": "maybe"}), str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad")  # refused before any work
    result = trainer.run(build_config(overrides), str(tmp_path / "run"), mode="train")
    first = capsys.readouterr().out.splitlines()[0]
    precision = "(auto: probe: bf16 " if cpu_has_bf16() else " in float32 (auto: this CPU has no native bf16"
    assert precision in first and "), XLA off (auto: CPU), the default strategy, 1 replica(s)," in first
    assert result["model"].jit_compile is False


@pytest.mark.slow  # two child processes that import TensorFlow and time a tiny model (about a minute)
def test_the_probe_times_both_policies_once_and_reads_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    target = ProbeTarget("efficientnetv2-b0", 32, 2, width=0.25, depth=0.1)
    policy, reason = probe_precision(target)
    assert policy in ("float32", "mixed_bfloat16")
    assert reason.startswith("auto: probe: bf16 ") and "float32 for efficientnetv2-b0 at 32 px, batch 2 (timed in " in reason
    assert reason.endswith(f"cached in {probe_cache_path()})")
    cache = json.loads(open(probe_cache_path()).read())
    (key, entry), = cache.items()
    assert "efficientnetv2-b0 width 0.25 depth 0.1; 32 px; batch 2" in key and tf.__version__ in key
    rates = entry["img_per_s"]
    # The decision follows the measured rates; which way they go on a tiny model is noise, not tested.
    assert entry["policy"] == ("mixed_bfloat16" if rates["mixed_bfloat16"] >= 1.1 * rates["float32"] else "float32") == policy

    # The cache decides from now on: an edited entry is what the next call returns, without timing.
    cache[key] = {**entry, "policy": "mixed_bfloat16", "bf16_vs_float32": 1.5}
    open(probe_cache_path(), "w").write(json.dumps(cache))
    assert probe_precision(target) == ("mixed_bfloat16", "auto: probe: bf16 1.50x float32 for efficientnetv2-b0 at 32 px, "
                                                         f"batch 2 (cached in {probe_cache_path()})")  # fmt: skip
    # Another batch is another measurement.
    policy, reason = probe_precision(ProbeTarget("efficientnetv2-b0", 32, 3, width=0.25, depth=0.1))
    assert "batch 3 (timed in " in reason and len(json.loads(open(probe_cache_path()).read())) == 2


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
    with pytest.raises(ValueError) as error:
        make_strategy("multi_worker")
    assert_one_line_error(error, ValueError, message)


def test_mixed_float16_scales_the_loss_keeps_float32_logits_and_saves_with_ema(tmp_path):
    config = build_config({"model.name": "efficientnetv2-b0", "data.batch_size": 8, "optimizer.warmup_epochs": 0,
                           "train.epochs": 1, "progressive.stages": 1, "train.mixed_precision": "mixed_float16"})  # fmt: skip
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, 16)]
    keras.mixed_precision.set_global_policy(pick_precision(config.train.mixed_precision)[0])
    try:
        model = efficientnet_tf.get_model("efficientnetv2-b0", blocks=["r1_k3_s1_e1_i16_o16_c1"], width=0.5, num_classes=3)
        trainer.compile_model(model, config, steps_per_epoch=2)
        ema = ExponentialMovingAverage(0.9)
        model.fit(images, labels, batch_size=8, verbose=0, callbacks=[ema, Checkpointer(str(tmp_path), ema=ema)])
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert_precision(model, "mixed_float16")
        assert model.get_layer("stem_conv").compute_dtype == "float16"
        assert model(images[:2]).dtype == "float32"  # logits and softmax
        assert {v.dtype for v in ema.variables} == {"float32"}
        assert int(model.optimizer.iterations.numpy()) == 2
        ema.copy_to_model()
        model.save(tmp_path / "model.keras")
        keras.mixed_precision.set_global_policy("float32")  # the saved policy comes back on its own
        reloaded = keras.models.load_model(tmp_path / "model.keras")
        assert_precision(reloaded, "mixed_float16")
        np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
        restore(str(tmp_path / "ckpt-00001.npz"), model, model.optimizer, ema)  # loss-scale state included
    finally:
        keras.mixed_precision.set_global_policy("float32")
