"""Multiply-add counts of convolutions and dense layers (what both papers call FLOPs)."""

from __future__ import annotations

from typing import Optional, Union

import keras

from efficientnet_tf.layers import FusedMBConv, MBConv


def _conv_macs(layer: keras.layers.Layer, height: int, width: int) -> tuple[int, int, int]:
    stride = layer.strides[0]
    out_h, out_w = -(-height // stride), -(-width // stride)
    kh, kw, cin, cout = layer.kernel.shape  # depthwise: (kh, kw, channels, 1)
    return out_h * out_w * kh * kw * cin * cout, out_h, out_w


def _block_macs(block: MBConv | FusedMBConv, height: int, width: int) -> tuple[int, int, int]:
    """Convolutions in execution order; squeeze-excite works on the pooled 1x1 map."""
    squeeze_excite = (block.se.reduce, block.se.expand) if block.se is not None else ()
    total = 0
    for layer in block.weight_layers():
        if layer in squeeze_excite:
            total += _conv_macs(layer, 1, 1)[0]
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            macs, height, width = _conv_macs(layer, height, width)
            total += macs
    return total, height, width


def count_flops(model_or_name: Union[keras.Model, str], image_size: Optional[int] = None) -> int:
    """Multiply-adds for one image of `image_size` (default: the eval size).

    Walks the network analytically rather than tracing it, so it is exact,
    instant, and works for models with unknown input size.
    """
    from efficientnet_tf.model import get_model
    from efficientnet_tf.registry import get_spec

    if isinstance(model_or_name, str):
        if image_size is None:
            image_size = get_spec(model_or_name).eval_size
        model = get_model(model_or_name)
    else:
        model = model_or_name
        if image_size is None:
            known = model.input_shape[1]
            if known is None:
                raise ValueError("count_flops needs image_size for a model with unknown input size.")
            image_size = known
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}.")
    height = width = image_size
    total = 0
    for layer in model.layers:
        if isinstance(layer, (MBConv, FusedMBConv)):
            macs, height, width = _block_macs(layer, height, width)
        elif isinstance(layer, keras.layers.Conv2D):
            macs, height, width = _conv_macs(layer, height, width)
        elif isinstance(layer, keras.layers.Dense):
            macs = layer.kernel.shape[0] * layer.kernel.shape[1]
        else:
            continue
        total += macs
    return int(total)
