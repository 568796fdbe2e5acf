"""Precision and strategy defaults follow the hardware."""

import pytest
import tensorflow as tf

from efficientnet_tf.training.hardware import cpu_has_bf16, make_strategy, pick_precision


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
    assert pick_precision("float32") == "float32"
    with pytest.raises(ValueError, match="mixed_precision must be one of auto, float32"):
        pick_precision("bf16")


def test_strategies():
    assert make_strategy("auto") is tf.distribute.get_strategy()
    assert make_strategy("one_device").num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="not supported yet"):
        make_strategy("tpu")
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_strategy("horovod")
