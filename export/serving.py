"""The SavedModel: float images in, probabilities out; or encoded images in, top-k classes out.

Both signatures call the model with `training=False`, so BatchNorm uses its
moving statistics and dropout is off; the graph holds no random ops.
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from efficientnet_tf.inference import eval_image

TOP_K = 5


def write_saved_model(
    model: keras.Model,
    path: str,
    *,
    class_names: list[str],
    family: str,
    image_size: int,
    fixed_size: Optional[int] = None,
) -> None:
    """Writes `serving_default` (images -> probabilities) and `serving_bytes` (encoded -> top-k).

    `fixed_size` pins the image height and width of `serving_default`, which
    the LiteRT and ONNX converters need; otherwise any size is accepted.
    """
    names = tf.constant(class_names)
    k = min(TOP_K, len(class_names))

    def probabilities(images):
        return {"probabilities": model(images, training=False)}

    def top_classes(encoded):
        images = tf.map_fn(
            lambda one: eval_image(one, family, image_size), encoded,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
        )  # fmt: skip
        top = tf.math.top_k(model(images, training=False), k=k)
        return {"classes": top.indices, "class_names": tf.gather(names, top.indices), "probabilities": top.values}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", probabilities,
        input_signature=[tf.TensorSpec([None, fixed_size, fixed_size, 3], tf.float32, name="images")],
    )  # fmt: skip
    archive.add_endpoint("serving_bytes", top_classes, input_signature=[tf.TensorSpec([None], tf.string, name="encoded")])
    archive.write_out(path, verbose=False)
