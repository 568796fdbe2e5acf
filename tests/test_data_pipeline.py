"""make_datasets end to end: run-time knobs, one trace per run, synthetic data."""

import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.data import AugmentState, make_datasets, synthetic, synthetic_source


@pytest.fixture(scope="module")
def small():
    return synthetic_source(num_classes=4, resolution=32, train_size=64, eval_size=20)


def test_train_and_eval_specs_and_ranges(small):
    train, ev, info = make_datasets(small, family="efficientnetv2", image_size=24, batch_size=8, mixup_alpha=0.2, cutmix_alpha=1.0)
    assert train.element_spec[0].shape.as_list() == [8, None, None, 3]
    x, y = next(iter(train))
    assert x.dtype == tf.float32 and 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255
    np.testing.assert_allclose(tf.reduce_sum(y, 1).numpy(), 1.0, atol=1e-5)
    assert len(list(train)) == 64 // 8
    assert sum(int(x.shape[0]) for x, _ in ev) == 20 and ev.element_spec[1].shape[-1] == 4
    assert info.class_names == ["red_circle", "yellow_circle", "green_circle", "blue_circle"]


def test_size_change_shows_in_a_few_batches_without_rebuilding(small):
    state = AugmentState(24, randaug_magnitude=10)
    train, _, _ = make_datasets(small, family="efficientnet", image_size=24, batch_size=4, state=state)
    it = iter(train.repeat())
    assert next(it)[0].shape[1:3] == (24, 24)
    state.assign(image_size=16)
    sizes = [next(it)[0].shape[1] for _ in range(12)]
    assert set(sizes) <= {16, 24} and sizes[-1] == 16 and sizes.index(16) <= 8
    assert sizes[sizes.index(16):] == [16] * (12 - sizes.index(16))  # every batch one size


def test_keras_fit_traces_once_across_sizes(small):
    import keras

    state = AugmentState(16, randaug_magnitude=5, mixup_alpha=0.2)
    train, _, _ = make_datasets(small, family="efficientnetv2", image_size=16, batch_size=8, state=state)
    traces = []

    class CountTraces(keras.layers.Layer):
        def call(self, x):
            traces.append(x.shape)  # Python runs only while tracing
            return x

    model = keras.Sequential([keras.Input((None, None, 3)), CountTraces(), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    traces.clear()
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1))
    grow = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: state.assign(image_size=16 + 8 * e))
    model.fit(train, epochs=3, verbose=0, callbacks=[grow])
    assert len(traces) == 1 and traces[0][1] is None  # one generic trace serves sizes 16, 24 and 32


def test_batches_depend_only_on_the_seed_and_the_epoch(small):
    """Every draw is keyed (shuffle, crop, flip, RandAugment, Mixup, CutMix): the same seed gives the
    same batches, and epoch 1 on its own (a resumed run) is epoch 1 after epoch 0."""

    def epochs(seed, first_epoch=0, count=2):
        train, _, info = make_datasets(small, family="efficientnetv2", image_size=24, batch_size=8, seed=seed,
                                       randaug_magnitude=15, mixup_alpha=0.4, cutmix_alpha=1.0)  # fmt: skip
        info.state.epoch.assign(first_epoch)
        return [np.concatenate([np.concatenate([x.numpy().ravel(), y.numpy().ravel()]) for x, y in train])
                for _ in range(count)]  # fmt: skip

    (first, second), (again, _) = epochs(3), epochs(3)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(epochs(3, first_epoch=1, count=1)[0], second)
    assert not np.array_equal(first, second) and not np.array_equal(first, epochs(4, count=1)[0])


def test_bad_arguments_fail_with_clear_errors(small):
    with pytest.raises(ValueError, match="family"):
        make_datasets(small, family="resnet", image_size=16, batch_size=4)
    with pytest.raises(ValueError, match="augmentation"):
        make_datasets(small, family="efficientnet", image_size=16, batch_size=4, augmentation="mixup")
    with pytest.raises(ValueError, match=r"image_size must be in \[8"):
        AugmentState(16).assign(image_size=4)


def test_synthetic_is_deterministic_split_and_resolution_free():
    a, la = synthetic.render_split(6, 10, 40, seed=3, stream=0)
    b, _ = synthetic.render_split(6, 10, 40, seed=3, stream=0)
    c, _ = synthetic.render_split(6, 10, 40, seed=3, stream=1)
    big, _ = synthetic.render_split(2, 10, 100, seed=3, stream=0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert big.shape == (2, 100, 100, 3) and list(la) == [0, 1, 2, 3, 4, 5]
    assert len(set(synthetic.class_names(synthetic.MAX_CLASSES))) == synthetic.MAX_CLASSES == 40
    with pytest.raises(ValueError, match="2 to 40"):
        synthetic.class_names(41)
    # 10 classes = 5 color families x 2 shapes, each family and shape used equally.
    names = synthetic.class_names(10)
    assert len({n.split("_")[0] for n in names}) == 5 and len({n.split("_")[1] for n in names}) == 2
    _, labels = synthetic.render_split(50, 10, 16, seed=0, stream=0)
    assert list(np.bincount(labels)) == [5] * 10


@pytest.mark.slow  # trains 12 epochs
def test_tiny_cnn_learns_synthetic_well_above_chance():
    import keras

    keras.utils.set_random_seed(0)
    src = synthetic_source(num_classes=10, resolution=40, train_size=2000, eval_size=300)
    train, ev, _ = make_datasets(src, family="efficientnet", image_size=40, batch_size=32, augmentation=None, cache_eval=True)
    model = keras.Sequential([
        keras.Input((None, None, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.GlobalMaxPooling2D(),
        keras.layers.Dense(10),
    ])  # fmt: skip
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(train, epochs=12, verbose=0)
    accuracy = model.evaluate(ev, verbose=0)[1]
    assert accuracy > 0.7, accuracy  # chance is 0.1


def test_synthetic_only_the_main_object_has_a_class_color():
    import colorsys

    images, labels = synthetic.render_split(20, 10, 48, seed=1, stream=0)
    centers = list(synthetic.FAMILIES.values())
    for image, label in zip(images, labels):
        hsv = np.array([colorsys.rgb_to_hsv(*p) for p in image.reshape(-1, 3) / 255.0])
        vivid = hsv[hsv[:, 1] > 0.6]  # background and clutter are desaturated
        assert 0.05 < len(vivid) / len(hsv) < 0.9  # a big object, not the whole image
        hue = np.median(vivid[:, 0] if centers[label % 5] > 0.1 else (vivid[:, 0] + 0.5) % 1.0 - 0.5)
        assert abs(hue - centers[label % 5]) < 0.05, (label, hue)
