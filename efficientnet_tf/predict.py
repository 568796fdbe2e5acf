"""Classify image files with a trained or exported model: the top-5 classes of each image.

    python -m efficientnet_tf.predict --model PATH [--json] IMAGE...

PATH is a training directory, a `.keras` file, a SavedModel (its
`serving_bytes` signature does the preprocessing), an export directory
(its SavedModel), or a `.tflite` / `.onnx` file next to the `export.json`
that `python -m export` wrote. Every image gets the family's evaluation
crop and resize. An unreadable image is reported and the others are still
classified; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from efficientnet_tf.errors import one_line
from efficientnet_tf.files import check_filesystem, directory_of, error_text
from efficientnet_tf.inference import MANIFEST, LiteRTModel, OnnxModel, eval_image
from efficientnet_tf.training.loading import load_trained

TOP_K = 5
Prediction = list[tuple[str, float]]  # (class name, probability), best first


def load_classifier(path: str) -> Callable[[bytes], Prediction]:
    """A function from one encoded image to its top-5 (class name, probability) pairs."""
    check_filesystem(path, "--model")
    if tf.io.gfile.isdir(path) and tf.io.gfile.exists(os.path.join(path, MANIFEST)):
        path = os.path.join(path, "saved_model")
    if tf.saved_model.contains_saved_model(path):
        return _saved_model_classifier(path)
    if path.endswith((".tflite", ".onnx")) and tf.io.gfile.exists(path):
        manifest = _manifest_beside(path)
        with tf.io.gfile.GFile(path, "rb") as file:
            content = file.read()
        runner = LiteRTModel(content) if path.endswith(".tflite") else OnnxModel(content)
        return _classifier(runner, manifest["class_names"], manifest["family"], manifest["image_size"])
    trained = load_trained(path)  # a training directory or .keras file; a clear error otherwise
    model = trained.model
    forward = tf.function(lambda images: model(images, training=False))
    return _classifier(lambda images: forward(images).numpy(), trained.class_names, trained.family, trained.image_size)


def _saved_model_classifier(path: str) -> Callable[[bytes], Prediction]:
    loaded = tf.saved_model.load(path)
    if "serving_bytes" not in loaded.signatures:
        raise ValueError(f"SavedModel {path} has no serving_bytes signature; export it with python -m export.")
    serve = loaded.signatures["serving_bytes"]

    def classify(encoded: bytes) -> Prediction:
        out = serve(encoded=tf.constant([encoded]))
        names = [name.decode() for name in out["class_names"].numpy()[0]]
        return list(zip(names, out["probabilities"].numpy()[0].tolist()))

    return classify


def _classifier(runner, class_names: list[str], family: str, image_size: int) -> Callable[[bytes], Prediction]:
    def classify(encoded: bytes) -> Prediction:
        image = eval_image(tf.constant(encoded), family, image_size).numpy()
        probabilities = np.asarray(runner(image[None]))[0]
        best = np.argsort(-probabilities, kind="stable")[:TOP_K]
        return [(class_names[i], float(probabilities[i])) for i in best]

    return classify


def _manifest_beside(path: str) -> dict:
    manifest = os.path.join(directory_of(path), MANIFEST)
    if not tf.io.gfile.exists(manifest):
        raise ValueError(f"{path} has no {MANIFEST} beside it (class names, preprocessing); use the directory python -m export wrote.")
    with tf.io.gfile.GFile(manifest) as file:
        return json.load(file)


def classify_files(classify: Callable[[bytes], Prediction], images: list[str]) -> list[dict]:
    """One record per image: its predictions, or the reason it could not be read."""
    records = []
    for image in images:
        try:
            with tf.io.gfile.GFile(image, "rb") as file:
                predictions = classify(file.read())
            records.append({"image": image, "predictions": [{"class": c, "probability": p} for c, p in predictions]})
        except (OSError, tf.errors.OpError) as error:
            records.append({"image": image, "error": f"cannot read it as an image ({error_text(error)})"})
    return records


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m efficientnet_tf.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="training dir, .keras, SavedModel, export dir, .tflite or .onnx")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    args = parser.parse_args(argv)
    try:
        classify = load_classifier(args.model)
    except (ValueError, OSError) as error:
        print(f"predict: error: {one_line(error)}", file=sys.stderr)
        return 2
    records = classify_files(classify, args.images)
    if args.json:
        print(json.dumps(records, indent=2))
    for record in records:
        if "error" in record:
            print(f"{record['image']}: {record['error']}", file=sys.stderr)
        elif not args.json:
            print(record["image"])
            for p in record["predictions"]:
                print(f"  {p['probability']:.4f}  {p['class']}")
    return 1 if any("error" in record for record in records) else 0


if __name__ == "__main__":
    sys.exit(main())
