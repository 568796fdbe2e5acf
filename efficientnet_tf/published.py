"""Named weights from the official checkpoints: which exist, where they live, what the model needs for them.

The URLs and top-1 accuracies are those of the official READMEs
(tensorflow/tpu ``models/official/efficientnet/README.md`` and
``lite/README.md``, google/automl ``efficientnetv2/README.md``). An archive is
downloaded once into the Keras cache under a name that tells the variants apart
(``efficientnet-b0_advprop.tar.gz``), checked to be a complete archive before
it is moved into place, and converted by name on every load
(`efficientnet_tf.official`). Keras' own ``"imagenet"`` files, where Keras has
them, stay with `efficientnet_tf.weights`.
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
from typing import Optional

import keras

from efficientnet_tf.errors import one_line

_TPU = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/"
_V2 = _TPU + "v2/"
IMAGENET21K_CLASSES = 21843
# AdvProp trained on Inception-style inputs: x * 2 / 255 - 1.
ADVPROP_NORMALIZATION = ((127.5,) * 3, (127.5,) * 3)
# automl's V2 recipes (README section 3): ``--dataset_cfg=imagenet21k`` turns augmentation off, so every size, B0-B3
# included, trained on (x - 128) / 128; ``--dataset_cfg=imagenetFt`` finetunes with its ``ft`` preprocessing,
# (x / 255 - 0.5) / 0.5. B0-B3's own ImageNet-1k recipe (legacy V1 preprocessing, ImageNet mean/std) is not theirs.
V2_21K_NORMALIZATION = ((128.0,) * 3, (128.0,) * 3)
V2_FT1K_NORMALIZATION = ((127.5,) * 3, (127.5,) * 3)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One published checkpoint: its URL, the head it was trained with, its published top-1 (None if unpublished)."""

    url: str
    top1: Optional[float]
    num_classes: int = 1000
    normalization: Optional[tuple] = None  # (mean, std) on [0, 255] RGB when not the family's default


def _v1(directory: str, file: str, top1: float, **kw) -> Checkpoint:
    return Checkpoint(f"{_TPU}{directory}/{file}.tar.gz", top1, **kw)


def _table() -> dict[str, dict[str, Checkpoint]]:
    """Model name -> weights name -> checkpoint, for every checkpoint the official READMEs publish.

    V2's ImageNet-1k checkpoints are not listed: ``"imagenet"`` loads Keras'
    conversions of them (see `efficientnet_tf.weights`).
    """
    baseline = (76.7, 78.7, 79.8, 81.1, 82.5, 83.1)
    autoaugment = (77.1, 79.1, 80.1, 81.6, 82.9, 83.6, 84.0, 84.3)
    randaugment = {5: 83.7, 7: 84.7}
    advprop = (77.6, 79.6, 80.5, 81.9, 83.3, 84.3, 84.8, 85.2, 85.5)
    noisy_student = (78.8, 81.5, 82.4, 84.1, 85.3, 86.1, 86.4, 86.9)
    table: dict[str, dict[str, Checkpoint]] = {}
    for i in range(9):
        name = f"efficientnet-b{i}"
        row = table.setdefault(name, {})
        if i < len(baseline):
            row["baseline"] = _v1("ckpts", name, baseline[i])
        if i < len(autoaugment):
            row["autoaugment"] = _v1("ckptsaug", name, autoaugment[i])
        if i in randaugment:
            row["randaugment"] = _v1("randaug", f"{name}-randaug", randaugment[i])
        row["advprop"] = _v1("advprop", name, advprop[i], normalization=ADVPROP_NORMALIZATION)
        if i < len(noisy_student):
            row["noisy-student"] = _v1("noisystudent", f"noisy_student_{name}", noisy_student[i])
    table["efficientnet-l2"] = {
        "noisy-student": _v1("noisystudent", "noisy_student_efficientnet-l2", 88.4),
        "noisy-student-475": _v1("noisystudent", "noisy_student_efficientnet-l2_475", 88.2),  # same network, 475 px
    }
    for i, top1 in enumerate((75.1, 76.7, 77.6, 79.8, 81.5)):
        table[f"efficientnet-lite{i}"] = {"imagenet": _v1("lite", f"efficientnet-lite{i}", top1)}
    finetuned = {"s": 84.9, "m": 86.2, "l": 86.9, "xl": 87.2}
    for size in ("b0", "b1", "b2", "b3", "s", "m", "l", "xl"):
        name = f"efficientnetv2-{size}"
        table[name] = {
            "imagenet21k": Checkpoint(f"{_V2}{name}-21k.tgz", None, num_classes=IMAGENET21K_CLASSES,
                                      normalization=V2_21K_NORMALIZATION),
            "imagenet21k-ft1k": Checkpoint(f"{_V2}{name}-21k-ft1k.tgz", finetuned.get(size),
                                           normalization=V2_FT1K_NORMALIZATION),
        }
    return table


CHECKPOINTS = _table()


def names_for(model_name: str) -> list[str]:
    """The official weights names published for `model_name`."""
    return list(CHECKPOINTS.get(model_name, {}))


def lookup(model_name: str, weights: str) -> Optional[Checkpoint]:
    return CHECKPOINTS.get(model_name, {}).get(weights)


def keras_home() -> str:
    """Keras' cache folder: ``$KERAS_HOME``, else ``~/.keras`` (as keras.utils.get_file uses it)."""
    return os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")


def cache_path(model_name: str, weights: str) -> str:
    """Where the archive lives in the Keras cache (``$KERAS_HOME/models`` or ``~/.keras/models``)."""
    url = CHECKPOINTS[model_name][weights].url
    extension = ".tgz" if url.endswith(".tgz") else ".tar.gz"
    return os.path.join(keras_home(), "models", f"{model_name}_{weights}{extension}")


def checkpoint_file(model_name: str, weights: str) -> str:
    """Local path of the published archive, downloaded with a progress bar on first use.

    A file already at `cache_path` is used as is, so archives can be placed
    there by hand on offline machines; the strict by-name conversion still
    rejects a wrong or damaged one. A download goes to a ``.part`` file and is
    moved into place only once it reads as a complete archive.
    """
    path = cache_path(model_name, weights)
    if os.path.isfile(path):
        return path
    url = CHECKPOINTS[model_name][weights].url
    directory, name = os.path.split(path)
    part = os.path.join(directory, name + ".part")
    os.makedirs(directory, exist_ok=True)  # get_file falls back to /tmp when the cache folder is missing
    try:
        keras.utils.get_file(name + ".part", url, cache_dir=os.path.dirname(directory), cache_subdir="models",
                             force_download=True)
        with tarfile.open(part, "r:*") as archive:
            for _ in archive:  # reads to the end: a short download fails its gzip check here
                pass
    except Exception as error:  # get_file raises bare Exception on network failure.
        if os.path.exists(part):
            os.remove(part)
        reason = one_line(str(error).rsplit(" -- ", 1)[-1])
        raise OSError(
            f"Could not download {url} ({reason}). Offline? Download it elsewhere and put it at {path}, "
            f"or pass weights=<path to the archive or checkpoint>."
        ) from None
    os.replace(part, path)
    return path
