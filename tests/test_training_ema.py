"""ExponentialMovingAverage: exact averages (BN statistics included), evaluation swaps, tf.distribute."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import efficientnet_tf
from efficientnet_tf.training.ema import ExponentialMovingAverage

TINY_BLOCKS = ["r1_k3_s1_e1_i16_o16_c1", "r1_k3_s2_e4_i16_o24_se0.25"]


def _tiny_model():
    model = efficientnet_tf.get_model("efficientnetv2-b0", blocks=TINY_BLOCKS, width=0.5, num_classes=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="categorical_crossentropy")
    return model


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, n)]
    return images, labels


def _values(variables):
    return [np.array(v.numpy(), copy=True) for v in variables]


def _reference_average(start, recorded, decay, warmup):
    """The official update, in numpy, from `start` over (weights, optimizer step) after each batch."""
    averages = [a.copy() for a in start]
    for weights, step in recorded:
        d = min(decay, (1 + step) / (10 + step)) if warmup else decay
        averages = [a - (a - w) * np.float32(1 - d) for a, w in zip(averages, weights)]
    return averages


class _RecordWeights(keras.callbacks.Callback):
    def __init__(self, variables):
        super().__init__()
        self.variables = variables
        self.after_batch = []

    def on_train_begin(self, logs=None):
        self.initial = _values(self.variables)

    def on_train_batch_end(self, batch, logs=None):
        self.after_batch.append((_values(self.variables), int(self.model.optimizer.iterations.numpy())))


def test_averages_match_the_formula_with_batchnorm_statistics_and_survive_restore():
    model = _tiny_model()
    restored = ExponentialMovingAverage(decay=0.9)
    restored.build(model)
    float_weights = [w for w in model.weights if w.dtype.startswith("float")]
    assert [w.path for w in restored.tracked_variables] == [w.path for w in float_weights]
    assert any(w.path.endswith("moving_mean") for w in float_weights)
    assert any(w.path.endswith("moving_variance") for w in float_weights)
    assert len(float_weights) < len(model.variables)  # the integer seed-generator state is left out
    for average, weight in zip(_values(restored.variables), _values(float_weights)):
        np.testing.assert_array_equal(average, weight)

    # A checkpoint restore writes the averages after build; fit must continue from them.
    for average in restored.variables:
        average.assign(average.numpy() + 1.0)
    start = _values(restored.variables)
    shadows = list(restored.variables)
    restored.build(model)
    assert all(a is b for a, b in zip(restored.variables, shadows))

    constant_decay = ExponentialMovingAverage(decay=0.9, warmup=False, swap_for_evaluation=False)
    recorder = _RecordWeights(float_weights)
    model.fit(*_data(32), batch_size=8, epochs=1, verbose=0, callbacks=[recorder, restored, constant_decay])

    assert [step for _, step in recorder.after_batch] == [1, 2, 3, 4]
    for ema, initial in ((restored, start), (constant_decay, recorder.initial)):
        expected = _reference_average(initial, recorder.after_batch, 0.9, ema.warmup)
        for weight, average, reference in zip(float_weights, ema.variables, expected):
            np.testing.assert_allclose(average.numpy(), reference, rtol=1e-6, atol=1e-6, err_msg=weight.path)

    final = dict(zip([w.path for w in float_weights], recorder.after_batch[-1][0]))
    for weight, average in zip(float_weights, constant_decay.variables):
        if weight.path.endswith(("moving_mean", "moving_variance")):
            assert not np.allclose(average.numpy(), final[weight.path], rtol=1e-2, atol=0), weight.path

    # A recompiled model counts steps with its new optimizer, and the warm-up follows that count.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    start, recorder.after_batch = _values(restored.variables), []
    model.fit(*_data(8, seed=3), batch_size=8, epochs=1, verbose=0, callbacks=[recorder, restored])
    assert [step for _, step in recorder.after_batch] == [1]
    expected = _reference_average(start, recorder.after_batch, 0.9, warmup=True)
    for average, reference in zip(restored.variables, expected):
        np.testing.assert_allclose(average.numpy(), reference, rtol=1e-6, atol=1e-6)


def test_averages_are_in_the_model_only_for_evaluate_predict_averaged_and_copy_to_model():
    model = _tiny_model()
    ema = ExponentialMovingAverage(decay=0.5)
    with pytest.raises(RuntimeError, match="not built"):
        ema.copy_to_model()
    images, labels = _data(16, seed=1)
    history = model.fit(
        *_data(24), batch_size=8, epochs=1, verbose=0, callbacks=[ema], validation_data=(images, labels)
    )
    weights = ema.tracked_variables
    raw, averages = _values(weights), _values(ema.variables)

    def assert_model_holds(values):
        for weight, value in zip(weights, values):
            np.testing.assert_array_equal(weight.numpy(), value, err_msg=weight.path)

    ema_loss = model.evaluate(images, labels, verbose=0, callbacks=[ema])
    ema_predictions = model.predict(images, verbose=0, callbacks=[ema])
    assert_model_holds(raw)
    raw_loss = model.evaluate(images, labels, verbose=0)
    for weight, average in zip(weights, averages):
        weight.assign(average)
    reference_loss = model.evaluate(images, labels, verbose=0)
    reference_predictions = model.predict(images, verbose=0)
    for weight, value in zip(weights, raw):
        weight.assign(value)
    assert ema_loss == pytest.approx(reference_loss, rel=1e-6)
    assert history.history["val_loss"][0] == pytest.approx(reference_loss, rel=1e-6)
    assert abs(raw_loss - reference_loss) > 1e-4
    np.testing.assert_allclose(ema_predictions, reference_predictions, rtol=1e-5, atol=1e-6)

    with pytest.raises(ZeroDivisionError):
        with ema.averaged():
            assert_model_holds(averages)
            # Already swapped in: the callback must not swap the raw weights back for this evaluate.
            inside = model.evaluate(images, labels, verbose=0, callbacks=[ema])
            assert inside == pytest.approx(reference_loss, rel=1e-6)
            with pytest.raises(RuntimeError, match="outside averaged"):
                ema.copy_to_model()
            1 / 0
    assert_model_holds(raw)

    ema.copy_to_model()
    assert_model_holds(averages)
    for average, expected in zip(ema.variables, averages):
        np.testing.assert_array_equal(average.numpy(), expected)


def test_bad_arguments_are_rejected_and_config_round_trips():
    for decay in (1.0, -0.1):
        with pytest.raises(ValueError, match="decay"):
            ExponentialMovingAverage(decay=decay)
    ema = ExponentialMovingAverage(decay=0.999, warmup=False, swap_for_evaluation=False)
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ema))
    assert type(copy) is ExponentialMovingAverage
    assert copy.get_config() == {"decay": 0.999, "warmup": False, "swap_for_evaluation": False}

    model = _tiny_model()
    model.compile(optimizer="sgd", loss="categorical_crossentropy", steps_per_execution=2)
    with pytest.raises(ValueError, match="steps_per_execution"):
        model.fit(*_data(16), batch_size=8, verbose=0, callbacks=[ExponentialMovingAverage()])


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import efficientnet_tf
    from efficientnet_tf.training.ema import ExponentialMovingAverage

    def per_replica(variables):
        return [[np.array(c.numpy(), copy=True) for c in v.value.values] for v in variables]

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = efficientnet_tf.get_model("efficientnetv2-b0", blocks=BLOCKS, width=0.5, num_classes=3)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    ema = ExponentialMovingAverage(decay=0.9)
    recorded = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            recorded.append((per_replica(ema.tracked_variables), int(self.model.optimizer.iterations.numpy())))

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, 16)]
    ema.build(model)
    expected = per_replica(ema.variables)
    model.fit(images, labels, batch_size=8, verbose=0, callbacks=[Record(), ema])
    for weights, step in recorded:
        rate = np.float32(1 - min(0.9, (1 + step) / (10 + step)))
        expected = [[a - (a - w) * rate for a, w in zip(avg, wts)] for avg, wts in zip(expected, weights)]
    averages = per_replica(ema.variables)
    raw = per_replica(ema.tracked_variables)
    with ema.averaged():
        swapped = per_replica(ema.tracked_variables)
    restored = per_replica(ema.tracked_variables)

    def max_diff(x, y):
        return float(max(np.abs(a - b).max() for xs, ys in zip(x, y) for a, b in zip(xs, ys)))

    print(json.dumps({
        "types": sorted({type(v.value).__name__ for v in ema.variables}),
        "replicas": min(len(v.value.values) for v in ema.variables),
        "steps": [step for _, step in recorded],
        "formula_error": max_diff(averages, expected),
        "averaged_error": max_diff(swapped, averages),
        "restore_error": max_diff(restored, raw),
        "replica_spread": float(max(np.abs(a[0] - a[1]).max() for a in averages)),
    }))
    """
).replace("BLOCKS", repr(TINY_BLOCKS))


def test_mirrored_strategy_averages_each_replica_exactly():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["types"] == ["MirroredVariable"]
    assert report["replicas"] == 2
    assert report["steps"] == [1, 2]
    assert report["formula_error"] < 1e-6
    assert report["averaged_error"] == 0.0
    assert report["restore_error"] == 0.0
    # BN moving statistics differ per replica (aggregation "none"); each replica's average follows its own.
    assert report["replica_spread"] > 1e-4
