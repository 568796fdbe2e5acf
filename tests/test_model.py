"""The public API's options, on small width/depth overrides and small images."""

import numpy as np
import keras
import pytest

import efficientnet_tf
from efficientnet_tf import get_model
from efficientnet_tf.model import endpoint_layers, features_model, scaled_stages
from harness import TINY, assert_features, blocks, images


def test_constructors_cover_every_name():
    names = {
        "EfficientNetB0": "efficientnet-b0", "EfficientNetB8": "efficientnet-b8",
        "EfficientNetL2": "efficientnet-l2", "EfficientNetLite4": "efficientnet-lite4",
        "EfficientNetV2B3": "efficientnetv2-b3", "EfficientNetV2XL": "efficientnetv2-xl",
    }
    for constructor, name in names.items():
        assert getattr(efficientnet_tf, constructor).__doc__.startswith(f"Builds ``{name}``")
    model = efficientnet_tf.EfficientNetV2S(num_classes=5, **TINY)
    assert model.name == "efficientnetv2-s" and model.output_shape == (None, 5)


def test_any_image_size_with_and_without_top():
    model = get_model("efficientnetv2-b0", num_classes=7, **TINY)
    assert model.input_shape == (None, None, None, 3)
    for size in (33, 64, 97):
        out = model.predict(images(2, size), verbose=0)
        assert out.shape == (2, 7)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    backbone = get_model("efficientnet-b0", include_top=False, **TINY)
    assert backbone(images(1, 96)).shape[1:3] == (3, 3)
    assert get_model("efficientnet-b0", include_top=False, pooling="avg", **TINY).output_shape[-1] == 1280 // 4
    assert get_model("efficientnet-b0", include_top=False, pooling="max", **TINY)(images(1)).shape.rank == 2
    fixed = get_model("efficientnet-b0", input_shape=(96, 96, 3), **TINY)
    assert fixed.input_shape == (None, 96, 96, 3)


def test_classifier_activation_dropout_and_momentum_options():
    logits = get_model("efficientnet-b0", classifier_activation=None, dropout_rate=0.05, bn_momentum=0.5, **TINY)
    assert not np.allclose(logits.predict(images(), verbose=0).sum(axis=1), 1.0)
    assert logits.get_layer("top_dropout").rate == pytest.approx(0.05)
    assert {l.bn_momentum for l in blocks(logits)} == {0.5}
    assert logits.get_layer("stem_bn").momentum == 0.5
    default = get_model("efficientnetv2-s", **TINY)
    assert default.get_layer("top_dropout").rate == pytest.approx(0.2)
    assert default.get_layer("stem_bn").momentum == 0.9  # automl's V2 value
    assert get_model("efficientnet-b3", **TINY).get_layer("top_dropout").rate == pytest.approx(0.3)


def test_survival_prob_sets_linear_stochastic_depth():
    model = get_model("efficientnet-b0", survival_prob=0.5)
    rates = [block.drop_rate for block in blocks(model)]
    np.testing.assert_allclose(rates, [0.5 * i / 16 for i in range(16)])
    # Only residual blocks carry the stochastic depth layer.
    for block in blocks(model):
        assert (block.stochastic_depth is not None) == (block.has_residual and block.drop_rate > 0)
    assert all(b.stochastic_depth is None for b in blocks(get_model("efficientnet-b0", survival_prob=1.0, **TINY)))


