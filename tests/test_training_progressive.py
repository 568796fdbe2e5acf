"""Progressive learning: the schedule's numbers, and what a real `model.fit`
train step receives in each stage (observed by probes inside the model)."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.data import AugmentState, array_source, make_datasets
from efficientnet_tf.layers import HeadDropout
from efficientnet_tf.training.progressive import ProgressiveLearning, Stage, progressive_stages

# ---------------------------------------------------------------- schedule math


def test_paper_schedule_matches_table_6_for_v2_s():
    stages = progressive_stages(
        350, 4, image_size=(128, 300), randaug_magnitude=(5, 15), mixup_alpha=(0, 0), dropout=(0.1, 0.3)
    )
    # 128 + 172 * i / 3 = 128, 185.33, 242.67, 300, rounded to the nearest pixel.
    assert [s.image_size for s in stages] == [128, 185, 243, 300]
    assert [s.first_epoch for s in stages] == [0, 87, 175, 262]
    np.testing.assert_allclose([s.randaug_magnitude for s in stages], np.linspace(5, 15, 4))
    np.testing.assert_allclose([s.dropout for s in stages], np.linspace(0.1, 0.3, 4))
    assert all(s.mixup_alpha == 0 and s.cutmix_alpha == 0 for s in stages)


def test_automl_schedule_matches_released_code_for_v2_s():
    stages = progressive_stages(
        350, 4, image_size=(128, 300), randaug_magnitude=(5, 10), mixup_alpha=(0, 0.3), cutmix_alpha=(0, 0.6),
        style="automl",
    )  # fmt: skip
    assert [s.image_size for s in stages] == [171, 214, 257, 300]  # never trains at 128
    assert [s.first_epoch for s in stages] == [0, 87, 175, 262]
    np.testing.assert_allclose([s.randaug_magnitude for s in stages], np.linspace(5, 10, 4))
    np.testing.assert_allclose([s.mixup_alpha for s in stages], np.linspace(0, 0.3, 4))
    np.testing.assert_allclose([s.cutmix_alpha for s in stages], np.linspace(0, 0.6, 4))
    assert all(s.dropout is None for s in stages)


def test_one_stage_and_uneven_epochs():
    (paper,) = progressive_stages(5, 1, image_size=(128, 300), randaug_magnitude=(5, 15), dropout=(0.1, 0.3))
    assert (paper.first_epoch, paper.image_size, paper.randaug_magnitude, paper.dropout) == (0, 300, 15, 0.3)
    # One stage is no progressive learning in either style.
    (automl,) = progressive_stages(5, 1, image_size=(128, 300), randaug_magnitude=(5, 15), style="automl")
    assert (automl.image_size, automl.randaug_magnitude) == (300, 15)
    stages = progressive_stages(10, 3, image_size=(16, 32))
    assert [s.first_epoch for s in stages] == [0, 3, 6]
    assert [s.image_size for s in stages] == [16, 24, 32]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_stages=0), "num_stages must be at least 1"),
        (dict(epochs=3, num_stages=4), r"epochs \(3\) must be at least num_stages \(4\)"),
        (dict(style="timm"), r"style must be one of \('paper', 'automl'\)"),
        (dict(image_size=(4, 32)), r"image_size must be in \[8, 8192\]"),
        (dict(image_size=(16, 32, 64)), r"image_size must be a \(start, end\) pair"),
        (dict(image_size=300), r"image_size must be a \(start, end\) pair"),
        (dict(randaug_magnitude=(-1, 10)), r"randaug_magnitude must be in \[0.0, 30.0\]"),
        (dict(mixup_alpha=(0, -0.2)), r"mixup_alpha must be in \[0.0, 100.0\]"),
        (dict(cutmix_alpha=(-1, 0)), r"cutmix_alpha must be in \[0.0, 100.0\]"),
        (dict(dropout=(0.1, 1.0)), r"dropout must be in \[0.0, 1.0\)"),
        (dict(dropout=(-0.1, 0.3)), r"dropout must be in \[0.0, 1.0\)"),
        (dict(dropout=(0.1, 0.3), style="automl"), "dropout is not scheduled with style='automl'"),
    ],
)
def test_schedule_errors(kwargs, message):
    args = dict(epochs=10, num_stages=3, image_size=(16, 32)) | kwargs
    with pytest.raises(ValueError, match=message):
        progressive_stages(**args)


def test_callback_rejects_bad_stage_lists_and_finds_the_stage_of_any_epoch():
    state = AugmentState(16)
    with pytest.raises(ValueError, match="the first at epoch 0"):
        ProgressiveLearning([Stage(1, 16, 0, 0, 0, None)], state)
    with pytest.raises(ValueError, match="strictly increasing"):
        ProgressiveLearning([Stage(0, 16, 0, 0, 0, None), Stage(3, 24, 0, 0, 0, None), Stage(3, 32, 0, 0, 0, None)], state)
    with pytest.raises(ValueError, match=r"image_size must be in \[8, 8192\]"):
        Stage(0, 4, 0, 0, 0, None)
    callback = ProgressiveLearning(progressive_stages(7, 3, image_size=(16, 32)), state)
    assert [callback.stage_at(epoch)[0] for epoch in range(9)] == [0, 0, 1, 1, 2, 2, 2, 2, 2]


# ------------------------------------------------------- observed inside model.fit

NUM_CLASSES = 4
BATCH = 8
STEPS = 4  # batches per epoch: 32 train images


class Probe(keras.layers.Layer):
    """Identity that records, in the train step, the batch's spatial size, mean
    value and fraction of exact zeros, and counts its Python traces."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.size = tf.Variable(0)
        self.mean = tf.Variable(0.0)
        self.zero_fraction = tf.Variable(0.0)
        self.train_traces = 0

    def call(self, x, training=None):
        if training:
            self.train_traces += 1
            self.size.assign(tf.shape(x)[1])
            self.mean.assign(tf.reduce_mean(x))
            self.zero_fraction.assign(tf.reduce_mean(tf.cast(tf.equal(x, 0.0), tf.float32)))
        return x


