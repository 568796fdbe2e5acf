"""The training configuration: a typed tree of sections, built from layers.

A run's config is the defaults below (the papers' ImageNet recipe), then a
model layer, a dataset layer and the command line, each a flat dict of dotted
names (`"optimizer.lr_per_256": 0.016`). Every value is checked against the
field's type when it is applied, so a typo or a wrong type fails before any
work starts, with the close matches named. `resolve` then fills every value
the model decides (sizes, dropout) from its `ModelSpec` and checks every
relation between fields, once; the rest of the code reads the resolved
values and never looks at the spec again. The resolved config is saved with
the run as JSON.

We use our own dataclasses rather than ml_collections: the schema, its
types and its defaults are one readable file, errors name the close matches
in one line, and layering is `dict.update` order.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from typing import Any, Iterable, Mapping, Optional, Union

from efficientnet_tf.data.pipeline import AUGMENTATIONS
from efficientnet_tf.data.synthetic import VARIANTS as SYNTHETIC_VARIANTS
from efficientnet_tf.registry import get_spec


@dataclasses.dataclass
class ModelConfig:
    name: str = "efficientnetv2-s"
    width: Optional[float] = None  # None: the model's; other values scale it like get_model(width=...)
    depth: Optional[float] = None
    dropout: Optional[float] = None  # head dropout; None: the model's own (the end value when scheduled)
    survival_prob: float = 0.8  # stochastic depth
    # None (from scratch), a weights name ("imagenet", "noisy-student", ...), a weights or .keras file, or an
    # official checkpoint; a head of another size starts fresh
    init_weights: Optional[str] = None


@dataclasses.dataclass
class DataConfig:
    dataset: str = "synthetic"  # a preset, a TFDS name, an image folder or tfrecord (shards in data_dir)
    data_dir: str = ""  # TFDS data_dir, or the folder of train-*/validation-* shards for tfrecord
    eval_dir: str = ""  # held-out image folder (else 10% of the training folder)
    batch_size: int = 4096  # global
    image_size: int = 0  # last training size; 0: the model's
    eval_size: int = 0  # 0: the model's
    augmentation: Optional[str] = "randaugment"  # randaugment, autoaugment or none
    randaug_layers: int = 2
    randaug_magnitude: float = 15.0  # the end value when scheduled
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    shuffle_buffer: int = 10_000
    synthetic_variant: str = "shapes"  # "fine": classes told apart only at full resolution (data/synthetic.py)
    synthetic_classes: int = 10
    synthetic_train: int = 6000
    synthetic_eval: int = 1000
    service: str = ""  # grpc://HOST:PORT of a tf.data service dispatcher that runs the train pipeline; "": local


@dataclasses.dataclass
class ProgressiveConfig:
    """Progressive learning; the end values are the data and model fields."""

    stages: int = 4  # 1: no progressive learning
    style: str = "paper"  # paper (Algorithm 1) or automl (released code)
    min_image_size: int = 128
    min_randaug_magnitude: float = 5.0
    min_mixup_alpha: float = 0.0
    min_cutmix_alpha: float = 0.0
    min_dropout: Optional[float] = 0.1  # None: dropout not scheduled (never with style automl)


@dataclasses.dataclass
class OptimizerConfig:
    name: str = "rmsprop"  # rmsprop, sgd or adam
    lr_per_256: float = 0.016  # scaled by global batch / 256
    schedule: str = "exponential"  # exponential, cosine or constant
    warmup_epochs: float = 5.0
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    momentum: float = 0.9
    rho: float = 0.9
    epsilon: float = 1e-3
    weight_decay: float = 1e-5  # L2 on conv and dense kernels


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 350
    label_smoothing: float = 0.1
    ema_decay: float = 0.9999  # 0: no EMA
    mixed_precision: str = "auto"  # auto, float32, mixed_bfloat16 or mixed_float16
    jit_compile: str = "auto"  # XLA for the train step: auto (on for GPUs and TPUs, off on CPUs), true or false
    sync_batchnorm: bool = False  # BatchNorm statistics over the global batch (with several replicas)
    seed: int = 0
    deterministic: bool = False  # TF op determinism too (see training/reproducibility.py)
    keep_checkpoints: int = 2  # epoch-end checkpoints; mid-epoch ones are extra (see checkpoint_every_steps)
    checkpoint_every_steps: int = 0  # also a mid-epoch checkpoint every N steps (bounds what a SIGKILL loses); 0: epoch ends only


@dataclasses.dataclass
class Config:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    progressive: ProgressiveConfig = dataclasses.field(default_factory=ProgressiveConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        return {f"{s}.{k}": v for s, fields in self.to_dict().items() for k, v in fields.items()}


def field_types() -> dict[str, Any]:
    """Dotted name -> the field's type."""
    out = {}
    for section in dataclasses.fields(Config):
        hints = typing.get_type_hints(section.default_factory)
        for f in dataclasses.fields(section.default_factory):
            out[f"{section.name}.{f.name}"] = hints[f.name]
    return out


