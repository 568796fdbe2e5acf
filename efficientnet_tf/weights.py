"""Pretrained weights: Keras' published ImageNet files, keras.applications files, our own files.

Every source is read into one dict of arrays keyed by our variables' paths
(``block2a/expand_conv/kernel``), never by position, and `assign` puts it into
the model: every backbone weight must be there with its shape, while a
classifier of another size (or none) starts fresh, so any file fits any head.
keras.applications models are built from many small layers, ours from whole
blocks, so their layer names (``block2a_expand_conv``) are translated. Keras'
V1 ``normalization`` layer is skipped: ours is a weightless `Rescaling`
computing the same official normalization.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Mapping, Union

import h5py
import keras
import numpy as np

from efficientnet_tf import official, published
from efficientnet_tf.errors import one_line
from efficientnet_tf.files import check_filesystem, filesystem, is_file, local_copy
from efficientnet_tf.layers import FusedMBConv, MBConv
from efficientnet_tf.registry import ModelSpec, get_spec

_V1_URL = "https://storage.googleapis.com/keras-applications/"
_V2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/"

# md5 of Keras' file with and without the top, from keras/src/applications/efficientnet.py and
# efficientnet_v2.py.
_MD5 = {
    "efficientnet-b0": ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
    "efficientnet-b1": ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432"),
    "efficientnet-b2": ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39"),
    "efficientnet-b3": ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226"),
    "efficientnet-b4": ("18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "efficientnet-b5": ("ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f"),
    "efficientnet-b6": ("165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743"),
    "efficientnet-b7": ("8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a"),
    "efficientnetv2-b0": ("21ecbf6da12460d5c40bb2f29ceb2188", "893217f2bb855e2983157299931e43ff"),
    "efficientnetv2-b1": ("069f0534ff22adf035c89e2d9547a9dc", "0e80663031ca32d657f9caa404b6ec37"),
    "efficientnetv2-b2": ("424e49f28180edbde1e94797771950a7", "1dfe2e7a5d45b6632553a8961ea609eb"),
    "efficientnetv2-b3": ("1f1fc43bd98a6e4fd8fdfd551e02c7a0", "f6abf7b5849ac99a89b50dd3fd532856"),
    "efficientnetv2-s": ("e1d88a8495beba45748fedd0cecbe016", "af0682fb74e8c54910f2d4393339c070"),
    "efficientnetv2-m": ("a3bf6aa3276309f4fc6a34aa114c95cd", "1b8dc055df72dde80d614482840fe342"),
    "efficientnetv2-l": ("27e6d408b53c7ebc868fefa357689935", "b0b66b5c863aef5b46e8608fe1711615"),
}
# Our name -> (keras file stem, base URL, md5 with top, md5 without top).
PUBLISHED = {
    name: (name, _V2_URL, *md5) if name.startswith("efficientnetv2") else (name.replace("-", ""), _V1_URL, *md5)
    for name, md5 in _MD5.items()
}
IMAGENET_CLASSES = 1000
_CLASSIFIER = "predictions"
# Keras' preprocessing layers: no counterpart with weights in our model.
_SKIPPED_PREFIXES = ("normalization", "rescaling")
# tf.keras 2 (which wrote the published files) named a depthwise kernel differently.
_WEIGHT_ALIASES = {"depthwise_kernel": "kernel"}


def check_weights(weights, spec: ModelSpec) -> None:
    """Fails on a bad `weights` argument before the model is built (the file's content is checked on load)."""
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None, a weights name such as 'imagenet', or a file path, got {weights!r}.")
    path = os.fspath(weights)
    check_filesystem(path, "weights")
    if isinstance(path, str) and not filesystem(path).exists(path) and not filesystem(path).exists(path + ".index"):
        _check_name(path, spec)
        return
    if not (is_file(path) or official.is_checkpoint(path)):
        raise FileNotFoundError(
            f"Weights file {path!r} not found; pass weights=None, 'imagenet', an existing weights file or an "
            "official checkpoint (directory, model.ckpt-N prefix or .tgz/.tar.gz archive)."
        )


def weights_names(name: str) -> list[str]:
    """Every weights name published for a model: Keras' ``"imagenet"`` where it exists, then the official ones."""
    spec = get_spec(name)
    return (["imagenet"] if spec.name in PUBLISHED else []) + published.names_for(spec.name)


def _check_name(weights: str, spec: ModelSpec) -> None:
    """A weights name must be published for this model (and the model unmodified); a missing path names the fix."""
    names = weights_names(spec.name)
    if weights in names:
        if spec != get_spec(spec.name):
            raise ValueError(
                f"Published weights fit only the unmodified {spec.name!r}; drop the blocks/width/depth "
                "overrides or pass weights=None."
            )
        return
    if weights.strip().lower() in names:
        raise ValueError(f"weights={weights!r} is not a file; did you mean weights={weights.strip().lower()!r} (lowercase)?")
    looks_like_name = os.sep not in weights and "." not in weights
    if not looks_like_name:
        raise FileNotFoundError(
            f"Weights file {weights!r} not found; pass weights=None, 'imagenet', an existing weights file or an "
            "official checkpoint (directory, model.ckpt-N prefix or .tgz/.tar.gz archive)."
        )
    which = "ImageNet weights are" if weights == "imagenet" else f"{weights!r} weights are"
    available = f"named weights for it: {', '.join(names)}" if names else "it has no named weights"
    raise ValueError(
        f"No {which} published for {spec.name!r} ({available}). Pass one of those, weights=None or a weights file path."
    )


def load_weights(model: keras.Model, weights: Union[str, os.PathLike], spec: ModelSpec) -> None:
    """Loads named weights, a weights file or an official checkpoint into a model built by `build_model`."""
    check_weights(weights, spec)
    path = os.fspath(weights)
    if path == "imagenet" and spec.name in PUBLISHED:
        classifier = _classifier(model)
        with_top = classifier is not None and classifier.units == IMAGENET_CLASSES
        path = imagenet_file(spec.name, include_top=with_top)
        assign(model, read_keras_applications(path, model, spec), path)
    elif published.lookup(spec.name, path) is not None and not os.path.exists(path):
        archive = published.checkpoint_file(spec.name, path)
        values, _ = official.read_checkpoint(archive, model, spec.name)
        assign(model, values, archive)
    elif official.is_checkpoint(path):
        values, _ = official.read_checkpoint(path, model, spec.name)
        assign(model, values, path)
    else:
        with local_copy(path) as local:  # h5py reads local files only
            values = read_keras_applications(local, model, spec) if _is_legacy(local) else read_own(local, model)
        assign(model, values, path)


def assign(model: keras.Model, values: Mapping[str, np.ndarray], origin: str) -> str:
    """Puts `values` (keyed by our variable paths) into `model`; returns and prints the one-line summary.

    Every weight outside the classifier must be present with the model's
    shape. A classifier the source lacks, or has with another class count,
    starts fresh at zero (as BiT's): the official initializer's range,
    sqrt(1/num_classes), is tuned for 1000 classes, and on pretrained features
    it gives a few-class head logits in the tens, a first loss several times
    ln(num_classes), and a first epoch below the majority class. A source's
    classifier the model lacks is left out. Nothing is assigned unless
    everything fits, so a bad file never half-loads.
    """
    classifier = _classifier(model)
    head = {variable.path for variable in classifier.weights} if classifier is not None else set()
    theirs = _head_shape(values)
    fresh = classifier is not None and (
        theirs is None or any(tuple(values[v.path].shape) != tuple(v.shape) for v in classifier.weights if v.path in values)
    )
    assignments = []
    for variable in model.weights:
        if fresh and variable.path in head:
            continue
        if variable.path not in values:
            raise ValueError(
                f"{origin!r} does not fit {model.name}: it lacks {variable.path} ({tuple(variable.shape)} in the model); "
                "it holds another architecture, pick the model name it was saved from."
            )
        value = np.asarray(values[variable.path])
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{origin!r} does not fit {model.name}: {variable.path} is {tuple(value.shape)} in the file, "
                f"{tuple(variable.shape)} in the model; it holds another architecture, pick the model name it was saved from."
            )
        assignments.append((variable, value))
    ours = {variable.path for variable in model.weights}
    extra = [key for key in values if key not in ours and not key.startswith(_CLASSIFIER + "/")]
    if extra:
        raise ValueError(
            f"{origin!r} does not fit {model.name}: it has {extra[0]} {tuple(np.shape(values[extra[0]]))}, which the "
            "model lacks; it holds another architecture, pick the model name it was saved from."
        )
    for variable, value in assignments:
        variable.assign(value)
    if fresh:  # zero logits: the first loss is ln(num_classes) whatever the backbone's feature scale
        for variable in classifier.weights:
            variable.assign(np.zeros(variable.shape, variable.dtype))
    line = f"{model.name}: loaded {len(assignments)} of {len(model.weights)} weights from {os.path.basename(origin)}"
    if fresh:
        line += f"; head ({classifier.kernel.shape[0]} -> {classifier.units}) starts fresh"
        line += "" if theirs is None else f" (the file's head is {theirs[0]} -> {theirs[1]})"
    elif classifier is None and theirs is not None:
        line += f"; the file's head ({theirs[0]} -> {theirs[1]}) is not used"
    print(line)
    return line


