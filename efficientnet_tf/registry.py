"""Every named model of both papers, as plain data.

A `ModelSpec` is everything the builder needs to know about a name; the
builder (`model.py`) never branches on a model name. Values follow the
released code (tensorflow/tpu for V1 and Lite, google/automl for V2); where
it disagrees with the paper, the comment says so.
"""

from __future__ import annotations

import dataclasses
import difflib
import math

from efficientnet_tf.validation import check_float, check_int

V1_BLOCKS = (
    "r1_k3_s11_e1_i32_o16_se0.25",
    "r2_k3_s22_e6_i16_o24_se0.25",
    "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25",
    "r3_k5_s11_e6_i80_o112_se0.25",
    "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
)
LITE_BLOCKS = tuple(s.replace("_se0.25", "") for s in V1_BLOCKS)
V2_BASE_BLOCKS = (
    "r1_k3_s1_e1_i32_o16_c1",
    "r2_k3_s2_e4_i16_o32_c1",
    "r2_k3_s2_e4_i32_o48_c1",
    "r3_k3_s2_e4_i48_o96_se0.25",
    "r5_k3_s1_e6_i96_o112_se0.25",
    "r8_k3_s2_e6_i112_o192_se0.25",
)
V2_S_BLOCKS = (
    "r2_k3_s1_e1_i24_o24_c1",
    "r4_k3_s2_e4_i24_o48_c1",
    "r4_k3_s2_e4_i48_o64_c1",
    "r6_k3_s2_e4_i64_o128_se0.25",
    "r9_k3_s1_e6_i128_o160_se0.25",
    "r15_k3_s2_e6_i160_o256_se0.25",
)
V2_M_BLOCKS = (
    "r3_k3_s1_e1_i24_o24_c1",
    "r5_k3_s2_e4_i24_o48_c1",
    "r5_k3_s2_e4_i48_o80_c1",
    "r7_k3_s2_e4_i80_o160_se0.25",
    "r14_k3_s1_e6_i160_o176_se0.25",
    "r18_k3_s2_e6_i176_o304_se0.25",
    "r5_k3_s1_e6_i304_o512_se0.25",
)
V2_L_BLOCKS = (
    "r4_k3_s1_e1_i32_o32_c1",
    "r7_k3_s2_e4_i32_o64_c1",
    "r7_k3_s2_e4_i64_o96_c1",
    "r10_k3_s2_e4_i96_o192_se0.25",
    "r19_k3_s1_e6_i192_o224_se0.25",
    "r25_k3_s2_e6_i224_o384_se0.25",
    "r7_k3_s1_e6_i384_o640_se0.25",
)
V2_XL_BLOCKS = (
    "r4_k3_s1_e1_i32_o32_c1",
    "r8_k3_s2_e4_i32_o64_c1",
    "r8_k3_s2_e4_i64_o96_c1",
    "r16_k3_s2_e4_i96_o192_se0.25",
    "r24_k3_s1_e6_i192_o256_se0.25",
    "r32_k3_s2_e6_i256_o512_se0.25",
    "r8_k3_s1_e6_i512_o640_se0.25",
)

# Input normalization per family, applied inside the model to RGB in [0, 255].
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
NORMALIZATION = {
    "efficientnet": (IMAGENET_MEAN, IMAGENET_STD),
    "efficientnet-lite": ((127.0,) * 3, (128.0,) * 3),
    "efficientnetv2-base": (IMAGENET_MEAN, IMAGENET_STD),
    "efficientnetv2": ((128.0,) * 3, (128.0,) * 3),
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Architecture and default sizes of one named model.

    `family` selects input normalization and preprocessing (see
    `NORMALIZATION`); `ten_percent_rule` is V1's extra rounding step;
    `fixed_stem_head` is Lite's unscaled stem, head and end-stage repeats.
    """

    name: str
    blocks: tuple[str, ...]
    width: float
    depth: float
    train_size: int
    eval_size: int
    dropout: float
    family: str
    activation: str = "swish"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    ten_percent_rule: bool = True
    fixed_stem_head: bool = False

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)


def round_filters(filters: float, width: float, ten_percent_rule: bool, divisor: int = 8) -> int:
    """Scales a channel count by `width`, snapping to a multiple of `divisor`."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if ten_percent_rule and rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def compound_scaling(
    phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15, base_resolution: int = 224
) -> tuple[float, float, int]:
    """The V1 paper's compound scaling: (width, depth, resolution) for `phi`.

    depth = alpha**phi, width = beta**phi, resolution = gamma**phi times the
    base, rounded to a multiple of 8. The named B1-B7 were tuned by hand
    around these values, so they do not lie exactly on this curve. `phi` is
    kept in [0, 16] (B7 is about 6; beyond 16 the image exceeds 2,000 px)
    and the coefficients at least 1, so every result is a real model.
    """
    phi = check_float("phi", phi, min=0.0, max=16.0)
    alpha, beta, gamma = (check_float(n, v, min=1.0) for n, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)))
    base_resolution = check_int("base_resolution", base_resolution, min=8)
    width, depth = beta**phi, alpha**phi
    resolution = max(8, int(round(base_resolution * gamma**phi / 8)) * 8)
    return round(width, 4), round(depth, 4), resolution


