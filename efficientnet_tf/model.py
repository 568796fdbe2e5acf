"""Assembles a Keras model from a `ModelSpec`: stem, blocks, head.

The same builder serves V1, Lite and V2; everything that differs between
them is data in the spec. Blocks are whole layers (not dozens of small
ones), which keeps the functional graph short enough that even
EfficientNetV2-XL and L2 build, save and load without deep recursion.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Union

import keras

from efficientnet_tf import blocks as block_grammar
from efficientnet_tf.layers import (
    CONV_INITIALIZER,
    DENSE_INITIALIZER,
    BatchNorm,
    FusedMBConv,
    HeadDropout,
    MBConv,
)
from efficientnet_tf.registry import (
    HEAD_FILTERS,
    NORMALIZATION,
    ModelSpec,
    get_spec,
    round_filters,
    round_repeats,
)
from efficientnet_tf.validation import check_choice, check_float, check_int

# Width or depth beyond this is a typo, not a model (L2 is 4.3 wide, 5.3 deep).
_MAX_SCALE = 16.0
_BUILD_OPTIONS = {
    "include_top", "input_shape", "pooling", "num_classes", "classifier_activation", "dropout_rate",
    "survival_prob", "include_preprocessing", "bn_momentum", "name",
}
_POOLING = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}


def block_name(stage: int, index: int) -> str:
    """keras.applications' block names (block1a, block2b, ...), extended past 'z'."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(97 + rem) + letters
    return f"block{stage + 1}{letters}"


def scaled_stages(spec: ModelSpec) -> list[block_grammar.BlockArgs]:
    """The spec's stages with filters and repeats scaled by width and depth."""
    stages = block_grammar.decode_all(spec.blocks)
    last = len(stages) - 1
    scaled = []
    for i, args in enumerate(stages):
        keep_repeats = spec.fixed_stem_head and i in (0, last)
        scaled.append(
            args.replace(
                input_filters=round_filters(args.input_filters, spec.width, spec.ten_percent_rule),
                output_filters=round_filters(args.output_filters, spec.width, spec.ten_percent_rule),
                repeats=args.repeats if keep_repeats else round_repeats(args.repeats, spec.depth),
            )
        )
    return scaled


def _check_stages(blocks: Sequence[str]) -> None:
    """Each stage must start with the channels the previous one ended with."""
    stages = block_grammar.decode_all(blocks)
    for k, (before, after) in enumerate(zip(stages, stages[1:]), start=1):
        if after.input_filters != before.output_filters:
            raise ValueError(
                f"blocks[{k}] {blocks[k]!r} starts with i{after.input_filters} but blocks[{k - 1}] ends with "
                f"o{before.output_filters}; make them equal."
            )


def _check_options(
    input_shape, pooling, num_classes, include_top, classifier_activation, dropout_rate, survival_prob,
    include_preprocessing, bn_momentum, name,
) -> tuple:
    """Checks every option before any layer is built; returns the numeric ones as plain Python values."""
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive ints or None, got {input_shape!r}; "
            "e.g. input_shape=(224, 224, 3)."
        )
    input_shape = tuple(
        None if d is None else check_int(f"input_shape[{i}]", d, min=1) for i, d in enumerate(input_shape)
    )
    if include_preprocessing and input_shape[-1] not in (None, 3):
        raise ValueError(
            f"include_preprocessing=True needs 3-channel RGB input, got input_shape={input_shape!r}; "
            "pass include_preprocessing=False for other channel counts."
        )
    check_choice("include_top", include_top, (True, False))
    check_choice("include_preprocessing", include_preprocessing, (True, False))
    check_choice("pooling", pooling, (None, "avg", "max"))
    if include_top:
        if pooling is not None:
            raise ValueError(
                f"pooling={pooling!r} applies only with include_top=False (the classifier always averages); "
                "drop pooling or pass include_top=False."
            )
        num_classes = 1000 if num_classes is None else check_int("num_classes", num_classes, min=1)
        if classifier_activation is not None:
            try:
                keras.activations.get(classifier_activation)
            except (ValueError, TypeError):
                raise ValueError(
                    f"classifier_activation must be None, a Keras activation name such as 'softmax', or a "
                    f"callable; got {classifier_activation!r}."
                ) from None
    elif num_classes is not None:
        raise ValueError(
            f"num_classes={num_classes!r} needs include_top=True (without the classifier there are no classes); "
            "drop num_classes or pass include_top=True."
        )
    if dropout_rate is not None:
        dropout_rate = check_float("dropout_rate", dropout_rate, min=0.0, max=1.0, max_open=True)
    survival_prob = check_float("survival_prob", survival_prob, min=0.0, max=1.0, min_open=True)
    if bn_momentum is not None:
        bn_momentum = check_float("bn_momentum", bn_momentum, min=0.0, max=1.0, max_open=True)
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"name must be a non-empty str (the Keras model name), got {name!r}.")
    return input_shape, num_classes, dropout_rate, survival_prob, bn_momentum


