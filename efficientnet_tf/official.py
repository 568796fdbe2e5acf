"""Official TensorFlow checkpoints (tensorflow/tpu V1 and Lite, google/automl V2), read by name.

The official models are TF1-style name-based checkpoints: every variable sits
under ``<model name>/stem``, ``/blocks_<i>`` (blocks counted over the whole
network) or ``/head``. Inside a block, layers are named by creation order:
convolutions ``conv2d``, ``conv2d_1``; BatchNorms ``tpu_batch_normalization``,
``_1``, ``_2`` (both repositories give that name to their off-TPU BatchNorm
too; ``batch_normalization`` is accepted as well); the depthwise convolution
``depthwise_conv2d``; squeeze-excite ``se/conv2d`` (reduce) and ``se/conv2d_1``
(expand). The classifier is ``head/dense``; automl's V2 code built in a TF1
graph (its ``main.py``) with today's Keras names it ``head_1/dense`` (the
name scope ``head`` is already taken by the head layer), so both are accepted.
Our blocks list their weight layers in that same creation order, so each of
our variables gets exactly one official name, which is looked up; positions
are never used. Training also saved ``<name>/ExponentialMovingAverage`` copies
of every model variable (BatchNorm statistics included), which the official
evaluation loads, so those are preferred. Layouts agree (HWIO kernels,
``(k, k, C, 1)`` depthwise kernels, ``(in, out)`` dense kernels): values are
copied unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tarfile
import tempfile
from typing import Iterator

import keras
import numpy as np

from efficientnet_tf.errors import import_tensorflow, one_line
from efficientnet_tf.files import filesystem, is_file, local_copy
from efficientnet_tf.layers import BatchNorm, FusedMBConv, MBConv

EMA_SUFFIX = "/ExponentialMovingAverage"
_ARCHIVES = (".tgz", ".tar.gz")
# Optimizer slots and bookkeeping saved next to the model's variables; not part of the network. The official
# optimizers: RMSProp (RMSProp, RMSProp_1), momentum, Adam (two slots and beta1_power/beta2_power), tpu's LARS.
_NOT_MODEL = re.compile(
    r"(/(RMSProp|RMSProp_1|Momentum|Adam|Adam_1|LARSOptimizer|ExponentialMovingAverage))$"
    r"|^(global_step|beta1_power|beta2_power)$"
)
_BN_NAMES = ("tpu_batch_normalization", "batch_normalization")
_FIXED = {"stem_conv": ("stem/conv2d",), "top_conv": ("head/conv2d",), "predictions": ("head/dense", "head_1/dense")}
_BN_SCOPES = {"stem_bn": "stem", "top_bn": "head"}


def is_checkpoint(path: str) -> bool:
    """True for a checkpoint directory, a ``model.ckpt-N`` prefix or a ``.tgz``/``.tar.gz`` archive."""
    gfile = filesystem(path)
    return (
        gfile.exists(os.path.join(path, "checkpoint"))
        or (gfile.isdir(path) and bool(_index_files(path)))
        or gfile.exists(path + ".index")
        or (path.endswith(_ARCHIVES) and gfile.exists(path) and not gfile.isdir(path))
    )


def _index_files(directory: str) -> list[str]:
    return sorted(name for name in filesystem(directory).listdir(directory) if name.endswith(".index"))


@contextlib.contextmanager
def checkpoint_prefix(path: str) -> Iterator[str]:
    """The checkpoint prefix inside `path`; an archive is unpacked into a temporary directory for the duration."""
    if path.endswith(_ARCHIVES) and is_file(path):
        directory = tempfile.mkdtemp(prefix="efficientnet_tf-")
        try:
            try:
                with local_copy(path) as local, tarfile.open(local, "r:*") as archive:
                    archive.extractall(directory, filter="data")
            except (tarfile.TarError, EOFError, OSError, ValueError) as error:
                raise ValueError(
                    f"{path!r} is a truncated or damaged archive ({one_line(error) or type(error).__name__}); "
                    "delete it and download it again."
                ) from None
            yield _find_prefix(directory, path)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    elif filesystem(path).isdir(path):
        yield _find_prefix(path, path)
    else:
        yield path


def _find_prefix(directory: str, origin: str) -> str:
    """The newest checkpoint under `directory` (the ``checkpoint`` file's, else the only ``.index``)."""
    tf = _tensorflow()
    for root, _, files in sorted(tf.io.gfile.walk(directory)):
        if "checkpoint" in files:
            latest = tf.train.latest_checkpoint(root)
            if latest:
                return latest
        indexes = [name for name in files if name.endswith(".index")]
        if len(indexes) == 1:
            return os.path.join(root, indexes[0][: -len(".index")])
        if indexes:
            raise ValueError(
                f"{origin!r} holds several checkpoints ({', '.join(sorted(indexes)[:3])}); pass one prefix such as "
                f"{os.path.join(root, sorted(indexes)[-1][: -len('.index')])!r}."
            )
    raise ValueError(f"{origin!r} holds no TensorFlow checkpoint (no .index file); pass a checkpoint directory, prefix or archive.")


def official_names(model: keras.Model) -> dict[str, tuple[str, ...]]:
    """Our variable path -> its official name(s) without the model scope (alternatives for BatchNorm naming)."""
    names: dict[str, tuple[str, ...]] = {}

    def add(layer: keras.layers.Layer, scopes: tuple[str, ...]) -> None:
        for variable in layer.weights:
            short = "depthwise_kernel" if isinstance(layer, keras.layers.DepthwiseConv2D) else variable.name
            names[variable.path] = tuple(f"{scope}/{short}" for scope in scopes)

    blocks = [layer for layer in model.layers if isinstance(layer, (MBConv, FusedMBConv))]
    for layer in model.layers:
        if layer.name in _FIXED:
            add(layer, _FIXED[layer.name])
        elif layer.name in _BN_SCOPES:
            add(layer, tuple(f"{_BN_SCOPES[layer.name]}/{bn}" for bn in _BN_NAMES))
    for index, block in enumerate(blocks):
        scope, convs, norms = f"blocks_{index}", 0, 0
        se = (block.se.reduce, block.se.expand) if block.se is not None else ()
        for sub in block.weight_layers():
            if sub in se:
                add(sub, (f"{scope}/se/conv2d{'_1' if sub is se[1] else ''}",))
            elif isinstance(sub, keras.layers.DepthwiseConv2D):
                add(sub, (f"{scope}/depthwise_conv2d",))
            elif isinstance(sub, BatchNorm):
                add(sub, tuple(f"{scope}/{bn}{f'_{norms}' if norms else ''}" for bn in _BN_NAMES))
                norms += 1
            else:
                add(sub, (f"{scope}/conv2d{f'_{convs}' if convs else ''}",))
                convs += 1
    return names


def model_scope(names: list[str], origin: str) -> str:
    """The official model name a checkpoint's variables live under (``efficientnet-b0``)."""
    scopes = sorted({name[: -len("/stem/conv2d/kernel")] for name in names if name.endswith("/stem/conv2d/kernel")})
    if len(scopes) != 1:
        raise ValueError(
            f"{origin!r} is not an official EfficientNet checkpoint (found {len(scopes)} '<model>/stem/conv2d/kernel' "
            "variables, expected 1); pass a tensorflow/tpu or google/automl checkpoint."
        )
    return scopes[0]


def read_checkpoint(
    path: str, model: keras.Model, model_name: str, ema: bool = True
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Our variable path -> value from an official checkpoint, every official variable used exactly once.

    `model_name` is the registry name the checkpoint must hold. With `ema`
    the ``ExponentialMovingAverage`` value of each variable is taken where
    the checkpoint has one. The classifier is returned under our name even
    when the model has none, so the caller can decide about the head. The
    second result lists ``official name -> our path`` for every value.
    """
    tf = _tensorflow()
    with checkpoint_prefix(path) as prefix:
        try:
            reader = tf.train.load_checkpoint(prefix)
            shapes = reader.get_variable_to_shape_map()
        except (tf.errors.OpError, ValueError) as error:
            raise ValueError(
                f"{path!r} is not a readable TensorFlow checkpoint ({_first_line(error)}); download it again."
            ) from None
        scope = model_scope(list(shapes), path)
        if scope != model_name:
            raise ValueError(
                f"{path!r} holds {scope}, not {model_name}; build {scope!r} for it (get_model({scope!r}, ...) "
                f"or --model={scope})."
            )
        wanted = official_names(model)
        if not any(name.startswith("predictions/") for name in wanted):  # A backbone still reports the file's head.
            wanted.update({f"predictions/{leaf}": tuple(f"{head}/{leaf}" for head in _FIXED["predictions"])
                           for leaf in ("kernel", "bias")})
        model_shapes = {variable.path: tuple(variable.shape) for variable in model.weights}
        values, used, mapping = {}, set(), []
        for ours, candidates in wanted.items():
            found = next((f"{scope}/{name}" for name in candidates if f"{scope}/{name}" in shapes), None)
            if found is None:
                heads = (f"{scope}/{head}/kernel" for head in _FIXED["predictions"])
                if ours.startswith("predictions/") and not any(head in shapes for head in heads):
                    continue  # A checkpoint without a classifier: the head starts fresh.
                raise ValueError(
                    f"{path!r} lacks {scope}/{candidates[0]} (our {ours}); it is not a complete {model_name} checkpoint."
                )
            theirs, expected = tuple(shapes[found]), model_shapes.get(ours)
            if expected is not None and theirs != expected and not ours.startswith("predictions/"):
                raise ValueError(
                    f"{path!r} does not fit {model.name}: {found} is {theirs} in the checkpoint, our {ours} is "
                    f"{expected}; it holds another architecture."
                )
            source = found + EMA_SUFFIX if ema and found + EMA_SUFFIX in shapes else found
            try:
                values[ours] = np.asarray(reader.get_tensor(source))
            except tf.errors.OpError as error:
                raise ValueError(f"{path!r}: cannot read {source} ({_first_line(error)}); download it again.") from None
            used.add(found)
            mapping.append(f"{source} -> {ours} {theirs}")
        extra = sorted(name for name in shapes if name not in used and not _NOT_MODEL.search(name))
        if extra:
            raise ValueError(
                f"{path!r} has {extra[0]} {tuple(shapes[extra[0]])}, which {model.name} lacks; it is not a "
                f"{model_name} checkpoint of the official layout."
            )
    return values, mapping


def _tensorflow():
    return import_tensorflow("Reading an official checkpoint (TensorFlow's checkpoint reader)")


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "message", "") or error)
    return " ".join(text.strip().splitlines()[0].split()) if text.strip() else type(error).__name__
