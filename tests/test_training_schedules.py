import math

import keras
import numpy as np
import pytest

from efficientnet_tf.training.schedules import WarmupSchedule, scaled_learning_rate

PEAK = 0.256  # 0.016 per 256 images at a global batch of 4096
STEPS_PER_EPOCH = 10  # decay every 24 steps, warm-up over 50


def reference_rate(step, *, peak, steps_per_epoch, epochs, warmup_epochs, decay, decay_rate=0.97, decay_epochs=2.4):
    """The official code's formula, decay counted from step 0."""
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        return peak * step / warmup_steps
    if decay == "exponential":
        return peak * decay_rate ** math.floor(step / (decay_epochs * steps_per_epoch))
    if decay == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * step / int(epochs * steps_per_epoch)))
    return peak


def rates(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


def test_scaled_learning_rate_is_linear_in_batch():
    assert scaled_learning_rate(0.016, 256) == pytest.approx(0.016)
    assert scaled_learning_rate(0.016, 4096) == pytest.approx(0.256)
    assert scaled_learning_rate(0.016, 8) == pytest.approx(0.0005)


@pytest.mark.parametrize("lr_per_256, batch, argument", [(0.0, 256, "lr_per_256"), (0.016, 0, "global_batch_size")])
def test_scaled_learning_rate_rejects_non_positive(lr_per_256, batch, argument):
    with pytest.raises(ValueError, match=argument):
        scaled_learning_rate(lr_per_256, batch)


def test_exponential_warms_up_then_decays_in_stairs_from_step_zero():
    schedule = WarmupSchedule(PEAK, STEPS_PER_EPOCH, epochs=30, warmup_epochs=5)
    steps = range(300)
    expected = [
        reference_rate(s, peak=PEAK, steps_per_epoch=10, epochs=30, warmup_epochs=5, decay="exponential") for s in steps
    ]
    np.testing.assert_allclose(rates(schedule, steps), expected, rtol=1e-6, atol=1e-9)

    assert float(schedule(0)) == 0.0
    assert float(schedule(25)) == pytest.approx(PEAK / 2)
    assert float(schedule(49)) == pytest.approx(PEAK * 49 / 50)
    # Warm-up ends at step 50, already two 24-step stairs into the decay.
    assert float(schedule(50)) == pytest.approx(PEAK * 0.97**2)
    assert float(schedule(71)) == pytest.approx(PEAK * 0.97**2)
    assert float(schedule(72)) == pytest.approx(PEAK * 0.97**3)
    assert float(schedule(95)) == pytest.approx(PEAK * 0.97**3)
    assert float(schedule(96)) == pytest.approx(PEAK * 0.97**4)


def test_cosine_after_warmup_reaches_zero_at_the_end():
    schedule = WarmupSchedule(PEAK, STEPS_PER_EPOCH, epochs=20, warmup_epochs=2, decay="cosine")
    steps = range(200)
    expected = [
        reference_rate(s, peak=PEAK, steps_per_epoch=10, epochs=20, warmup_epochs=2, decay="cosine") for s in steps
    ]
    np.testing.assert_allclose(rates(schedule, steps), expected, rtol=1e-5, atol=1e-8)
    assert float(schedule(0)) == 0.0
    assert float(schedule(100)) == pytest.approx(PEAK / 2)
    assert 0 < float(schedule(199)) < PEAK * 1e-3


def test_constant_is_the_fine_tuning_recipe():
    schedule = WarmupSchedule(0.001, STEPS_PER_EPOCH, epochs=10, warmup_epochs=1, decay="constant")
    np.testing.assert_allclose(rates(schedule, [0, 5, 9]), [0.0, 0.0005, 0.0009], rtol=1e-6)
    np.testing.assert_allclose(rates(schedule, [10, 50, 99, 1000]), 0.001, rtol=1e-6)


def test_no_warmup_starts_at_peak_and_fractional_warmup_rounds_down():
    assert float(WarmupSchedule(PEAK, 10, epochs=3, warmup_epochs=0)(0)) == pytest.approx(PEAK)
    schedule = WarmupSchedule(PEAK, 10, epochs=3, warmup_epochs=0.55, decay="constant")  # 5.5 -> 5 steps
    np.testing.assert_allclose(rates(schedule, [4, 5]), [PEAK * 4 / 5, PEAK], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"peak_learning_rate": 0.0}, "peak_learning_rate"),
        ({"steps_per_epoch": 0}, "steps_per_epoch"),
        ({"steps_per_epoch": 2.5}, "steps_per_epoch"),
        ({"epochs": 0}, "epochs"),
        ({"warmup_epochs": 31}, "warmup_epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"decay": "linear"}, "decay"),
        ({"decay_rate": 1.5}, "decay_rate"),
        ({"decay_epochs": 0}, "decay_epochs"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    args = {"peak_learning_rate": PEAK, "steps_per_epoch": 10, "epochs": 30, **kwargs}
    with pytest.raises(ValueError, match=f"^{argument} must"):
        WarmupSchedule(**args)


def test_serialization_round_trip():
    schedule = WarmupSchedule(PEAK, 7, epochs=12, warmup_epochs=1.5, decay="cosine", decay_rate=0.9, decay_epochs=3)
    serialized = keras.optimizers.schedules.serialize(schedule)
    assert serialized["registered_name"] == "efficientnet_tf>WarmupSchedule"
    restored = keras.optimizers.schedules.deserialize(serialized)
    assert isinstance(restored, WarmupSchedule)
    assert restored.get_config() == schedule.get_config()
    steps = range(0, 84, 5)
    np.testing.assert_array_equal(rates(restored, steps), rates(schedule, steps))


def test_fit_follows_the_schedule_through_optimizer_iterations():
    steps_per_epoch, epochs = 4, 6
    schedule = WarmupSchedule(0.1, steps_per_epoch, epochs, warmup_epochs=2, decay_rate=0.5, decay_epochs=1.5)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    observed, iterations = [], []

    def record(epoch, logs):
        observed.append(float(model.optimizer.learning_rate))
        iterations.append(int(model.optimizer.iterations))

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 5)).astype("float32"), rng.normal(size=(32, 3)).astype("float32")
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=record)
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[recorder])

    # At the end of epoch e the optimizer has taken (e + 1) * 4 steps; the rate shown is its next step's.
    assert iterations == [4, 8, 12, 16, 20, 24]
    expected = [
        reference_rate(s, peak=0.1, steps_per_epoch=4, epochs=6, warmup_epochs=2, decay="exponential",
                       decay_rate=0.5, decay_epochs=1.5)
        for s in iterations
    ]
    np.testing.assert_allclose(observed, expected, rtol=1e-6)
    assert observed[0] == pytest.approx(0.05)  # halfway through warm-up
    assert observed[1:] == pytest.approx([0.1 * 0.5**1, 0.1 * 0.5**2, 0.1 * 0.5**2, 0.1 * 0.5**3, 0.1 * 0.5**4])