def build_model(
    spec: ModelSpec,
    *,
    include_top: bool = True,
    input_shape: Sequence[Optional[int]] = (None, None, 3),
    pooling: Optional[str] = None,
    num_classes: Optional[int] = None,
    classifier_activation: Optional[Union[str, Callable]] = "softmax",
    dropout_rate: Optional[float] = None,
    survival_prob: float = 0.8,
    include_preprocessing: bool = True,
    bn_momentum: Optional[float] = None,
    name: Optional[str] = None,
    normalization: Optional[tuple[Sequence[float], Sequence[float]]] = None,
) -> keras.Model:
    """Builds the network described by `spec` (no weights loaded); `num_classes` defaults to 1000.

    `normalization` is the (mean, std) per RGB channel on [0, 255] inputs,
    by default the family's; weights trained on other inputs (AdvProp) bring their own.
    """
    input_shape, num_classes, dropout_rate, survival_prob, bn_momentum = _check_options(
        input_shape, pooling, num_classes, include_top, classifier_activation, dropout_rate, survival_prob,
        include_preprocessing, bn_momentum, name,
    )
    _check_stages(spec.blocks)
    dropout_rate = spec.dropout if dropout_rate is None else dropout_rate
    momentum = spec.bn_momentum if bn_momentum is None else bn_momentum
    bn = dict(momentum=momentum, epsilon=spec.bn_epsilon)
    stages = scaled_stages(spec)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if include_preprocessing:
        mean, std = normalization or NORMALIZATION[spec.family]
        x = keras.layers.Rescaling(
            scale=[1.0 / s for s in std], offset=[-m / s for m, s in zip(mean, std)], name="normalization"
        )(x)

    stem_filters = (
        stages[0].input_filters if not spec.fixed_stem_head
        else block_grammar.decode(spec.blocks[0]).input_filters
    )
    x = keras.layers.Conv2D(
        stem_filters, 3, strides=2, padding="same", use_bias=False,
        kernel_initializer=keras.initializers.get(CONV_INITIALIZER), name="stem_conv",
    )(x)
    x = BatchNorm(**bn, name="stem_bn")(x)
    x = keras.layers.Activation(spec.activation, name="stem_activation")(x)

    total_blocks = sum(args.repeats for args in stages)
    drop_rate = 1.0 - survival_prob
    channels = stem_filters  # Real incoming width (Lite3/4 declare a rounded one for block 0).
    index = 0
    for stage, args in enumerate(stages):
        block_cls = FusedMBConv if args.fused else MBConv
        for repeat in range(args.repeats):
            x = block_cls(
                input_filters=channels,
                output_filters=args.output_filters,
                kernel_size=args.kernel_size,
                strides=args.strides if repeat == 0 else 1,
                expand_ratio=args.expand_ratio,
                se_ratio=args.se_ratio,
                skip=args.skip,
                drop_rate=drop_rate * index / total_blocks,
                activation=spec.activation,
                bn_momentum=momentum,
                bn_epsilon=spec.bn_epsilon,
                name=block_name(stage, repeat),
            )(x)
            channels = args.output_filters
            index += 1

    head = HEAD_FILTERS if spec.fixed_stem_head else round_filters(HEAD_FILTERS, spec.width, spec.ten_percent_rule)
    x = keras.layers.Conv2D(
        head, 1, padding="same", use_bias=False,
        kernel_initializer=keras.initializers.get(CONV_INITIALIZER), name="top_conv",
    )(x)
    x = BatchNorm(**bn, name="top_bn")(x)
    x = keras.layers.Activation(spec.activation, name="top_activation")(x)

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = HeadDropout(dropout_rate, name="top_dropout")(x)
        # Logits and softmax stay float32 under mixed precision.
        x = keras.layers.Dense(
            num_classes, activation=classifier_activation, dtype="float32",
            kernel_initializer=keras.initializers.get(DENSE_INITIALIZER), name="predictions",
        )(x)
    elif pooling is not None:
        x = _POOLING[pooling](name=f"{pooling}_pool")(x)
    return keras.Model(inputs, x, name=name or spec.name)


