"""A keras.applications model with non-trivial weights: the reference that weight-loading tests compare with."""

import keras
import numpy as np

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def randomized_application(constructor: str, input_shape: tuple) -> keras.Model:
    """`keras.applications.<constructor>` with random non-trivial BN statistics and biases, logits out.

    Built with weights=None, Keras' V1 Normalization layer computes
    (x/255 - mean) / sqrt(variance) without the extra rescaling it adds for its
    ImageNet weights (tensorflow/tensorflow#49930); variance = std**2 makes it
    the official normalization, which is what our model applies.
    """
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(2)
    model = getattr(keras.applications, constructor)(weights=None, input_shape=input_shape, classifier_activation=None)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            # Small residual branches, as in trained networks, keep deep activations (and float32 error) bounded.
            residual_scale = 0.1 if layer.name.endswith("project_bn") else 1.0
            layer.gamma.assign(rng.uniform(0.5, 1.5, n) * residual_scale)
            layer.beta.assign(rng.normal(0, 0.2, n) * residual_scale)
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
        elif isinstance(layer, keras.layers.Normalization) and layer.weights:
            layer.adapt_mean.assign(MEAN)
            layer.adapt_variance.assign(STD**2)
            layer.finalize_state()
        elif getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    return model
