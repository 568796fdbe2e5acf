"""Pretrained weights: Keras' published ImageNet files, keras.applications files, our own files.

Keras publishes ImageNet weights for 15 of our names as legacy HDF5 files of
its `keras.applications` models. Those models are built from many small
layers, ours from whole blocks, so the files are mapped by layer name (block
sub-layers become keras' ``block2a_expand_conv`` etc.), never by position, and
every one of our weights must be matched by one of the same name and shape.
Keras' V1 ``normalization`` layer is skipped: ours is a weightless
`Rescaling` computing the same official normalization.
"""

from __future__ import annotations

import logging
import os
from typing import Union

import h5py
import keras
import numpy as np

from efficientnet_tf.layers import FusedMBConv, MBConv
from efficientnet_tf.registry import ModelSpec, get_spec

log = logging.getLogger(__name__)

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
    if isinstance(weights, str) and weights == "imagenet":
        _check_published(spec)
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None, 'imagenet' or a file path, got {weights!r}.")
    path = os.fspath(weights)
    if isinstance(path, str) and path.strip().lower() == "imagenet":
        raise ValueError(f"weights={weights!r} is not a file; did you mean weights='imagenet' (lowercase)?")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file {path!r} not found; pass weights=None, 'imagenet' or an existing file.")


def load_weights(model: keras.Model, weights: Union[str, os.PathLike], spec: ModelSpec) -> None:
    """Loads ``"imagenet"`` or a weights file into a model built by `build_model`."""
    check_weights(weights, spec)
    if isinstance(weights, str) and weights == "imagenet":
        classifier = next((layer for layer in model.layers if layer.name == _CLASSIFIER), None)
        with_top = classifier is not None and classifier.units == IMAGENET_CLASSES
        _load_legacy(model, imagenet_file(spec.name, include_top=with_top), spec)
        return
    path = os.fspath(weights)
    if _is_legacy(path):
        _load_legacy(model, path, spec)
    else:
        _load_own(model, path)


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
    cache_dir = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    cached = os.path.join(cache_dir, "models", file_name)
    if os.path.isfile(cached):
        return cached
    try:
        return keras.utils.get_file(
            file_name, base_url + file_name, cache_dir=cache_dir, cache_subdir="models",
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


def _is_legacy(path: str) -> bool:
    """True for keras.applications' HDF5 layout, False for Keras 3 `save_weights` files."""
    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                return True
            if "layers" in f or "vars" in f:
                return False
    except OSError as error:
        raise ValueError(
            f"{path!r} is not a readable HDF5 weights file ({error}); pass a file written by "
            "model.save_weights() or a keras.applications .h5 weights file."
        ) from None
    raise ValueError(
        f"{path!r} is HDF5 but neither a Keras 3 .weights.h5 file nor a keras.applications weights file."
    )


def _load_own(model: keras.Model, path: str) -> None:
    if not path.endswith(".weights.h5"):
        raise ValueError(f"{path!r} is a Keras 3 weights file; Keras needs its name to end in .weights.h5, rename it.")
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as error:
        # Keras lists every failed object; its example error alone says what differs.
        detail = str(error).split("List of objects")[0].split("Example error message for object")[-1]
        detail = detail.split("Target variable:")[0]
        detail = " ".join(detail.split())[:300]
        raise ValueError(f"{path!r} does not fit {model.name} (saved from another model?): {detail}") from None


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
    with h5py.File(path, "r") as f:
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


def _load_legacy(model: keras.Model, path: str, spec: ModelSpec) -> None:
    """Maps a keras.applications file onto `model`; checks everything before assigning anything."""
    try:
        stored = _read_legacy(path)
    except (OSError, KeyError) as error:
        raise ValueError(f"{path!r} is not a readable keras.applications weights file ({error}).") from None
    targets = _targets(model, spec)
    classifier = targets.get(_CLASSIFIER)
    skipped = 0
    if classifier is not None:
        theirs = stored[_CLASSIFIER][-1][1].shape[0] if _CLASSIFIER in stored else None
        if theirs != classifier.units:
            del targets[_CLASSIFIER]
            skipped = len(classifier.weights)
            log.info(
                "%s: loaded backbone weights only; the %d-class classifier stays initialized (file has %s).",
                model.name, classifier.units, f"{theirs} classes" if theirs else "no classifier",
            )
    if _CLASSIFIER not in targets:
        stored.pop(_CLASSIFIER, None)

    assignments = []
    for name, layer in targets.items():
        if name not in stored:
            raise ValueError(
                f"{path!r} has no weights for layer {name} of {model.name}; it was saved from another model."
            )
        values = stored.pop(name)
        if len(values) != len(layer.weights):
            raise ValueError(
                f"Layer {name} of {model.name} has {len(layer.weights)} weights, {path!r} has {len(values)}."
            )
        for variable, (weight_name, value) in zip(layer.weights, values):
            short = weight_name.split("/")[-1].split(":")[0]
            if _WEIGHT_ALIASES.get(short, short) != variable.name:
                raise ValueError(f"Layer {name}: expected weight {variable.name!r}, {path!r} has {weight_name!r}.")
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Shape mismatch for {name} {variable.name} of {model.name}: model {tuple(variable.shape)}, "
                    f"{path!r} {tuple(value.shape)}; the file is for another model or input channel count."
                )
            assignments.append((variable, value))
    if len(assignments) != len(model.weights) - skipped:
        raise ValueError(f"{model.name} has weights outside the keras.applications layout; cannot map {path!r}.")
    leftover = sorted(name for name in stored if not name.startswith(_SKIPPED_PREFIXES))
    if leftover:
        raise ValueError(
            f"{path!r} has weights for layers {model.name} lacks ({', '.join(leftover[:3])}"
            f"{', ...' if len(leftover) > 3 else ''}); it was saved from another model."
        )
    for variable, value in assignments:
        variable.assign(value)