def endpoint_layers(model: keras.Model) -> dict[str, str]:
    """`reduction_i` -> block name: the last block before each downsampling block, and the last block.

    Read off the model's blocks, so it works for loaded models too.
    """
    blocks = [layer for layer in model.layers if isinstance(layer, (MBConv, FusedMBConv))]
    if not blocks:
        raise ValueError(f"Model {model.name!r} has no EfficientNet blocks; build it with efficientnet_tf.get_model.")
    ends = [b for b, after in zip(blocks, blocks[1:] + [None]) if after is None or after.strides > 1]
    return {f"reduction_{i}": block.name for i, block in enumerate(ends, start=1)}


def features_model(model: keras.Model) -> keras.Model:
    """Multi-scale backbone: a dict of `reduction_1`.. outputs (strides 2..32)."""
    outputs = {key: model.get_layer(name).output for key, name in endpoint_layers(model).items()}
    return keras.Model(model.input, outputs, name=f"{model.name}_features")


def get_model(
    name: str,
    /,
    *,
    weights: Optional[str] = None,
    features_only: bool = False,
    blocks: Optional[Sequence[str]] = None,
    width: Optional[float] = None,
    depth: Optional[float] = None,
    **options,
) -> keras.Model:
    """Builds a named model, optionally with custom blocks/width/depth and weights.

    Args:
      name: a registry name such as ``"efficientnetv2-s"`` (see
        ``efficientnet_tf.model_names()``), positional; a ``name=`` keyword
        names the Keras model instead.
      weights: None (random init), a weights name (``"imagenet"``; the
        official ``"autoaugment"``, ``"advprop"``, ``"noisy-student"``,
        ``"imagenet21k"``, ...: see ``efficientnet_tf.weights.weights_names``;
        21k names default to their 21843 classes, AdvProp to its [-1, 1]
        input scaling), or a weights file path
        (ours with or without a top, a ``.keras`` file, or a
        keras.applications HDF5 file), or an official google/automl or
        tensorflow/tpu checkpoint (directory, ``model.ckpt-N`` prefix or
        ``.tgz``/``.tar.gz``; EMA values). Any head fits: the backbone is loaded
        and a classifier of another size starts fresh at zero, ready for fine-tuning;
        one printed line says what was loaded.
      features_only: return a backbone whose output is a dict of
        ``reduction_1`` .. ``reduction_5`` feature maps (strides 2 to 32).
      blocks, width, depth: override the named architecture.
      **options: see `build_model` (include_top, input_shape, pooling,
        num_classes, classifier_activation, dropout_rate, survival_prob,
        include_preprocessing, bn_momentum).

    Example:
      >>> model = get_model("efficientnetv2-b0", num_classes=5)
      >>> backbone = get_model("efficientnet-b0", features_only=True)
      >>> sorted(backbone.output)[:2]
      ['reduction_1', 'reduction_2']
    """
    from efficientnet_tf import published
    from efficientnet_tf.weights import check_weights, load_weights

    unknown = sorted(set(options) - _BUILD_OPTIONS)
    if unknown:
        raise TypeError(f"get_model got unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(_BUILD_OPTIONS))}.")
    spec = get_spec(name)
    changes = {}
    if blocks is not None:
        if isinstance(blocks, str):
            raise ValueError(f"blocks must be a list of block strings, got the single string {blocks!r}; wrap it in [].")
        changes["blocks"] = tuple(block_grammar.encode(a) for a in block_grammar.decode_all(blocks))
    for key, value in (("width", width), ("depth", depth)):
        if value is not None:
            changes[key] = check_float(key, value, min=0.0, max=_MAX_SCALE, min_open=True)
    if changes:
        spec = spec.replace(**changes)
    check_choice("features_only", features_only, (True, False))
    if features_only:
        given = {k: options[k] for k in ("include_top", "pooling", "num_classes") if options.get(k) not in (None, False)}
        if given:
            raise ValueError(
                f"features_only=True returns the backbone's feature maps; drop {', '.join(f'{k}={v!r}' for k, v in given.items())}."
            )
        options["include_top"] = False
    check_weights(weights, spec)
    named = published.lookup(spec.name, weights) if isinstance(weights, str) and not os.path.exists(weights) else None
    normalization = None
    if named is not None:  # The model those weights were trained as: their class count and input scaling.
        if options.get("include_top", True) and options.get("num_classes") is None:
            options["num_classes"] = named.num_classes
        normalization = named.normalization
    model = build_model(spec, normalization=normalization, **options)
    if weights is not None:
        load_weights(model, weights, spec)
    return features_model(model) if features_only else model