def _unknown_key(key: str, known: Iterable[str]) -> ValueError:
    known = list(known)
    leaf = key.split(".")[-1]
    close = [k for k in known if k.split(".")[-1].startswith(leaf)]  # `lr` finds `optimizer.lr_per_256`
    close += [k for k in difflib.get_close_matches(key, known, n=3, cutoff=0.5) if k not in close]
    close = close[:3]
    hint = f" Did you mean {', '.join(close)}?" if close else " The fields are listed in efficientnet_tf/training/config.py."
    return ValueError(f"Unknown config key {key!r}.{hint}")


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """`value` (a Python value or a command-line string) as the field's type."""
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)
    base = next(a for a in typing.get_args(kind) if a is not type(None)) if optional else kind
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))):
        return None
    if isinstance(value, str) and base is not str:
        try:
            value = json.loads(value.lower() if base is bool else value)
        except json.JSONDecodeError:
            raise ValueError(f"Config key {key!r} takes {_TYPE_NAMES[base]}, got {value!r}.") from None
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, base) or (isinstance(value, bool) and base is not bool):
        raise ValueError(f"Config key {key!r} takes {_TYPE_NAMES[base]}, got {value!r}.")
    if base is float and not math.isfinite(value):
        raise ValueError(f"Config key {key!r} got {value}; give a finite number.")
    return value


def build_config(*layers: Mapping[str, Any]) -> Config:
    """The defaults with each layer of dotted overrides applied in order."""
    config = Config()
    types_ = field_types()
    for layer in layers:
        for key, value in layer.items():
            if key not in types_:
                raise _unknown_key(key, types_)
            section, name = key.split(".")
            setattr(getattr(config, section), name, _coerce(key, value, types_[key]))
    return config


def parse_overrides(args: Iterable[str]) -> dict[str, str]:
    """`["--optimizer.lr_per_256=0.02", "train.epochs=3"]` -> {dotted name: text}."""
    out = {}
    for arg in args:
        text = arg[2:] if arg.startswith("--") else arg
        key, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"Config override {arg!r} needs a value: --{key}=VALUE.")
        out[key] = value
    return out


def resolve(*layers: Union[Config, Mapping[str, Any]]) -> Config:
    """`build_config(*layers)` with the model's own values filled in and every relation checked.

    A layer may be a whole `Config` (resolving a resolved config changes
    nothing). Sizes and dropout left to the model (0 or None) take the
    `ModelSpec`'s values here, so the saved config.json states what ran.
    """
    config = build_config(*(layer.flat() if isinstance(layer, Config) else layer for layer in layers))
    spec, data = get_spec(config.model.name), config.data
    data.image_size = data.image_size or spec.train_size
    data.eval_size = data.eval_size or spec.eval_size
    if config.model.dropout is None:
        config.model.dropout = spec.dropout
    _check_relations(config)
    return config


