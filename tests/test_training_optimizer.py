import keras
import numpy as np
import pytest

import efficientnet_tf
from efficientnet_tf.training.optimizer import RMSprop, add_weight_decay, make_optimizer
from efficientnet_tf.training.schedules import WarmupSchedule, scaled_learning_rate

TINY_BLOCKS = ["r1_k3_s1_e1_i16_o16_c1", "r1_k3_s2_e4_i16_o24_se0.25"]


def tiny_model():
    """Deterministic in training mode (no dropout, no stochastic depth), so two steps see the same gradients."""
    keras.utils.set_random_seed(0)
    return efficientnet_tf.get_model(
        "efficientnetv2-b0", blocks=TINY_BLOCKS, width=0.5, num_classes=3, dropout_rate=0.0, survival_prob=1.0
    )


def batch(size=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (size, 32, 32, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, size)]
    return images, labels


def tf1_rmsprop(weights, gradients, lr, initial_mean_square, rho=0.9, momentum=0.9, epsilon=1e-3):
    """TF1 RMSPropOptimizer in float64: epsilon inside the root, momentum on the scaled step."""
    weights = weights.astype(np.float64)
    mean_square = np.full_like(weights, initial_mean_square)
    velocity = np.zeros_like(weights)
    for gradient in gradients:
        mean_square = rho * mean_square + (1 - rho) * gradient**2
        velocity = momentum * velocity + lr * gradient / np.sqrt(mean_square + epsilon)
        weights = weights - velocity
    return weights


def apply_steps(optimizer, weights, gradients):
    variable = keras.Variable(weights)
    for gradient in gradients:
        optimizer.apply_gradients([(gradient, variable)])
    return variable.numpy()


@pytest.mark.parametrize("initial_mean_square", [1.0, 0.0])
@pytest.mark.parametrize("num_steps", [1, 6])
def test_rmsprop_matches_tf1_formula(initial_mean_square, num_steps):
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(4, 3)).astype("float32")
    gradients = [rng.normal(scale=0.5, size=(4, 3)).astype("float32") for _ in range(num_steps)]
    optimizer = RMSprop(0.01, rho=0.9, momentum=0.9, epsilon=1e-3, initial_mean_square=initial_mean_square)
    result = apply_steps(optimizer, weights, gradients)
    expected = tf1_rmsprop(weights, gradients, 0.01, initial_mean_square)
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-7)


def test_rmsprop_first_step_in_closed_form():
    gradient = np.array([-2.0, -0.1, 0.01, 0.5, 3.0], "float32")
    optimizer = RMSprop(learning_rate=0.01, momentum=0.9, epsilon=1e-3)
    step = np.zeros(5, "float32") - apply_steps(optimizer, np.zeros(5, "float32"), [gradient])
    np.testing.assert_allclose(step, 0.01 * gradient / np.sqrt(0.9 + 0.1 * gradient**2 + 1e-3), rtol=1e-6)


def test_zero_initial_mean_square_is_stock_keras():
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(7,)).astype("float32")
    gradients = [rng.normal(size=(7,)).astype("float32") for _ in range(5)]
    ours = apply_steps(RMSprop(0.02, momentum=0.9, epsilon=1e-3, initial_mean_square=0.0), weights, gradients)
    stock = apply_steps(keras.optimizers.RMSprop(0.02, momentum=0.9, epsilon=1e-3), weights, gradients)
    np.testing.assert_array_equal(ours, stock)


def test_negative_initial_mean_square_is_rejected():
    with pytest.raises(ValueError, match="^initial_mean_square must"):
        RMSprop(initial_mean_square=-1.0)


def first_step(model, initial_weights, initial_mean_square, lr, build_in_fit):
    model.set_weights(initial_weights)
    before = [v.numpy() for v in model.trainable_weights]
    optimizer = RMSprop(learning_rate=lr, momentum=0.9, epsilon=1e-3, initial_mean_square=initial_mean_square)
    if not build_in_fit:  # saves the second trace that creating variables in a tf.function costs
        optimizer.build(model.trainable_weights)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    model.train_on_batch(*batch())
    slots = np.concatenate([v.numpy().ravel() for v in optimizer._velocities])
    steps = np.concatenate([np.abs(v.numpy() - b).ravel() for v, b in zip(model.trainable_weights, before)])
    return steps, slots


def test_first_step_inside_fit_is_small_only_with_unit_mean_square():
    model = tiny_model()
    initial_weights = model.get_weights()
    lr = 0.01
    tf1_steps, tf1_slots = first_step(model, initial_weights, 1.0, lr, build_in_fit=True)
    keras_steps, _ = first_step(model, initial_weights, 0.0, lr, build_in_fit=False)

    # The slot started at 1 inside the traced train step (then took one 0.9 * ms + 0.1 * g^2 update).
    assert tf1_slots.min() >= 0.9
    # Keras' zero start moves weights by lr * g / sqrt(0.1 g^2 + eps): up to 3.16 * lr, whatever the gradient's size.
    assert 2.5 * lr < keras_steps.max() <= np.sqrt(10) * lr * (1 + 1e-5)
    assert np.mean(keras_steps > lr) > 0.1
    # TF1's unit start moves each weight by about lr * g: no weight by more than lr / 2 here.
    assert tf1_steps.max() < 0.5 * lr
    assert np.median(tf1_steps) < 0.1 * np.median(keras_steps)