@pytest.mark.parametrize(
    "name, mean, std",
    [
        ("efficientnet-b0", [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
        ("efficientnetv2-b1", [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
        ("efficientnet-lite0", [127.0] * 3, [128.0] * 3),
        ("efficientnetv2-m", [128.0] * 3, [128.0] * 3),
    ],
)
def test_family_normalization_inside_the_model(name, mean, std):
    model = get_model(name, **TINY)
    x = images()
    normalized = model.get_layer("normalization")(x)
    np.testing.assert_allclose(normalized, (x - np.array(mean)) / np.array(std), rtol=1e-5, atol=1e-5)
    assert model.get_layer("normalization").weights == []
    raw = get_model(name, include_preprocessing=False, **TINY)
    assert "normalization" not in [layer.name for layer in raw.layers]


def test_rounding_rules_per_family():
    # V1 B3 keeps the 10% rule: 24 channels in stage 1, not 16.
    assert scaled_stages(efficientnet_tf.get_spec("efficientnet-b3"))[0].output_filters == 24
    # V2 B3 has no 10% rule.
    assert scaled_stages(efficientnet_tf.get_spec("efficientnetv2-b3"))[0].output_filters == 16
    # Lite3: stem and head fixed, block 0 wired to the real 32-channel stem.
    lite3 = get_model("efficientnet-lite3")
    assert lite3.get_layer("stem_conv").filters == 32 and lite3.get_layer("top_conv").filters == 1280
    assert lite3.get_layer("block1a").input_filters == 32
    assert lite3.get_layer("block1a").weights[0].shape == (3, 3, 32, 1)
    stages = scaled_stages(efficientnet_tf.get_spec("efficientnet-lite4"))
    assert stages[0].repeats == 1 and stages[-1].repeats == 1 and stages[1].repeats == 4
    assert lite3.get_layer("block1a").activation == "relu6" and lite3.get_layer("block1a").se is None


def test_features_only_gives_five_strided_endpoints():
    for name in ("efficientnet-b0", "efficientnetv2-s"):
        assert_features(get_model(name, features_only=True, **TINY), images(1, 128))
    full = get_model("efficientnet-b0")
    assert endpoint_layers(full) == {
        "reduction_1": "block1a", "reduction_2": "block2b", "reduction_3": "block3b",
        "reduction_4": "block5c", "reduction_5": "block7a",
    }
    with pytest.raises(ValueError, match="no EfficientNet blocks"):
        features_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))


def test_custom_blocks_width_depth_and_compound_scaling():
    custom = get_model(
        "efficientnetv2-s", blocks=["r1_k3_s2_e1_i24_o24_c1", "r2_k3_s2_e4_i24_o40_se0.25"], num_classes=3
    )
    assert [b.name for b in blocks(custom)] == ["block1a", "block2a", "block2b"]
    assert custom(images(1, 32)).shape == (1, 3)
    wide = get_model("efficientnet-b0", width=2.0, depth=3.1)
    assert wide.count_params() == get_model("efficientnet-b7").count_params()
    width, depth, resolution = efficientnet_tf.compound_scaling(1)
    assert (width, depth, resolution) == (1.1, 1.2, 256)
    assert efficientnet_tf.compound_scaling(0) == (1.0, 1.0, 224)
    grown = get_model("efficientnet-b0", width=width, depth=depth, **{})
    assert grown.count_params() > get_model("efficientnet-b0").count_params()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="efficientnet-b9"), "Did you mean"),
        (dict(name="efficientnet-b0", pooling="mean"), "pooling must be"),
        (dict(name="efficientnet-b0", input_shape=(224, 224)), "input_shape must be"),
        (dict(name="efficientnet-b0", input_shape=(64, 64, 1)), "include_preprocessing=False"),
        (dict(name="efficientnet-b0", num_classes=0), "num_classes must be"),
        (dict(name="efficientnet-b0", survival_prob=0.0), "survival_prob"),
        (dict(name="efficientnet-b0", width=-1), "width must be"),
        (dict(name="efficientnet-b0", blocks=["r1_k3"]), "missing field"),
        (dict(name="efficientnet-b0", dropout_rate=1.5), "dropout_rate must be in"),
    ],
)
def test_bad_options_give_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_model(kwargs.pop("name"), **kwargs)


# Mixed precision (bf16 blocks, float32 variables and logits, training): harness.run_backbone_test,
# run by tests/test_saving.py::test_trained_mixed_precision_model.


def test_training_changes_batch_norm_statistics_and_weights():
    model = get_model("efficientnet-b0", num_classes=3, **TINY)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = [np.array(w) for w in model.get_layer("block2a").weights]
    model.fit(images(4), np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    after = [np.array(w) for w in model.get_layer("block2a").weights]
    assert all(not np.allclose(a, b) for a, b in zip(before, after))
