"""The harness's per-model checks (build, `.keras` and `.weights.h5` round trips, features, precision), the deepest models included."""

import pytest

from harness import TINY, blocks, run_backbone_test


@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnetv2-s", "efficientnet-lite1"])
def test_small_models(name, tmp_path):
    def raise_dropout(model):
        model.get_layer("top_dropout").rate = 0.35

    options = dict(width=0.25, depth=0.3, num_classes=5, dropout_rate=0.1)
    _, restored = run_backbone_test(name, tmp_path, options, prepare=raise_dropout)
    assert restored.get_layer("top_dropout").rate == pytest.approx(0.35)


def test_trained_mixed_precision_model(tmp_path):
    run_backbone_test("efficientnetv2-b0", tmp_path, dict(**TINY, num_classes=3), policy="mixed_bfloat16", train=True)


@pytest.mark.slow  # full-size XL: minutes on 2 cores
def test_efficientnetv2_xl(tmp_path):
    run_backbone_test("efficientnetv2-xl", tmp_path, {})


@pytest.mark.slow  # full-depth L2: minutes on 2 cores
def test_efficientnet_l2_depth(tmp_path):
    # L2's depth (88 blocks) at B0's width: the graph depth that
    # would hit recursion limits, without writing 1.9 GB of weights.
    model, _ = run_backbone_test("efficientnet-l2", tmp_path, dict(width=1.0))
    assert len(blocks(model)) == 88
