"""Optimizer and weight decay of the EfficientNet / EfficientNetV2 ImageNet recipe."""

import keras

OPTIMIZERS = ("rmsprop", "sgd", "adam")
DECAYED_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


@keras.saving.register_keras_serializable(package="efficientnet_tf")
class RMSprop(keras.optimizers.RMSprop):
    """Keras RMSprop whose mean-square slots start at `initial_mean_square`.

    The official recipe ran TF1's RMSPropOptimizer, which starts the mean square
    at 1; Keras starts it at 0, so with epsilon 1e-3 every weight's first update
    is about lr * g / sqrt(0.1 * g**2) = 3.16 * lr * sign(g), whatever its
    gradient. Starting at 1 makes the first steps lr * g instead, which the
    recipe's hyper-parameters were tuned with. 0.0 gives Keras' behaviour.
    Epsilon sits inside the square root in both, as in TF1.
    """

    def __init__(self, *args, initial_mean_square: float = 1.0, **kwargs):
        if initial_mean_square < 0:
            raise ValueError(
                f"initial_mean_square must be >= 0, got {initial_mean_square}; use 1.0 (TF1) or 0.0 (Keras)."
            )
        super().__init__(*args, **kwargs)
        self.initial_mean_square = float(initial_mean_square)

    def add_optimizer_variables(self, trainable_variables, name, initializer="zeros"):
        # An initializer, not an assign in `build`: `fit` builds the optimizer
        # while tracing its train step, and tf.function then retraces with the
        # optimizer built, so an assign made in that first trace never runs.
        if name == "velocity":
            initializer = keras.initializers.Constant(self.initial_mean_square)
        return super().add_optimizer_variables(trainable_variables, name, initializer)

    def get_config(self) -> dict:
        return {**super().get_config(), "initial_mean_square": self.initial_mean_square}


def make_optimizer(
    name: str,
    learning_rate,
    *,
    momentum: float = 0.9,
    rho: float = 0.9,
    epsilon: float = 1e-3,
) -> keras.optimizers.Optimizer:
    """The recipe's optimizer by name; `learning_rate` may be a float or a schedule.

    The defaults are the recipe's RMSprop; "sgd" uses `momentum` only and
    "adam" keeps Keras' own defaults, since the recipe never tuned them.
    """
    key = name.lower()
    if key == "rmsprop":
        return RMSprop(learning_rate=learning_rate, rho=rho, momentum=momentum, epsilon=epsilon)
    if key == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    if key == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"name must be one of {OPTIMIZERS}, got {name!r}.")


def add_weight_decay(model: keras.Model, weight_decay: float) -> int:
    """Adds weight_decay * sum(0.5 * ||kernel||^2) over conv and dense kernels to the model's loss.

    The recipe decays kernels only, not BatchNorm parameters or biases, as an L2
    term in the loss (not decoupled decay), so it also flows through RMSprop's
    normalisation. The regularizer sits on each variable, which reaches kernels
    nested in blocks; call it before `compile` (or compile again), since an
    already traced train step does not see new regularizers. Returns how many
    kernels it decays.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}; the recipe uses 1e-5.")
    if weight_decay == 0:
        return 0
    # Keras has no public recursive walk; _flatten_layers reaches layers nested inside our blocks.
    kernels = [layer.kernel for layer in model._flatten_layers() if isinstance(layer, DECAYED_LAYERS)]
    for kernel in kernels:
        kernel.regularizer = keras.regularizers.L2(weight_decay / 2)
    return len(kernels)
