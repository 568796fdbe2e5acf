"""Official checkpoints: written here in the official name-based layout, read back by name.

`tests/data/official/<model>.txt` records the variables (names and shapes) of
one official checkpoint per family, as the official code names them. Each test
writes such a checkpoint with TensorFlow's own SaveV2 op (the format the
official TF1 Saver wrote), with ExponentialMovingAverage copies, global_step
and optimizer slots, into a directory with a ``checkpoint`` file and a
``.tar.gz`` like the published archives.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tarfile  # noqa: E402
import uuid  # noqa: E402
import zlib  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from efficientnet_tf import convert, get_model, official  # noqa: E402
from keras_reference import randomized_application  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "official")
SIZE = 64
SHAPE = (SIZE, SIZE, 3)
KERAS = {"efficientnet-b0": "EfficientNetB0", "efficientnetv2-b0": "EfficientNetV2B0"}


def recorded(name):
    """The official variables of `name`: {variable name: shape}, in the recorded order."""
    with open(os.path.join(DATA, f"{name}.txt")) as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    return {row[0]: tuple(int(d) for d in row[1].split(",")) for row in rows}


def random_values(shapes, seed):
    rng = np.random.default_rng(seed)
    return {
        name: (rng.uniform(0.5, 2.0, shape) if name.endswith("moving_variance") else rng.normal(0, 0.1, shape)).astype(
            "float32"
        )
        for name, shape in shapes.items()
    }


def write_checkpoint(directory, raw, ema=None, step=1000):
    """An official-layout checkpoint: `raw` values, `ema` copies, global_step, RMSProp slots, a `checkpoint` file."""
    os.makedirs(directory, exist_ok=True)
    tensors = dict(raw)
    for name, value in (ema or {}).items():
        tensors[name + "/ExponentialMovingAverage"] = value
    first = next(iter(raw))
    tensors[first + "/RMSProp"] = np.ones_like(raw[first])
    tensors["global_step"] = np.array(step, "int64")
    prefix = os.path.join(directory, f"model.ckpt-{step}")
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=[tensors[n] for n in names]
    )
    with open(os.path.join(directory, "checkpoint"), "w") as f:  # the state file tf.train.Saver writes
        f.write(f'model_checkpoint_path: "model.ckpt-{step}"\nall_model_checkpoint_paths: "model.ckpt-{step}"\n')
    return prefix


def write_archive(directory, archive):
    """The published archives hold one folder named after the model."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=os.path.basename(directory))
    return str(archive)


@pytest.fixture(autouse=True)
def _free_models():
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def models():
    """One model per family, built once (64 px)."""
    return {name: get_model(name, input_shape=SHAPE, classifier_activation=None) for name in
            ("efficientnet-b0", "efficientnet-lite0", "efficientnetv2-b0")}


@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnet-lite0", "efficientnetv2-b0"])
def test_every_official_variable_is_used_exactly_once(name, models, tmp_path):
    shapes = recorded(name)
    raw = random_values(shapes, 0)
    ema = random_values(shapes, 1)
    write_checkpoint(tmp_path / name, raw, ema)
    model = models[name]
    values, mapping = official.read_checkpoint(str(tmp_path / name), model, name)
    sources = [line.split(" -> ")[0] for line in mapping]
    assert sorted(sources) == sorted(n + "/ExponentialMovingAverage" for n in shapes)  # each one, once, EMA
    assert len(values) == len(model.weights) == len(shapes)
    ours = {variable.path: tuple(variable.shape) for variable in model.weights}
    for line in mapping:
        source, target = line.split(" -> ")
        path = target.split(" ")[0]
        assert ours[path] == shapes[source[: -len("/ExponentialMovingAverage")]]
        np.testing.assert_array_equal(values[path], ema[source[: -len("/ExponentialMovingAverage")]])
    raw_values, _ = official.read_checkpoint(str(tmp_path / name), model, name, ema=False)
    for line in mapping:
        source, target = line.split(" -> ")
        np.testing.assert_array_equal(raw_values[target.split(" ")[0]], raw[source[: -len("/ExponentialMovingAverage")]])