def _constructor(model_name: str) -> Callable[..., keras.Model]:
    def constructor(*args, **options) -> keras.Model:
        if args:
            raise TypeError(
                f"{constructor.__name__} takes keyword arguments only, got {args!r}; "
                f"e.g. {constructor.__name__}(num_classes=5)."
            )
        return get_model(model_name, **options)

    family, suffix = model_name.split("-")
    constructor.__name__ = constructor.__qualname__ = (
        f"EfficientNet{'V2' if family.endswith('v2') else ''}{suffix.capitalize() if 'lite' in suffix else suffix.upper()}"
    )
    constructor.__doc__ = f"Builds ``{model_name}``; options as for `efficientnet_tf.get_model`."
    return constructor


EfficientNetB0 = _constructor("efficientnet-b0")
EfficientNetB1 = _constructor("efficientnet-b1")
EfficientNetB2 = _constructor("efficientnet-b2")
EfficientNetB3 = _constructor("efficientnet-b3")
EfficientNetB4 = _constructor("efficientnet-b4")
EfficientNetB5 = _constructor("efficientnet-b5")
EfficientNetB6 = _constructor("efficientnet-b6")
EfficientNetB7 = _constructor("efficientnet-b7")
EfficientNetB8 = _constructor("efficientnet-b8")
EfficientNetL2 = _constructor("efficientnet-l2")
EfficientNetLite0 = _constructor("efficientnet-lite0")
EfficientNetLite1 = _constructor("efficientnet-lite1")
EfficientNetLite2 = _constructor("efficientnet-lite2")
EfficientNetLite3 = _constructor("efficientnet-lite3")
EfficientNetLite4 = _constructor("efficientnet-lite4")
EfficientNetV2B0 = _constructor("efficientnetv2-b0")
EfficientNetV2B1 = _constructor("efficientnetv2-b1")
EfficientNetV2B2 = _constructor("efficientnetv2-b2")
EfficientNetV2B3 = _constructor("efficientnetv2-b3")
EfficientNetV2S = _constructor("efficientnetv2-s")
EfficientNetV2M = _constructor("efficientnetv2-m")
EfficientNetV2L = _constructor("efficientnetv2-l")
EfficientNetV2XL = _constructor("efficientnetv2-xl")
