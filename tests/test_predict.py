"""`python -m efficientnet_tf.predict`: every kind of model path classifies files alike; bad images are reported."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

import efficientnet_tf
from efficientnet_tf.data.synthetic import render_split
from efficientnet_tf.predict import main as predict_main
from efficientnet_tf.training import Trained
from export import export_trained
from harness import TINY

NAMES = ["apple", "banana", "cherry", "date", "elder"]
SIZE = 32


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """One model as a training directory, .keras file, SavedModel, LiteRT and ONNX; and three images."""
    root = tmp_path_factory.mktemp("predict")
    model = efficientnet_tf.get_model("efficientnet-lite0", **TINY, num_classes=len(NAMES))
    # Well separated class scores, so the top-5 order cannot flip between runtimes.
    head = model.get_layer("predictions")
    head.kernel.assign(head.kernel * 0.01)
    head.bias.assign(np.linspace(2.0, -2.0, len(NAMES)).astype("float32"))
    run = root / "run"
    run.mkdir()
    model.save(str(run / "model.keras"))
    (run / "class_names.json").write_text(json.dumps(NAMES))
    (run / "config.json").write_text(json.dumps(
        {"model": {"name": "efficientnet-lite0", **TINY}, "data": {"eval_size": SIZE}}))
    images = render_split(2, 10, 48, seed=3, stream=0)[0]
    files = []
    for image, fmt in zip(images, ("JPEG", "PNG")):
        path = root / f"image.{fmt.lower()}"
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt)
        path.write_bytes(buffer.getvalue())
        files.append(str(path))
    broken = root / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = root / "export"
    calibration = render_split(4, 10, SIZE, seed=0, stream=0)[0].astype("float32")
    export_trained(Trained(model, NAMES, "efficientnet-lite", SIZE), str(out), formats=["saved_model", "tflite", "onnx"],
                   quantize=["float32"], calibration=calibration)  # fmt: skip
    return {
        "training dir": str(run), ".keras": str(run / "model.keras"), "SavedModel": str(out / "saved_model"),
        "export dir": str(out), ".tflite": str(out / "model_float32.tflite"), ".onnx": str(out / "model.onnx"),
        "images": files, "broken": str(broken),
    }  # fmt: skip


def predict_json(capsys, model: str, images: list[str]) -> tuple[int, list, str]:
    code = predict_main(["--model", model, "--json", *images])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_every_model_kind_gives_the_same_top5(paths, capsys):
    results = {}
    for kind in ("training dir", ".keras", "SavedModel", "export dir", ".tflite", ".onnx"):
        code, records, _ = predict_json(capsys, paths[kind], paths["images"])
        assert code == 0, kind
        results[kind] = records
    reference = results["training dir"]
    assert [len(r["predictions"]) for r in reference] == [5, 5]
    for kind, records in results.items():
        for ours, theirs in zip(records, reference):
            assert [p["class"] for p in ours["predictions"]] == [p["class"] for p in theirs["predictions"]], kind
            np.testing.assert_allclose([p["probability"] for p in ours["predictions"]],
                                       [p["probability"] for p in theirs["predictions"]], atol=1e-4)  # fmt: skip


def test_unreadable_images_are_reported_and_the_others_classified(paths, capsys):
    missing = os.path.join(os.path.dirname(paths["broken"]), "missing.png")
    images = [paths["images"][0], paths["broken"], missing, paths["images"][1]]
    code, records, err = predict_json(capsys, paths[".tflite"], images)
    assert code == 1
    assert [("predictions" in r) for r in records] == [True, False, False, True]
    assert paths["broken"] in err and missing in err and len(err.strip().splitlines()) == 2


def test_text_output_lists_names_and_probabilities(paths, capsys):
    assert predict_main(["--model", paths["SavedModel"], paths["images"][0]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == paths["images"][0]
    assert [line.split()[1] for line in lines[1:]] == NAMES  # the biases order the classes
    assert abs(sum(float(line.split()[0]) for line in lines[1:]) - 1.0) < 1e-3


def test_bad_model_path_is_one_line_error(tmp_path, capsys):
    assert predict_main(["--model", str(tmp_path / "nothing"), "x.jpg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
