"""Multiply-add counts of convolutions and dense layers (what both papers call FLOPs).

Feature-map sizes come from Keras' own shape inference at the requested image
size (symbolic, no computation), so padding, strides and non-square inputs
count as the model runs them; the inside of our blocks is counted from their
configuration. A layer with weights of any other kind makes `count_flops`
refuse, rather than return a number that leaves it out.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import keras

from efficientnet_tf.layers import FusedMBConv, MBConv
from efficientnet_tf.validation import check_int

_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)  # Conv2D includes Conv2DTranspose: refused below
# Layers whose weights are not multiply-adds of the input (statistics, scales).
_NO_MACS = (keras.layers.BatchNormalization, keras.layers.Normalization, keras.layers.LayerNormalization)


def _conv_output(size: int, layer: keras.layers.Layer, axis: int) -> int:
    kernel, stride, dilation = layer.kernel_size[axis], layer.strides[axis], layer.dilation_rate[axis]
    if layer.padding == "same":
        return -(-size // stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _conv_macs(layer: keras.layers.Layer, height: int, width: int) -> tuple[int, int, int]:
    """MACs of one conv on a height x width input, and its output size."""
    out_h, out_w = _conv_output(height, layer, 0), _conv_output(width, layer, 1)
    kh, kw, cin, cout = layer.kernel.shape  # depthwise: (kh, kw, channels, multiplier)
    return out_h * out_w * kh * kw * cin * cout, out_h, out_w


def _block_macs(block: MBConv | FusedMBConv, height: int, width: int) -> int:
    """Convolutions in execution order; squeeze-excite works on the pooled 1x1 map."""
    squeeze_excite = (block.se.reduce, block.se.expand) if block.se is not None else ()
    total = 0
    for layer in block.weight_layers():
        if layer in squeeze_excite:
            total += _conv_macs(layer, 1, 1)[0]
        elif isinstance(layer, _CONVS):
            macs, height, width = _conv_macs(layer, height, width)
            total += macs
    return total


def _counted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers that hold multiply-adds; refuses a model with weights this counter does not understand."""
    counted = []
    for layer in model.layers:
        if isinstance(layer, (MBConv, FusedMBConv, keras.layers.Dense)) or (
            isinstance(layer, _CONVS) and not isinstance(layer, keras.layers.Conv2DTranspose)
        ):
            counted.append(layer)
        elif layer.weights and not isinstance(layer, _NO_MACS):
            raise ValueError(
                f"count_flops counts Conv2D, DepthwiseConv2D, Dense and EfficientNet blocks, but {model.name!r} has "
                f"layer {layer.name!r} ({type(layer).__name__}) with weights; its count would be wrong, so none is given."
            )
    return counted


def _feature_shapes(model: keras.Model, layers: list, height: int, width: int) -> list[tuple]:
    """Each layer's input shape for one height x width image, by Keras' symbolic shape inference."""
    if not getattr(model, "inputs", None) or len(model.inputs) != 1:
        raise ValueError(
            f"count_flops needs a model with one image input (a functional or Sequential model built on keras.Input); "
            f"{model.name!r} has {len(getattr(model, 'inputs', None) or [])}."
        )
    try:
        probe = keras.Model(model.inputs, [layer.input for layer in layers])
    except (ValueError, AttributeError) as error:  # e.g. a layer called more than once
        raise ValueError(f"count_flops cannot follow {model.name!r}'s graph ({error}).") from None
    channels = model.inputs[0].shape[-1]
    specs = probe.compute_output_spec(keras.KerasTensor((1, height, width, channels)))
    return [tuple(spec.shape) for spec in (specs if isinstance(specs, (list, tuple)) else [specs])]


def _check_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        return tuple(check_int(f"image_size[{i}]", v, min=1) for i, v in enumerate(image_size))
    size = check_int("image_size", image_size, min=1)
    return size, size


def count_flops(
    model_or_name: Union[keras.Model, str], image_size: Optional[Union[int, Sequence[int]]] = None
) -> int:
    """Multiply-adds for one image of `image_size` (an int or (height, width); default: the eval size).

    Walks the network's layers rather than running it, so it is exact and
    instant, and works for models with unknown input size.
    """
    from efficientnet_tf.model import get_model
    from efficientnet_tf.registry import get_spec

    if isinstance(model_or_name, str):
        spec = get_spec(model_or_name)
        height, width = _check_size(spec.eval_size if image_size is None else image_size)
        model = get_model(spec.name)
    elif isinstance(model_or_name, keras.Model):
        model = model_or_name
        if image_size is None:
            image_size = tuple(model.input_shape[1:3]) if len(model.input_shape) == 4 else None
            if image_size is None or None in image_size:
                raise ValueError("count_flops needs image_size for a model with unknown input size; pass image_size=224.")
        height, width = _check_size(image_size)
    else:
        raise TypeError(f"count_flops takes a keras.Model or a model name, got {model_or_name!r}.")
    layers = _counted_layers(model)
    total = 0
    for layer, shape in zip(layers, _feature_shapes(model, layers, height, width)):
        if isinstance(layer, (MBConv, FusedMBConv)):
            total += _block_macs(layer, shape[1], shape[2])
        elif isinstance(layer, _CONVS):
            total += _conv_macs(layer, shape[1], shape[2])[0]
        else:  # Dense: one matrix product per position of a >2-D input
            positions = 1
            for size in shape[1:-1]:
                positions *= size
            total += positions * layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)
