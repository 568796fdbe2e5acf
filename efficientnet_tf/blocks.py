"""The block-argument grammar shared by both EfficientNet families.

One string describes one stage, e.g. ``r2_k3_s22_e6_i16_o24_se0.25`` (V1) or
``r2_k3_s2_e4_i24_o48_c1`` (V2). Tokens are a letter key followed by a value
(split at the first digit); ``noskip`` is a bare flag. Decoding keeps the
stride notation so that ``encode(decode(s)) == s`` for every official string.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Optional

_REQUIRED = ("r", "k", "s", "e", "i", "o")
_KNOWN = _REQUIRED + ("se", "c", "noskip")
_TOKEN = re.compile(r"^([a-z]+)(.*)$")


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    """One stage: `repeats` blocks, the first with `strides`, the rest stride 1."""

    repeats: int
    kernel_size: int
    strides: int
    expand_ratio: int
    input_filters: int
    output_filters: int
    se_ratio: Optional[float] = None
    fused: bool = False
    skip: bool = True
    # V1 writes strides as two digits ("s22"), V2 as one ("s2").
    two_digit_strides: bool = False

    def replace(self, **changes) -> "BlockArgs":
        return dataclasses.replace(self, **changes)


def _int(string: str, key: str, value: str) -> int:
    if not value.isdigit():
        raise ValueError(
            f"Block string {string!r}: '{key}' needs a non-negative integer, "
            f"got {value!r}."
        )
    return int(value)


def decode(string: str) -> BlockArgs:
    """Parses one block string; raises ValueError naming what is wrong."""
    if not isinstance(string, str) or not string.strip():
        raise ValueError(f"Block string must be a non-empty str, got {string!r}.")
    fields: dict[str, str] = {}
    for token in string.strip().split("_"):
        match = _TOKEN.match(token)
        if token == "noskip":
            key, value = "noskip", ""
        elif match is None or match.group(1) not in _KNOWN or match.group(1) == "noskip":
            raise ValueError(
                f"Block string {string!r}: unknown token {token!r}; known keys "
                f"are {', '.join(_KNOWN)}."
            )
        else:
            key, value = match.groups()
        if key in fields:
            raise ValueError(f"Block string {string!r}: key {key!r} appears twice.")
        fields[key] = value
    missing = [k for k in _REQUIRED if k not in fields]
    if missing:
        raise ValueError(
            f"Block string {string!r}: missing field(s) {', '.join(missing)} "
            "(each of r k s e i o is required)."
        )

    stride_text = fields["s"]
    if re.fullmatch(r"[1-9]", stride_text):
        strides, two_digit = int(stride_text), False
    elif re.fullmatch(r"([1-9])\1", stride_text):
        strides, two_digit = int(stride_text[0]), True
    else:
        raise ValueError(
            f"Block string {string!r}: bad stride 's{stride_text}'; write one "
            "digit (s1, s2) or two equal digits (s11, s22)."
        )

    se_ratio = None
    if "se" in fields:
        try:
            se_ratio = float(fields["se"])
        except ValueError:
            raise ValueError(
                f"Block string {string!r}: 'se' needs a number, got "
                f"{fields['se']!r}."
            ) from None
        if not 0.0 < se_ratio <= 1.0:
            raise ValueError(
                f"Block string {string!r}: 'se' must be in (0, 1], got {se_ratio}."
            )
    conv_type = _int(string, "c", fields.get("c", "0"))
    if conv_type not in (0, 1):
        raise ValueError(
            f"Block string {string!r}: 'c' must be 0 (MBConv) or 1 "
            f"(Fused-MBConv), got {conv_type}."
        )
    args = BlockArgs(
        repeats=_int(string, "r", fields["r"]),
        kernel_size=_int(string, "k", fields["k"]),
        strides=strides,
        expand_ratio=_int(string, "e", fields["e"]),
        input_filters=_int(string, "i", fields["i"]),
        output_filters=_int(string, "o", fields["o"]),
        se_ratio=se_ratio,
        fused=conv_type == 1,
        skip="noskip" not in fields,
        two_digit_strides=two_digit,
    )
    for name in ("repeats", "kernel_size", "expand_ratio", "input_filters", "output_filters"):
        if getattr(args, name) < 1:
            raise ValueError(f"Block string {string!r}: {name} must be at least 1.")
    return args


def encode(args: BlockArgs) -> str:
    """Writes the canonical string for `args` (inverse of `decode`)."""
    stride = f"{args.strides}{args.strides}" if args.two_digit_strides else f"{args.strides}"
    tokens = [
        f"r{args.repeats}",
        f"k{args.kernel_size}",
        f"s{stride}",
        f"e{args.expand_ratio}",
        f"i{args.input_filters}",
        f"o{args.output_filters}",
    ]
    if args.se_ratio is not None:
        tokens.append(f"se{args.se_ratio:g}")
    if args.fused:
        tokens.append("c1")
    if not args.skip:
        tokens.append("noskip")
    return "_".join(tokens)


def decode_all(strings: Iterable[str]) -> tuple[BlockArgs, ...]:
    strings = list(strings)
    if not strings:
        raise ValueError("A model needs at least one block string.")
    return tuple(decode(s) for s in strings)