def _check_relations(config: Config) -> None:
    """Rules between fields, named by their dotted keys, so a bad combination fails before any work starts."""
    data, progressive, train, optimizer = config.data, config.progressive, config.train, config.optimizer
    epochs, stages, warmup = train.epochs, progressive.stages, optimizer.warmup_epochs
    augmentations = ", ".join(name or "none" for name in AUGMENTATIONS)
    rules = [
        (epochs >= 1, f"train.epochs must be at least 1, got {epochs}"),
        (1 <= stages <= epochs, f"progressive.stages must be in [1, train.epochs={epochs}], got {stages}; "
                                f"pass more --epochs or --progressive.stages={min(max(epochs, 1), 4)}"),
        (0 <= warmup <= epochs, f"optimizer.warmup_epochs must be in [0, train.epochs={epochs}], got {warmup}; "
                                "pass more --epochs or a smaller --optimizer.warmup_epochs"),
        (data.batch_size >= 1 and data.shuffle_buffer >= 1, "data.batch_size and data.shuffle_buffer must be at least 1"),
        (0 <= train.ema_decay < 1, f"train.ema_decay must be in [0, 1) (0: no EMA), got {train.ema_decay}"),
        (train.keep_checkpoints >= 1, f"train.keep_checkpoints must be at least 1, got {train.keep_checkpoints}"),
        (train.checkpoint_every_steps >= 0,
         f"train.checkpoint_every_steps must be at least 0 (0: only at epoch ends), got {train.checkpoint_every_steps}"),
        (data.augmentation in AUGMENTATIONS, f"data.augmentation must be one of {augmentations}, got {data.augmentation!r}"),
        (not (data.eval_dir and data.dataset == "synthetic"), "data.eval_dir needs an image folder as data.dataset"),
        (not (data.service and train.checkpoint_every_steps),
         "train.checkpoint_every_steps needs the local pipeline (a pass through data.service cannot start mid-way); "
         "drop one of --train.checkpoint_every_steps and --data.service"),
        (not (data.service and train.deterministic),
         "train.deterministic cannot hold through data.service (the workers' timing orders the batches and their "
         "random draws); train without --data.service for a deterministic run, or drop --train.deterministic"),
        (data.synthetic_variant in SYNTHETIC_VARIANTS,
         f"data.synthetic_variant must be one of {', '.join(SYNTHETIC_VARIANTS)}, got {data.synthetic_variant!r}"),
    ]  # fmt: skip
    if stages > 1:
        ends = {"image_size": (progressive.min_image_size, data.image_size),
                "randaug_magnitude": (progressive.min_randaug_magnitude, data.randaug_magnitude),
                "mixup_alpha": (progressive.min_mixup_alpha, data.mixup_alpha),
                "cutmix_alpha": (progressive.min_cutmix_alpha, data.cutmix_alpha)}  # fmt: skip
        if schedules_dropout(config):
            ends["dropout"] = (progressive.min_dropout, config.model.dropout)
        rules += [(low <= high, f"progressive.min_{name} {low} is above the end value {high}; lower --progressive.min_{name}")
                  for name, (low, high) in ends.items()]  # fmt: skip
    for ok, message in rules:
        if not ok:
            raise ValueError(message + ".")
    if data.service:
        # Imported here: `python -m efficientnet_tf.data.service` imports the package (and this module) first.
        from efficientnet_tf.data.service import parse_address

        parse_address(data.service)


def schedules_dropout(config: Config) -> bool:
    """Whether progressive learning grows the head dropout (the released code never does)."""
    return config.progressive.min_dropout is not None and config.progressive.style == "paper"


def config_from_json(text: str) -> Config:
    """A saved config, resolved; fields added since it was saved take their defaults."""
    data = json.loads(text)
    return resolve({f"{s}.{k}": v for s, fields in data.items() for k, v in fields.items()})


# Where the data comes from and how often to save: a preempted run restarted with another dispatcher or
# checkpoint interval is still the same run.
_NOT_THE_RUN = ("data.service", "train.checkpoint_every_steps")


def differences(saved: Config, current: Config) -> list[str]:
    """`key: saved -> current` for every field that differs and makes another run."""
    old, new = saved.flat(), current.flat()
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in new if old.get(k) != new[k] and k not in _NOT_THE_RUN]