def test_named_correspondences(models, tmp_path):
    """Spot checks of what each official name means, from the official code."""
    mapping = {}
    for name in ("efficientnet-b0", "efficientnetv2-b0"):
        write_checkpoint(tmp_path / name, random_values(recorded(name), 0))
        _, lines = official.read_checkpoint(str(tmp_path / name), models[name], name)
        mapping.update(line.split(" (")[0].split(" -> ") for line in lines)
    assert mapping["efficientnet-b0/blocks_0/depthwise_conv2d/depthwise_kernel"] == "block1a/dwconv/kernel"
    assert mapping["efficientnet-b0/blocks_0/conv2d/kernel"] == "block1a/project_conv/kernel"
    assert mapping["efficientnet-b0/blocks_1/conv2d/kernel"] == "block2a/expand_conv/kernel"
    assert mapping["efficientnet-b0/blocks_1/tpu_batch_normalization_1/gamma"] == "block2a/bn/gamma"
    assert mapping["efficientnet-b0/blocks_2/se/conv2d_1/bias"] == "block2b/se/expand/bias"
    assert mapping["efficientnet-b0/blocks_15/conv2d_1/kernel"] == "block7a/project_conv/kernel"
    assert mapping["efficientnet-b0/head/dense/kernel"] == "predictions/kernel"
    assert mapping["efficientnetv2-b0/blocks_0/conv2d/kernel"] == "block1a/project_conv/kernel"
    assert mapping["efficientnetv2-b0/blocks_1/conv2d_1/kernel"] == "block2a/project_conv/kernel"
    assert mapping["efficientnetv2-b0/blocks_5/se/conv2d/kernel"] == "block4a/se/reduce/kernel"


def _keras_model(name):
    return randomized_application(KERAS[name], SHAPE)


def _official_name(layer_names, layer_name, scope, blocks):
    """keras.applications layer name -> official layer scope, from the official construction order."""
    fixed = {"stem_conv": "stem/conv2d", "stem_bn": "stem/tpu_batch_normalization", "top_conv": "head/conv2d",
             "top_bn": "head/tpu_batch_normalization", "predictions": "head/dense"}
    if layer_name in fixed:
        return f"{scope}/{fixed[layer_name]}"
    block, part = layer_name.split("_", 1)
    has = {p for p in ("expand_conv", "expand_bn", "bn") if f"{block}_{p}" in layer_names}
    names = {
        "expand_conv": "conv2d", "expand_bn": "tpu_batch_normalization",
        "dwconv": "depthwise_conv2d", "dwconv2": "depthwise_conv2d",
        "bn": "tpu_batch_normalization_1" if "expand_bn" in has else "tpu_batch_normalization",
        "se_reduce": "se/conv2d", "se_expand": "se/conv2d_1",
        "project_conv": "conv2d_1" if "expand_conv" in has else "conv2d",
    }
    bns_before = len(has & {"expand_bn", "bn"})
    names["project_bn"] = "tpu_batch_normalization" + (f"_{bns_before}" if bns_before else "")
    return f"{scope}/blocks_{blocks.index(block)}/{names[part]}"


def official_from_keras(model, scope):
    """The keras.applications model's weights under official names (the reference for parity)."""
    names = [layer.name for layer in model.layers]
    blocks = list(dict.fromkeys(n.split("_")[0] for n in names if n.startswith("block")))
    values = {}
    for layer in model.layers:
        if not layer.weights or isinstance(layer, keras.layers.Normalization):
            continue
        base = _official_name(names, layer.name, scope, blocks)
        for variable in layer.weights:
            short = "depthwise_kernel" if isinstance(layer, keras.layers.DepthwiseConv2D) else variable.name
            values[f"{base}/{short}"] = variable.numpy()
    return values


@pytest.mark.parametrize("name", list(KERAS))
def test_logits_match_keras_applications_given_the_same_arrays(name, tmp_path):
    """get_model(name, weights=<checkpoint dir>, classifier_activation=None) gives the reference logits.

    The official code normalizes outside the model; keras.applications (made
    to use the official normalization) and ours both do it inside, on [0, 255] RGB.
    """
    reference = _keras_model(name)
    values = official_from_keras(reference, name)
    assert {k: v.shape for k, v in values.items()} == recorded(name)
    noisy = {k: v + 1.0 for k, v in values.items()}  # raw values differ: the EMA copies must be the ones used
    folder = tmp_path / name
    prefix = write_checkpoint(folder, noisy, ema=values)
    x = np.random.default_rng(0).uniform(0, 255, (2, *SHAPE)).astype("float32")
    expected = reference(x, training=False).numpy()
    archive = write_archive(folder, tmp_path / f"{name}.tar.gz")
    for source in (str(folder), prefix, archive):
        model = get_model(name, weights=source, input_shape=SHAPE, classifier_activation=None)
        np.testing.assert_allclose(model(x, training=False).numpy(), expected, atol=2e-4)
        keras.backend.clear_session()