def _v1(name, width, depth, size, dropout):
    return ModelSpec(name, V1_BLOCKS, width, depth, size, size, dropout, "efficientnet")


def _lite(name, width, depth, size, dropout):
    # Lite: ReLU6, no SE, fixed stem/head (tensorflow/tpu efficientnet_lite_builder).
    return ModelSpec(
        name, LITE_BLOCKS, width, depth, size, size, dropout, "efficientnet-lite",
        activation="relu6", fixed_stem_head=True,
    )


def _v2(name, blocks, width, depth, train, eval_, dropout, family="efficientnetv2"):
    # BN momentum 0.9 as in google/automl (the V2 paper says 0.99); no 10% rule.
    return ModelSpec(
        name, blocks, width, depth, train, eval_, dropout, family,
        bn_momentum=0.9, ten_percent_rule=False,
    )


_SPECS = [
    _v1("efficientnet-b0", 1.0, 1.0, 224, 0.2),
    _v1("efficientnet-b1", 1.0, 1.1, 240, 0.2),
    _v1("efficientnet-b2", 1.1, 1.2, 260, 0.3),
    _v1("efficientnet-b3", 1.2, 1.4, 300, 0.3),
    _v1("efficientnet-b4", 1.4, 1.8, 380, 0.4),
    _v1("efficientnet-b5", 1.6, 2.2, 456, 0.4),
    _v1("efficientnet-b6", 1.8, 2.6, 528, 0.5),
    _v1("efficientnet-b7", 2.0, 3.1, 600, 0.5),
    _v1("efficientnet-b8", 2.2, 3.6, 672, 0.5),
    _v1("efficientnet-l2", 4.3, 5.3, 800, 0.5),
    _lite("efficientnet-lite0", 1.0, 1.0, 224, 0.2),
    _lite("efficientnet-lite1", 1.0, 1.1, 240, 0.2),
    _lite("efficientnet-lite2", 1.1, 1.2, 260, 0.3),
    _lite("efficientnet-lite3", 1.2, 1.4, 280, 0.3),
    _lite("efficientnet-lite4", 1.4, 1.8, 300, 0.3),
    _v2("efficientnetv2-b0", V2_BASE_BLOCKS, 1.0, 1.0, 192, 224, 0.2, "efficientnetv2-base"),
    _v2("efficientnetv2-b1", V2_BASE_BLOCKS, 1.0, 1.1, 192, 240, 0.2, "efficientnetv2-base"),
    _v2("efficientnetv2-b2", V2_BASE_BLOCKS, 1.1, 1.2, 208, 260, 0.3, "efficientnetv2-base"),
    _v2("efficientnetv2-b3", V2_BASE_BLOCKS, 1.2, 1.4, 240, 300, 0.3, "efficientnetv2-base"),
    _v2("efficientnetv2-s", V2_S_BLOCKS, 1.0, 1.0, 300, 384, 0.2),
    _v2("efficientnetv2-m", V2_M_BLOCKS, 1.0, 1.0, 384, 480, 0.3),
    _v2("efficientnetv2-l", V2_L_BLOCKS, 1.0, 1.0, 384, 480, 0.4),
    _v2("efficientnetv2-xl", V2_XL_BLOCKS, 1.0, 1.0, 384, 512, 0.4),
]
HEAD_FILTERS = 1280
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> ModelSpec:
    """Looks a model name up, suggesting the closest names when it is unknown."""
    if not isinstance(name, str):
        raise TypeError(f"Model name must be a str such as 'efficientnet-b0', got {name!r}.")
    key = name.strip().lower().replace("_", "-")
    if key in MODELS:
        return MODELS[key]
    close = difflib.get_close_matches(key, MODELS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown model name {name!r}.{hint} Known names: {', '.join(MODELS)}."
    )


def model_names() -> list[str]:
    return list(MODELS)