class LabelMax(keras.metrics.Metric):
    """The batch's mean largest label value: 1 for one-hot labels, below 1 once mixed."""

    def __init__(self, name="label_max", **kwargs):
        super().__init__(name=name, **kwargs)
        self.value = self.add_variable(shape=(), initializer="zeros", name="value")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.value.assign(tf.reduce_mean(tf.reduce_max(y_true, axis=-1)))

    def result(self):
        return self.value


class Recorder(keras.callbacks.Callback):
    """What the probes saw at the end of every train batch."""

    def __init__(self, input_probe, head_probe, pause_at_epoch_end=0.0):
        super().__init__()
        self.input_probe, self.head_probe, self.pause = input_probe, head_probe, pause_at_epoch_end
        self.rows = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.rows.append(dict(
            epoch=self.epoch, size=int(self.input_probe.size.numpy()), mean=float(self.input_probe.mean.numpy()),
            zeros=float(self.head_probe.zero_fraction.numpy()), label_max=float(logs["label_max"]),
        ))  # fmt: skip

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.pause)  # lets a long-lived iterator prefetch ahead

    def seen(self, epoch, key):
        return [row[key] for row in self.rows if row["epoch"] == epoch]


def _source():
    """Black images: RandAugment at magnitude 0 is skipped, so pixels stay exactly 0."""
    x = np.zeros((32, 32, 32, 3), np.uint8)
    y = np.arange(32) % NUM_CLASSES
    return array_source((x, y), (x[:8], y[:8]), [str(c) for c in range(NUM_CLASSES)])


def _model():
    """Probe -> convs -> nested (Dense -> HeadDropout) -> probe -> softmax.

    The Dense bias starts at 1 so its outputs are non-zero; exact zeros after
    it are dropped units. HeadDropout sits in a nested model so the callback
    must search nested layers.
    """
    inputs = keras.Input((None, None, 3))
    input_probe, head_probe = Probe(name="input_probe"), Probe(name="head_probe")
    x = input_probe(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    head = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, bias_initializer="ones"), HeadDropout(0.3)])
    x = head_probe(head(x))
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "categorical_crossentropy", metrics=[LabelMax()])
    return model, input_probe, head_probe


def _stages():
    # 4 epochs, 3 stages from epochs 0, 1, 2: sizes 16/24/32, RandAugment 0/5/10,
    # mixup 0/0.5/1, dropout 0/0.4/0.8.
    return progressive_stages(
        4, 3, image_size=(16, 32), randaug_magnitude=(0, 10), mixup_alpha=(0, 1), dropout=(0.0, 0.8)
    )


@pytest.fixture(scope="module")
def pipeline():
    """One train pipeline for the module (building it traces RandAugment, which is slow).

    It starts far from stage 1's values, and each fit's callback sets every
    value before the first batch.
    """
    train, _, info = make_datasets(
        _source(), family="efficientnetv2", image_size=40, batch_size=BATCH, randaug_magnitude=10, mixup_alpha=1
    )
    return train, info.state


def _check_epoch(recorder, epoch, stage):
    sizes = recorder.seen(epoch, "size")
    assert sizes == [stage.image_size] * STEPS, f"epoch {epoch}: sizes {sizes}"
    zeros = recorder.seen(epoch, "zeros")
    assert np.mean(zeros) == pytest.approx(stage.dropout, abs=0.05), f"epoch {epoch}: zero fractions {zeros}"
    means, label_max = recorder.seen(epoch, "mean"), recorder.seen(epoch, "label_max")
    if stage.randaug_magnitude == 0:
        assert means == [0.0] * STEPS, f"epoch {epoch}: pixel means {means}"
    else:
        assert min(means) > 0, f"epoch {epoch}: pixel means {means}"
    if stage.mixup_alpha == 0:
        assert label_max == [1.0] * STEPS, f"epoch {epoch}: label max {label_max}"
    else:
        assert min(label_max) < 1.0, f"epoch {epoch}: label max {label_max}"