def test_recipe_warmup_keeps_the_loss_finite():
    model = tiny_model()
    steps_per_epoch, epochs = 8, 4
    schedule = WarmupSchedule(scaled_learning_rate(0.016, 8), steps_per_epoch, epochs, warmup_epochs=epochs)
    add_weight_decay(model, 1e-5)
    model.compile(optimizer=make_optimizer("rmsprop", schedule), loss="categorical_crossentropy")
    images, labels = batch(size=64, seed=3)
    before = [v.numpy() for v in model.trainable_weights]
    history = model.fit(images, labels, batch_size=8, epochs=epochs, verbose=0)
    assert int(model.optimizer.iterations) == 32
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_weights)
    assert max(np.abs(v.numpy() - b).max() for v, b in zip(model.trainable_weights, before)) > 0


def half_squared_kernel_norms(model):
    """Kernels found by shape: conv kernels are 4-D and dense ones 2-D; BatchNorm vectors and biases are 1-D."""
    kernels = [v for v in model.trainable_weights if len(v.shape) >= 2]
    return kernels, sum(0.5 * np.sum(v.numpy().astype(np.float64) ** 2) for v in kernels)


def test_weight_decay_regularizes_exactly_the_kernels():
    model = tiny_model()
    assert add_weight_decay(model, 0.0) == 0
    assert model.losses == []

    count = add_weight_decay(model, 1e-5)
    kernels, half_norms = half_squared_kernel_norms(model)
    decayed = [v for v in model.weights if v.regularizer is not None]
    assert count == len(kernels) == len(decayed) == 9
    assert {v.path for v in decayed} == {v.path for v in kernels}
    # Kernels nested in the MBConv block and its squeeze-excite are reached too.
    nested = {"block2a/dwconv/kernel", "block2a/se/reduce/kernel", "block2a/se/expand/kernel"}
    assert nested <= {v.path for v in decayed}
    assert len(model.losses) == count
    assert float(sum(model.losses)) == pytest.approx(1e-5 * half_norms, rel=1e-5)


def test_train_step_loss_includes_weight_decay():
    model = tiny_model()
    images, labels = batch()
    # Learning rate 0 keeps the weights, and training-mode BatchNorm uses batch statistics, so both steps
    # see the same function; recompiling retraces the train step so it sees the new regularizers.
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy")
    plain_loss = model.train_on_batch(images, labels)
    add_weight_decay(model, 1e-3)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="categorical_crossentropy")
    decayed_loss = model.train_on_batch(images, labels)
    _, half_norms = half_squared_kernel_norms(model)
    assert decayed_loss - plain_loss == pytest.approx(1e-3 * half_norms, rel=1e-4)


def test_negative_weight_decay_is_rejected():
    with pytest.raises(ValueError, match="^weight_decay must"):
        add_weight_decay(tiny_model(), -1e-5)


def test_make_optimizer_builds_the_recipe_optimizers():
    rmsprop = make_optimizer("RMSprop", 0.01)
    assert type(rmsprop) is RMSprop
    assert (rmsprop.rho, rmsprop.momentum, rmsprop.epsilon, rmsprop.initial_mean_square) == (0.9, 0.9, 1e-3, 1.0)
    sgd = make_optimizer("sgd", 0.1, momentum=0.8)
    assert type(sgd) is keras.optimizers.SGD and sgd.momentum == 0.8
    assert type(make_optimizer("adam", 0.001)) is keras.optimizers.Adam
    schedule = WarmupSchedule(0.1, 10, 20, warmup_epochs=2)
    assert make_optimizer("rmsprop", schedule)._learning_rate is schedule
    assert float(make_optimizer("sgd", 0.1).learning_rate) == pytest.approx(0.1)


def test_make_optimizer_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"^name must be one of \('rmsprop', 'sgd', 'adam'\), got 'lamb'\.$"):
        make_optimizer("lamb", 0.01)


def test_rmsprop_survives_serialization():
    schedule = WarmupSchedule(0.1, 10, 20, warmup_epochs=2)
    optimizer = RMSprop(learning_rate=schedule, momentum=0.9, epsilon=1e-3, initial_mean_square=0.5)
    serialized = keras.optimizers.serialize(optimizer)
    assert serialized["registered_name"] == "efficientnet_tf>RMSprop"
    restored = keras.optimizers.deserialize(serialized)
    assert type(restored) is RMSprop
    assert isinstance(restored._learning_rate, WarmupSchedule)
    assert restored.get_config() == optimizer.get_config()
    restored.build([keras.Variable(np.zeros(3, "float32"))])
    np.testing.assert_array_equal(restored._velocities[0].numpy(), [0.5, 0.5, 0.5])