def _classifier(model: keras.Model):
    return next((layer for layer in model.layers if layer.name == _CLASSIFIER), None)


def _head_shape(values: Mapping[str, np.ndarray]):
    kernel = values.get(f"{_CLASSIFIER}/kernel")
    return None if kernel is None else tuple(np.shape(kernel))


def imagenet_file(name: str, include_top: bool = True) -> str:
    """Local path of Keras' published file for `name`, downloading it if needed.

    A file already in the Keras cache (``$KERAS_HOME/models`` or
    ``~/.keras/models``) is used as is, without a hash check, so weights can be
    placed there by hand on offline machines; the strict name and shape
    mapping still rejects a wrong file.
    """
    spec = get_spec(name)
    _check_published(spec)
    stem, base_url, md5_top, md5_notop = PUBLISHED[spec.name]
    file_name = stem + (".h5" if include_top else "_notop.h5")
    cached = os.path.join(published.keras_home(), "models", file_name)
    if os.path.isfile(cached):
        return cached
    try:
        return keras.utils.get_file(
            file_name, base_url + file_name, cache_dir=published.keras_home(), cache_subdir="models",
            file_hash=md5_top if include_top else md5_notop,
        )
    except Exception as error:  # get_file raises bare Exception on network failure.
        reason = str(error).rsplit(" -- ", 1)[-1]  # Drop get_file's repeat of the URL.
        raise OSError(
            f"Could not download {base_url + file_name} ({reason}). Offline? Download it elsewhere and "
            f"put it at {cached}, or pass weights=<path to the file>."
        ) from None