def test_each_stage_reaches_every_batch_of_its_epochs_in_fit(pipeline, capsys):
    train, state = pipeline
    model, input_probe, head_probe = _model()
    stages = _stages()
    recorder = Recorder(input_probe, head_probe)
    history = model.fit(train, epochs=4, verbose=0, callbacks=[ProgressiveLearning(stages, state), recorder])

    for epoch, stage in enumerate([stages[0], stages[1], stages[2], stages[2]]):
        _check_epoch(recorder, epoch, stage)
    assert stages[2].dropout == pytest.approx(0.8)
    # One Python trace of the train step serves every size and every dropout rate.
    assert input_probe.train_traces == 1 and head_probe.train_traces == 1
    # The epoch logs carry the values the train step saw.
    assert history.history["image_size"] == [recorder.seen(e, "size")[0] for e in range(4)]
    np.testing.assert_allclose(history.history["dropout"], [0, 0.4, 0.8, 0.8], atol=1e-6)
    np.testing.assert_allclose(history.history["randaug_magnitude"], [0, 5, 10, 10])
    np.testing.assert_allclose(history.history["mixup_alpha"], [0, 0.5, 1, 1])
    assert history.history["cutmix_alpha"] == [0.0] * 4
    # One line per stage change; epochs counted from 1, like Keras' progress bar.
    assert capsys.readouterr().out.splitlines() == [
        "Stage 1/3 from epoch 1: image 16 px, RandAugment 0, mixup 0, CutMix 0, dropout 0",
        "Stage 2/3 from epoch 2: image 24 px, RandAugment 5, mixup 0.5, CutMix 0, dropout 0.4",
        "Stage 3/3 from epoch 3: image 32 px, RandAugment 10, mixup 1, CutMix 0, dropout 0.8",
    ]


def test_resuming_with_initial_epoch_applies_that_stage_from_the_first_batch(pipeline):
    train, state = pipeline
    state.assign(image_size=40, randaug_magnitude=0, mixup_alpha=0)  # not stage 3's values
    model, input_probe, head_probe = _model()
    stages = _stages()
    recorder = Recorder(input_probe, head_probe)
    # Epoch 3 is the second epoch of stage 3 (epochs 2-3).
    model.fit(train, epochs=4, initial_epoch=3, verbose=0, callbacks=[ProgressiveLearning(stages, state, 0), recorder])
    _check_epoch(recorder, 3, stages[2])


def test_repeated_dataset_with_steps_per_epoch_lags_behind_a_stage_change():
    """Pins the limit named in the module docstring: Keras keeps one iterator
    across epochs when given steps_per_epoch, so batches prefetched before a
    stage change still have the old size."""
    # No RandAugment: this pipeline builds fast and prefetches the same way.
    train, _, info = make_datasets(_source(), family="efficientnetv2", image_size=40, batch_size=BATCH, augmentation=None)
    model, input_probe, head_probe = _model()
    stages = progressive_stages(2, 2, image_size=(16, 32))
    recorder = Recorder(input_probe, head_probe, pause_at_epoch_end=0.3)
    model.fit(
        train.repeat(), steps_per_epoch=STEPS, epochs=2, verbose=0,
        callbacks=[ProgressiveLearning(stages, info.state, 0), recorder],
    )  # fmt: skip
    assert recorder.seen(0, "size") == [16] * STEPS  # the iterator starts after the first on_epoch_begin
    assert recorder.seen(1, "size")[0] == 16  # prefetched in stage 1, consumed in stage 2


def test_scheduled_dropout_needs_a_head_dropout_layer():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(keras.layers.GlobalAveragePooling2D()(inputs)))
    model.compile("sgd", "mse")
    state = AugmentState(16)
    data = tf.data.Dataset.from_tensors((tf.zeros([BATCH, 16, 16, 3]), tf.zeros([BATCH, NUM_CLASSES])))
    stages = progressive_stages(2, 2, image_size=(16, 32), dropout=(0.1, 0.2))
    with pytest.raises(ValueError, match="no HeadDropout layer"):
        model.fit(data, epochs=2, verbose=0, callbacks=[ProgressiveLearning(stages, state)])
    # Without scheduled dropout such a model is fine, and its logs have no dropout.
    unscheduled = ProgressiveLearning(progressive_stages(2, 2, image_size=(16, 32)), state, verbose=0)
    history = model.fit(data, epochs=2, verbose=0, callbacks=[unscheduled])
    assert "dropout" not in history.history and history.history["image_size"] == [16, 32]