def test_other_head_and_backbone_from_checkpoint(tmp_path, capsys):
    name = "efficientnet-lite0"
    write_checkpoint(tmp_path / name, random_values(recorded(name), 0))
    capsys.readouterr()
    get_model(name, weights=str(tmp_path / name), num_classes=2, input_shape=SHAPE)
    assert capsys.readouterr().out == (
        f"{name}: loaded 245 of 247 weights from {name}; head (1280 -> 2) starts fresh (the file's head is 1280 -> 1000)\n"
    )
    get_model(name, weights=str(tmp_path / name), include_top=False, input_shape=SHAPE)
    assert capsys.readouterr().out.endswith("loaded 245 of 245 weights from efficientnet-lite0; the file's head (1280 -> 1000) is not used\n")


def _one_line_error(source, name="efficientnet-lite0"):
    with pytest.raises(ValueError) as error:
        get_model(name, weights=str(source), input_shape=SHAPE)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    name = "efficientnet-lite0"
    shapes = recorded(name)
    folder = tmp_path / name
    write_checkpoint(folder, random_values(shapes, 0))
    archive = write_archive(folder, tmp_path / "whole.tar.gz")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(open(archive, "rb").read()[: os.path.getsize(archive) // 2])
    assert "truncated or damaged archive" in _one_line_error(truncated) and "download it again" in _one_line_error(truncated)

    assert "holds efficientnet-lite0, not efficientnet-lite1; build 'efficientnet-lite0'" in _one_line_error(
        folder, "efficientnet-lite1"
    )

    missing = dict(random_values(shapes, 0))
    del missing["efficientnet-lite0/blocks_3/depthwise_conv2d/depthwise_kernel"]
    write_checkpoint(tmp_path / "missing", missing)
    assert "lacks efficientnet-lite0/blocks_3/depthwise_conv2d/depthwise_kernel (our block3a/dwconv/kernel)" in (
        _one_line_error(tmp_path / "missing")
    )

    extra = {**random_values(shapes, 0), "efficientnet-lite0/blocks_16/conv2d/kernel": np.zeros((1, 1, 320, 320), "float32")}
    write_checkpoint(tmp_path / "extra", extra)
    assert "has efficientnet-lite0/blocks_16/conv2d/kernel (1, 1, 320, 320), which" in _one_line_error(tmp_path / "extra")

    misshapen = {**random_values(shapes, 0), "efficientnet-lite0/blocks_0/conv2d/kernel": np.zeros((3, 3, 32, 16), "float32")}
    write_checkpoint(tmp_path / "misshapen", misshapen)
    assert "efficientnet-lite0/blocks_0/conv2d/kernel is (3, 3, 32, 16) in the checkpoint, our block1a/project_conv/kernel" in (
        _one_line_error(tmp_path / "misshapen")
    )
    assert "not an official EfficientNet checkpoint" in _one_line_error(
        write_checkpoint(tmp_path / "other", {"resnet/conv1/kernel": np.zeros((3, 3, 3, 8), "float32")})
    )


def test_convert_command_writes_weights_and_keras(tmp_path, capsys):
    name = "efficientnet-lite0"
    values = random_values(recorded(name), 0)
    folder = tmp_path / name
    write_checkpoint(folder, {k: v + 1 for k, v in values.items()}, ema=values)
    archive = write_archive(folder, tmp_path / f"{name}.tar.gz")
    out = str(tmp_path / "lite0.weights.h5")
    assert convert.main([archive, "--model", name, "--out", out]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"{name}/blocks_0/depthwise_conv2d/depthwise_kernel/ExponentialMovingAverage -> block1a/dwconv/kernel (3, 3, 32, 1)" in printed
    assert printed[-2] == f"{name}: loaded 247 of 247 weights from {name}.tar.gz"
    assert printed[-1] == f"wrote {out} (EMA values)"
    model = get_model(name, weights=out, input_shape=SHAPE)
    np.testing.assert_array_equal(model.get_layer("predictions").kernel.numpy(), values[f"{name}/head/dense/kernel"])

    whole = str(tmp_path / "lite0_raw.keras")
    assert convert.main([str(folder), "--model", name, "--out", whole, "--raw", "--quiet"]) == 0
    loaded = keras.models.load_model(whole)
    np.testing.assert_array_equal(loaded.get_layer("stem_conv").kernel.numpy(), values[f"{name}/stem/conv2d/kernel"] + 1)

    assert convert.main([str(folder), "--model", "efficientnet-b0", "--out", out]) == 2
    assert "holds efficientnet-lite0, not efficientnet-b0" in capsys.readouterr().err


def golden_value(name, shape):
    """A variable's value from its official name and shape alone (the golden logits were computed from these)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    leaf = name.rsplit("/", 1)[-1]
    if leaf in ("gamma", "moving_variance"):
        value = rng.uniform(0.5, 1.5, shape)
    elif leaf in ("beta", "bias", "moving_mean"):
        value = rng.normal(0.0, 0.1, shape)
    elif len(shape) == 2:  # the dense kernel, in the official initializer's range
        value = rng.uniform(-1, 1, shape) / np.sqrt(shape[1])
    else:  # convolution kernels at the official initializer's fan-out scale
        value = rng.normal(0.0, np.sqrt(2.0 / (shape[0] * shape[1] * shape[-1])), shape)
    return value.astype("float32")


@pytest.mark.parametrize("name", ["efficientnet-b0", "efficientnet-lite0", "efficientnetv2-b0"])
def test_logits_match_the_official_code(name, tmp_path):
    """golden_logits.npz: the official code's logits (tensorflow/tpu 7dc921f, google/automl 6a54c87, run in a scratch
    environment with tf-keras) with these values as the EMA copies of a checkpoint it saved, on these inputs
    normalized as its evaluation does (ImageNet mean/std; Lite 127/128; V2-B0 ImageNet mean/std). Its own
    checkpoint gave the same logits through get_model (max abs difference 6e-8, 8e-6, 4e-7)."""
    values = {n: golden_value(n, shape) for n, shape in recorded(name).items()}
    folder = tmp_path / name
    write_checkpoint(folder, {k: v + 1.0 for k, v in values.items()}, ema=values)
    x = np.random.default_rng(0).uniform(0, 255, (2, *SHAPE)).astype("float32")
    expected = np.load(os.path.join(DATA, "golden_logits.npz"))[name.replace("-", "_")]
    model = get_model(name, weights=str(folder), input_shape=SHAPE, classifier_activation=None)
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_graph_built_v2_head_and_adam_bookkeeping_load(models, tmp_path):
    """automl's main.py (TF1 graph, today's Keras) names V2's classifier head_1/dense; Adam adds beta1/2_power."""
    name = "efficientnetv2-b0"
    values = {k.replace("/head/dense/", "/head_1/dense/"): v for k, v in random_values(recorded(name), 0).items()}
    tensors = {**values, "beta1_power": np.float32(0.9), "beta2_power": np.float32(0.999)}
    first = next(iter(values))
    tensors.update({first + "/Adam": values[first], first + "/Adam_1": values[first]})
    write_checkpoint(tmp_path / name, tensors)
    loaded, mapping = official.read_checkpoint(str(tmp_path / name), models[name], name)
    assert f"{name}/head_1/dense/kernel -> predictions/kernel (1280, 1000)" in mapping
    np.testing.assert_array_equal(loaded["predictions/bias"], values[f"{name}/head_1/dense/bias"])
    assert len(loaded) == len(models[name].weights)


def test_an_archive_in_a_bucket_loads_like_a_local_one(tmp_path, monkeypatch):
    """ram:// stands in for gs://; the archive is read through a local copy.

    (A checkpoint directory in a bucket is read in place by tf.train; ram:// cannot show that, because its
    isdir() is true for any key prefix, so tf.train takes ``model.ckpt-N`` there for a directory.)
    """
    monkeypatch.chdir(tmp_path)  # a URL taken for a local path would show up here as a "ram:" folder
    name = "efficientnet-lite0"
    folder = tmp_path / "local" / name
    write_checkpoint(folder, random_values(recorded(name), 0))
    archive = write_archive(folder, tmp_path / "local" / f"{name}.tar.gz")
    remote = f"ram://official-{uuid.uuid4().hex[:8]}/{name}.tar.gz"
    tf.io.gfile.makedirs(remote.rsplit("/", 1)[0])
    tf.io.gfile.copy(archive, remote)
    expected = get_model(name, weights=str(folder), input_shape=SHAPE).get_weights()
    for ours, theirs in zip(get_model(name, weights=remote, input_shape=SHAPE).get_weights(), expected):
        np.testing.assert_array_equal(ours, theirs)
    assert os.listdir(tmp_path) == ["local"]
