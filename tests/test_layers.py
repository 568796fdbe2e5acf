import numpy as np
import keras
import pytest

from efficientnet_tf.layers import (
    BatchNorm,
    FusedMBConv,
    HeadDropout,
    MBConv,
    SqueezeExcite,
    StochasticDepth,
)
from harness import assert_layer_round_trips

RNG = np.random.default_rng(0)


def _images(shape=(4, 8, 8, 16)):
    return RNG.normal(size=shape).astype("float32")


@pytest.mark.parametrize(
    "layer",
    [
        lambda: MBConv(16, 16, 3, 1, 6, 0.25, drop_rate=0.1, name="b"),
        lambda: MBConv(16, 24, 5, 2, 1, None, activation="relu6", name="b"),
        lambda: FusedMBConv(16, 16, 3, 1, 1, None, drop_rate=0.2, name="b"),
        lambda: FusedMBConv(16, 32, 3, 2, 4, 0.25, name="b"),
        lambda: SqueezeExcite(4, name="se"),
        lambda: StochasticDepth(0.3, name="sd"),
        lambda: HeadDropout(0.3, name="hd"),
        lambda: BatchNorm(momentum=0.9, epsilon=1e-3, name="bn"),
    ],
)
def test_layers_serialize_and_restore(layer):
    assert_layer_round_trips(layer(), _images())


def test_block_structure_follows_the_reference():
    block = MBConv(16, 24, 5, 2, 6, 0.25, name="b")
    block.build((None, 8, 8, 16))
    # SE width comes from the block's INPUT filters, not the expanded width.
    assert block.se.reduced_filters == 4 and block.se.expand.filters == 96
    assert not block.has_residual and block(_images()).shape == (4, 4, 4, 24)
    assert MBConv(16, 16, 3, 1, 6, name="b").has_residual
    assert not MBConv(16, 16, 3, 1, 6, skip=False, name="b").has_residual
    # Fused with expand ratio 1 is a single kxk conv + BN.
    fused = FusedMBConv(16, 16, 3, 1, 1, name="f")
    fused.build((None, 8, 8, 16))
    assert [w.shape for w in fused.weights][:1] == [(3, 3, 16, 16)] and len(fused.weights) == 5
    # Depthwise convolution, stride on the depthwise conv, SAME padding (ceil division).
    assert MBConv(16, 24, 3, 2, 6, name="b")(_images((1, 7, 7, 16))).shape == (1, 4, 4, 24)


def test_stochastic_depth_drops_whole_samples_at_the_rate():
    layer = StochasticDepth(0.25, seed=1)
    x = np.ones((4000, 2, 2, 3), "float32")
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    per_sample = y.reshape(4000, -1)
    assert (per_sample.max(axis=1) == per_sample.min(axis=1)).all()  # all-or-nothing per sample
    kept = per_sample[:, 0] > 0
    assert kept.mean() == pytest.approx(0.75, abs=0.03)
    np.testing.assert_allclose(per_sample[kept], 1 / 0.75, rtol=1e-6)  # inverse scaling
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_head_dropout_rate_changes_inside_a_traced_fit():
    inputs = keras.Input((2000,))
    hidden = keras.layers.Dense(2000, use_bias=False, kernel_initializer="identity")(inputs)
    outputs = HeadDropout(0.0, seed=3, name="top_dropout")(hidden)
    model = keras.Model(inputs, outputs)

    def zero_fraction(y_true, y_pred):
        return keras.ops.mean(keras.ops.cast(keras.ops.equal(y_pred, 0.0), "float32"))

    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", metrics=[zero_fraction])
    x = np.ones((64, 2000), "float32")
    seen = []

    class Schedule(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            model.get_layer("top_dropout").rate = [0.0, 0.5, 0.2][epoch]

        def on_epoch_end(self, epoch, logs=None):
            seen.append((logs["zero_fraction"], model.train_function))

    model.fit(x, x, batch_size=32, epochs=3, verbose=0, callbacks=[Schedule()])
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0.0
    assert fractions[1] == pytest.approx(0.5, abs=0.02)
    assert fractions[2] == pytest.approx(0.2, abs=0.02)
    assert len({id(fn) for _, fn in seen}) == 1  # same traced step, no rebuild
    with pytest.raises(ValueError, match="rate must be in"):
        model.get_layer("top_dropout").rate = 1.0


def test_head_dropout_rate_is_not_a_weight_but_is_in_the_config():
    layer = HeadDropout(0.2)
    layer.build((None, 8))
    assert layer.weights == []
    layer.rate = 0.4
    assert layer.get_config()["rate"] == pytest.approx(0.4)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_matches_keras_batch_norm(dtype):
    x = (_images((8, 5, 5, 6)) * 3 + 1).astype("float32")
    ours = BatchNorm(momentum=0.9, epsilon=1e-3, dtype=dtype)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, dtype=dtype)
    ours.build(x.shape)
    ref.build(x.shape)
    stats = [RNG.uniform(0.5, 2, 6), RNG.normal(size=6), RNG.normal(size=6), RNG.uniform(0.5, 2, 6)]
    ours.set_weights(stats)
    ref.set_weights(stats)
    tol = 1e-5 if dtype == "float32" else 5e-2
    np.testing.assert_allclose(
        np.float32(ours(x, training=False)), np.float32(ref(x, training=False)), atol=tol, rtol=tol
    )
    np.testing.assert_allclose(
        np.float32(ours(x, training=True)), np.float32(ref(x, training=True)), atol=tol * 10, rtol=tol
    )
    # Moving statistics: the same mean; variance updated with the unbiased
    # batch variance, as the fused kernel of the official TF1 code did.
    n = x.shape[0] * x.shape[1] * x.shape[2]
    batch_var = x.reshape(-1, 6).var(axis=0) * n / (n - 1)
    expected_var = stats[3] * 0.9 + 0.1 * batch_var
    np.testing.assert_allclose(ours.moving_mean.numpy(), ref.moving_mean.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.moving_variance.numpy(), expected_var, rtol=1e-4 if dtype == "float32" else 1e-3)


def test_frozen_batch_norm_uses_moving_statistics_in_training():
    bn = BatchNorm()
    bn.build((None, 4, 4, 3))
    bn.trainable = False
    x = _images((2, 4, 4, 3))
    np.testing.assert_allclose(bn(x, training=True), bn(x, training=False))