def _check_published(spec: ModelSpec) -> None:
    if spec.name not in PUBLISHED:
        raise ValueError(
            f"No ImageNet weights are published for {spec.name!r}; they exist for {', '.join(PUBLISHED)}. "
            "Pass weights=None or a weights file path."
        )
    if spec != get_spec(spec.name):
        raise ValueError(
            f"ImageNet weights fit only the unmodified {spec.name!r}; drop the blocks/width/depth "
            "overrides or pass weights=None."
        )


def _open_hdf5(path: str) -> h5py.File:
    """A weights HDF5 file, or the one inside a ``.keras`` archive."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        return h5py.File(path, "r")
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path!r} is not a readable weights file ({one_line(error)}); pass a file written by "
            "model.save_weights() or model.save(), or a keras.applications .h5 weights file."
        ) from None


def _is_legacy(path: str) -> bool:
    """True for keras.applications' HDF5 layout, False for Keras 3 `save_weights` / `.keras` files."""
    with _open_hdf5(path) as f:
        if "layer_names" in f.attrs or "model_weights" in f:
            return True
        if "layers" in f or "vars" in f:
            return False
    raise ValueError(
        f"{path!r} is HDF5 but neither a Keras 3 .weights.h5 file nor a keras.applications weights file."
    )


def _variables_by_layer(model: keras.Model) -> dict[str, list]:
    """Layer path -> its variables in Keras' saving order (trainable first, then the rest, as `layer.weights`)."""
    layers: dict[str, list] = {}
    for variable in model.weights:
        layers.setdefault(variable.path.rsplit("/", 1)[0], []).append(variable)
    return layers


def read_own(path: str, model: keras.Model) -> dict[str, np.ndarray]:
    """Our variable path -> value, from a Keras 3 ``.weights.h5`` (or ``.keras``) file of one of our models.

    Keras names the file's groups after layer classes (``mb_conv_3``), but
    each ``vars`` group records its layer's own name, so the layer paths
    (``block2a/expand_conv``) are rebuilt from those and matched by name.
    """
    layers = _variables_by_layer(model)
    values: dict[str, np.ndarray] = {}

    def walk(group: h5py.Group, prefix: str) -> None:
        own = group.get("vars")
        if own is not None and group.name != "/":
            if "name" not in own.attrs:
                raise ValueError(f"{path!r} was written by an older Keras 3 without layer names; re-save it with this Keras.")
            prefix = f"{prefix}/{own.attrs['name']}".lstrip("/")
            ours = [variable.path for variable in layers.get(prefix, [])]
            if not ours and prefix == _CLASSIFIER:  # A head the model lacks: named, so `assign` can describe it.
                ours = [f"{_CLASSIFIER}/kernel", f"{_CLASSIFIER}/bias"]
            for i in range(len(own)):
                values[ours[i] if i < len(ours) else f"{prefix}/{i}"] = np.asarray(own[str(i)])
        for key, child in group.items():
            if key != "vars" and isinstance(child, h5py.Group):
                walk(child, prefix)

    with _open_hdf5(path) as f:
        walk(f["layers"] if "layers" in f else f, "")
    return values


def _attr_list(node: h5py.Group, name: str) -> list[str]:
    """A list attribute, which Keras splits into name0, name1, ... when large."""
    if name in node.attrs:
        chunks = [node.attrs[name]]
    else:
        chunks, i = [], 0
        while f"{name}{i}" in node.attrs:
            chunks.append(node.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for chunk in chunks for v in chunk]


def _read_legacy(path: str) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Layer name -> [(weight name, value)] for every layer with weights."""
    with _open_hdf5(path) as f:
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        layers = {}
        for name in _attr_list(root, "layer_names"):
            group = root[name]
            values = [(weight, np.asarray(group[weight])) for weight in _attr_list(group, "weight_names")]
            if values:
                layers[name] = values
        return layers


def _targets(model: keras.Model, spec: ModelSpec) -> dict[str, keras.layers.Layer]:
    """Our weight-holding layers under keras.applications' layer names."""
    dwconv = "dwconv2" if spec.family.startswith("efficientnetv2") else "dwconv"
    renames = {"dwconv": dwconv, "reduce": "se_reduce", "expand": "se_expand"}
    targets = {}
    for layer in model.layers:
        if isinstance(layer, (MBConv, FusedMBConv)):
            for sub in layer.weight_layers():
                targets[f"{layer.name}_{renames.get(sub.name, sub.name)}"] = sub
        elif layer.weights:
            targets[layer.name] = layer
    return targets


def read_keras_applications(path: str, model: keras.Model, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Our variable path -> value, from a keras.applications (legacy HDF5) weights file.

    A weight whose layer or name has no counterpart keeps the file's own
    name (``block1b_dwconv/depthwise_kernel``), so `assign` reports it.
    """
    try:
        stored = _read_legacy(path)
    except (OSError, KeyError) as error:
        raise ValueError(f"{path!r} is not a readable keras.applications weights file ({error}).") from None
    targets = _targets(model, spec)
    values = {}
    for layer_name, weights in stored.items():
        if layer_name.startswith(_SKIPPED_PREFIXES):
            continue
        layer = targets.get(layer_name)
        variables = {} if layer is None else {variable.name: variable for variable in layer.weights}
        for weight_name, value in weights:
            short = weight_name.split("/")[-1].split(":")[0]
            short = _WEIGHT_ALIASES.get(short, short)
            # Unmatched weights keep the file's names (a classifier's are ours too), so `assign` can report them.
            values[variables[short].path if short in variables else f"{layer_name}/{short}"] = value
    return values
