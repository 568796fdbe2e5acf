"""Every bad argument to a public function: exception type, the argument named, nothing expensive done first.

"Nothing expensive first" is observed, not assumed: model cases run with
`keras.Input` replaced by a tripwire (the builder's first step), and pipeline
cases pass a source folder that does not exist, so an argument checked after
the source is read would fail with the folder's error instead of its own.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import efficientnet_tf
from efficientnet_tf import compound_scaling, count_flops, get_model
from efficientnet_tf.data import AugmentState, folder_source, make_datasets, synthetic_source
from harness import TINY, assert_one_line_error

B0 = "efficientnet-b0"
MISSING_FOLDER = "./no/such/image/folder"
GOOD_BLOCKS = ["r1_k3_s1_e1_i32_o16", "r1_k3_s2_e6_i16_o24"]

# (call, exception type, text the one-line message must contain)
MODEL_CASES = {
    "num_classes bool": (lambda: get_model(B0, num_classes=True), TypeError, "num_classes"),
    "num_classes str": (lambda: get_model(B0, num_classes="5"), TypeError, "num_classes"),
    "num_classes zero": (lambda: get_model(B0, num_classes=0), ValueError, "num_classes"),
    "width bool": (lambda: get_model(B0, width=True), TypeError, "width"),
    "width str": (lambda: get_model(B0, width="1.0"), TypeError, "width"),
    "depth negative": (lambda: get_model(B0, depth=-1), ValueError, "depth"),
    "width nan": (lambda: get_model(B0, width=float("nan")), ValueError, "width"),
    "bn_momentum 5": (lambda: get_model(B0, bn_momentum=5), ValueError, "bn_momentum"),
    "dropout without top": (lambda: get_model(B0, include_top=False, dropout_rate=1.5), ValueError, "dropout_rate"),
    "dropout_rate 1": (lambda: get_model(B0, dropout_rate=1.0), ValueError, "dropout_rate"),
    "pooling with top": (lambda: get_model(B0, pooling="avg"), ValueError, "pooling"),
    "pooling unknown": (lambda: get_model(B0, include_top=False, pooling="mean"), ValueError, "pooling"),
    "num_classes without top": (lambda: get_model(B0, include_top=False, num_classes=5), ValueError, "num_classes"),
    "features_only with num_classes": (lambda: get_model(B0, features_only=True, num_classes=5), ValueError, "num_classes"),
    "stage i/o disagree": (
        lambda: get_model(B0, blocks=["r1_k3_s1_e1_i32_o16", "r1_k3_s2_e6_i24_o24"]), ValueError, "blocks[1]"
    ),
    "blocks one string": (lambda: get_model(B0, blocks="r1_k3_s1_e1_i32_o16"), ValueError, "blocks"),
    "classifier_activation bogus": (lambda: get_model(B0, classifier_activation="bogus"), ValueError, "classifier_activation"),
    "weights ImageNet": (lambda: get_model(B0, weights="ImageNet"), ValueError, "weights='imagenet'"),
    "weights missing file": (lambda: get_model(B0, weights="no_such.weights.h5"), FileNotFoundError, "no_such.weights.h5"),
    "weights number": (lambda: get_model(B0, weights=1), TypeError, "weights"),
    "imagenet with overrides": (lambda: get_model(B0, weights="imagenet", width=0.5), ValueError, "overrides"),
    "imagenet unpublished": (lambda: get_model("efficientnet-b8", weights="imagenet"), ValueError, "No ImageNet weights"),
    "input_shape int": (lambda: get_model(B0, input_shape=224), ValueError, "input_shape"),
    "input_shape str entry": (lambda: get_model(B0, input_shape=("224", 224, 3)), TypeError, "input_shape[0]"),
    "input_shape 2-D": (lambda: get_model(B0, input_shape=(224, 224)), ValueError, "input_shape"),
    "survival_prob str": (lambda: get_model(B0, survival_prob="0.8"), TypeError, "survival_prob"),
    "survival_prob 0": (lambda: get_model(B0, survival_prob=0.0), ValueError, "survival_prob"),
    "include_top str": (lambda: get_model(B0, include_top="no"), ValueError, "include_top"),
    "unknown option": (lambda: get_model(B0, num_class=5), TypeError, "num_class"),
    "name not str": (lambda: get_model(5), TypeError, "Model name"),
    "name unknown": (lambda: get_model("efficientnet-b9"), ValueError, "Did you mean"),
    "model name empty": (lambda: get_model(B0, name=""), ValueError, "name"),
    "constructor positional": (lambda: efficientnet_tf.EfficientNetB0(5), TypeError, "EfficientNetB0(num_classes=5)"),
    "count_flops size str": (lambda: count_flops(B0, image_size="224"), TypeError, "image_size"),
    "count_flops size 0": (lambda: count_flops(B0, image_size=(224, 0)), ValueError, "image_size[1]"),
    "count_flops not a model": (lambda: count_flops(object()), TypeError, "keras.Model"),
}
SCALING_CASES = {
    "phi 200": (lambda: compound_scaling(200), ValueError, "phi"),
    "phi nan": (lambda: compound_scaling(float("nan")), ValueError, "phi"),
    "phi str": (lambda: compound_scaling("1"), TypeError, "phi"),
    "alpha 0": (lambda: compound_scaling(1, alpha=0), ValueError, "alpha"),
    "beta negative": (lambda: compound_scaling(1, beta=-1.1), ValueError, "beta"),
    "gamma 0": (lambda: compound_scaling(1, gamma=0.0), ValueError, "gamma"),
    "base_resolution float": (lambda: compound_scaling(1, base_resolution=224.5), TypeError, "base_resolution"),
}


def _datasets(**overrides):
    args = dict(family="efficientnet", image_size=16, batch_size=4)
    return make_datasets(MISSING_FOLDER, **{**args, **overrides})


PIPELINE_CASES = {
    "batch_size str": (lambda: _datasets(batch_size="8"), TypeError, "batch_size"),
    "batch_size float": (lambda: _datasets(batch_size=2.5), TypeError, "batch_size"),
    "batch_size None": (lambda: _datasets(batch_size=None), TypeError, "batch_size"),
    "batch_size 0": (lambda: _datasets(batch_size=0), ValueError, "batch_size"),
    "image_size str": (lambda: _datasets(image_size="64"), TypeError, "image_size"),
    "image_size 8.9": (lambda: _datasets(image_size=8.9), TypeError, "image_size"),
    "image_size 2**40": (lambda: _datasets(image_size=2**40), ValueError, "image_size"),
    "eval_size 0": (lambda: _datasets(eval_size=0), ValueError, "eval_size"),
    "eval_size 2": (lambda: _datasets(eval_size=2), ValueError, "eval_size"),
    "eval_batch_size 0": (lambda: _datasets(eval_batch_size=0), ValueError, "eval_batch_size"),
    "randaug_magnitude negative": (lambda: _datasets(randaug_magnitude=-1), ValueError, "randaug_magnitude"),
    "randaug_magnitude nan": (lambda: _datasets(randaug_magnitude=float("nan")), ValueError, "randaug_magnitude"),
    "mixup_alpha inf": (lambda: _datasets(mixup_alpha=float("inf")), ValueError, "mixup_alpha"),
    "cutmix_alpha str": (lambda: _datasets(cutmix_alpha="1"), TypeError, "cutmix_alpha"),
    "randaug_layers negative": (lambda: _datasets(randaug_layers=-1), ValueError, "randaug_layers"),
    "shuffle_buffer 0": (lambda: _datasets(shuffle_buffer=0), ValueError, "shuffle_buffer"),
    "augmentation unknown": (lambda: _datasets(augmentation="mixup"), ValueError, "augmentation"),
    "family unknown": (lambda: _datasets(family="resnet"), ValueError, "family"),
    "state wrong type": (lambda: _datasets(state={"image_size": 16}), TypeError, "state"),
    "knob ignored with state": (lambda: _datasets(state=AugmentState(16), mixup_alpha=0.2), ValueError, "mixup_alpha"),
    "source None": (lambda: make_datasets(None, family="efficientnet", image_size=16, batch_size=4), TypeError, "source"),
    "mistyped folder": (lambda: _datasets(), ValueError, f"Image folder {MISSING_FOLDER!r} does not exist"),
    "mistyped relative folder": (
        lambda: make_datasets(os.path.join("tests", "no_such_folder_xyz"), family="efficientnet", image_size=16, batch_size=4),
        ValueError, "does not exist",
    ),
    "TFDS name with a config is not a folder": (
        lambda: make_datasets("imagenet_v2/matched-frequency", family="efficientnet", image_size=16, batch_size=4,
                              data_dir=os.devnull),
        ValueError, "TFDS dataset 'imagenet_v2/matched-frequency' is not prepared",
    ),
    "mistyped home folder": (
        lambda: make_datasets("~/no_such_folder_xyz", family="efficientnet", image_size=16, batch_size=4),
        ValueError, "does not exist",
    ),
    "folder validation_fraction": (lambda: folder_source(".", validation_fraction=1.5), ValueError, "validation_fraction"),
    "folder path type": (lambda: folder_source(3), TypeError, "train_dir"),
}
STATE_CASES = {
    "mixup_alpha inf": (lambda s: s.assign(mixup_alpha=float("inf")), ValueError, "mixup_alpha"),
    "randaug_magnitude nan": (lambda s: s.assign(randaug_magnitude=float("nan")), ValueError, "randaug_magnitude"),
    "image_size 2**40": (lambda s: s.assign(image_size=2**40), ValueError, "image_size"),
    "image_size 8.9": (lambda s: s.assign(image_size=8.9), TypeError, "image_size"),
    "image_size str": (lambda s: s.assign(image_size="64"), TypeError, "image_size"),
    "image_size 4": (lambda s: s.assign(image_size=4), ValueError, "image_size"),
    "unknown knob after a good one": (lambda s: s.assign(image_size=64, bogus=1), ValueError, "bogus"),
    "good knob then bad": (lambda s: s.assign(image_size=64, cutmix_alpha=-1), ValueError, "cutmix_alpha"),
    "constructor size": (lambda s: AugmentState(2**40), ValueError, "image_size"),
    "constructor alpha": (lambda s: AugmentState(32, mixup_alpha=float("inf")), ValueError, "mixup_alpha"),
    "constructor magnitude": (lambda s: AugmentState(32, randaug_magnitude=-3), ValueError, "randaug_magnitude"),
    "constructor size str": (lambda s: AugmentState("32"), TypeError, "image_size"),
}


@pytest.fixture
def no_model_building(monkeypatch):
    def tripwire(*args, **kwargs):
        raise AssertionError("a model was being built before the arguments were checked")

    monkeypatch.setattr(keras, "Input", tripwire)


@pytest.mark.parametrize("case", list(MODEL_CASES) + list(SCALING_CASES))
def test_bad_model_arguments(case, no_model_building):
    call, kind, text = {**MODEL_CASES, **SCALING_CASES}[case]
    with pytest.raises(Exception) as error:
        call()
    assert_one_line_error(error, kind, text)


@pytest.mark.parametrize("case", list(PIPELINE_CASES))
def test_bad_pipeline_arguments_fail_before_the_source_is_read(case):
    call, kind, text = PIPELINE_CASES[case]
    with pytest.raises(Exception) as error:
        call()
    assert_one_line_error(error, kind, text)


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_bad_augment_state_values_change_nothing(case):
    state = AugmentState(32, randaug_magnitude=5, mixup_alpha=0.2)
    before = state.values()
    call, kind, text = STATE_CASES[case]
    with pytest.raises(Exception) as error:
        call(state)
    assert_one_line_error(error, kind, text)
    assert state.values() == before


def test_numpy_scalars_are_accepted_as_numbers():
    state = AugmentState(np.int64(32), randaug_magnitude=np.float32(5), mixup_alpha=np.float64(0.2))
    state.assign(image_size=np.int32(40), cutmix_alpha=np.float32(1.0))
    assert state.values() == {"image_size": 40, "randaug_magnitude": 5.0, "mixup_alpha": pytest.approx(0.2), "cutmix_alpha": 1.0}
    model = get_model(
        B0, num_classes=np.int64(3), width=np.float32(0.25), depth=np.float64(0.25),
        survival_prob=np.float32(0.9), input_shape=(np.int64(32), 32, 3),
    )  # fmt: skip
    assert model.output_shape == (None, 3) and model.input_shape == (None, 32, 32, 3)
    assert compound_scaling(np.int64(1)) == (1.1, 1.2, 256)


def test_constructor_names_the_model_and_get_model_takes_name_keyword():
    assert efficientnet_tf.EfficientNetB0(name="mynet", **TINY).name == "mynet"
    assert get_model(B0, name="other", **TINY).name == "other"
    assert efficientnet_tf.EfficientNetV2S.__name__ == "EfficientNetV2S"


def test_batch_larger_than_the_training_set_is_refused():
    small = synthetic_source(num_classes=2, resolution=16, train_size=10, eval_size=4)
    with pytest.raises(ValueError, match=r"batch_size 16 is larger than the 10 training examples.*no batch; pass batch_size=10 or smaller"):
        make_datasets(small, family="efficientnet", image_size=16, batch_size=16)
    train, _, _ = make_datasets(small, family="efficientnet", image_size=16, batch_size=10, augmentation=None)
    assert [int(x.shape[0]) for x, _ in train] == [10]


def test_count_flops_matches_keras_applications_and_handles_valid_padding_and_rectangles():
    reference = keras.applications.EfficientNetB0(weights=None)  # ZeroPadding2D + valid-padding strided convs
    ours = get_model(B0)
    assert count_flops(reference) == count_flops(ours, 224)
    assert count_flops(reference) / 1e9 == pytest.approx(0.386, rel=0.01)
    # valid padding, a stride, a non-square input and a Dense on a 3-D feature map, counted by hand
    net = keras.Sequential([
        keras.Input((33, 20, 3)), keras.layers.Conv2D(8, (3, 5), strides=2, padding="valid"),
        keras.layers.DepthwiseConv2D(3, padding="same"), keras.layers.Dense(4),
    ])  # fmt: skip
    out_h, out_w = (33 - 3) // 2 + 1, (20 - 5) // 2 + 1
    assert count_flops(net) == out_h * out_w * (3 * 5 * 3 * 8 + 3 * 3 * 8 + 8 * 4)
    # 224 x 128 px: every stride divides both sides, so the convolutions cost 128/224 of 224 x 224.
    assert count_flops(ours, (224, 128)) == pytest.approx(count_flops(ours, 224) * 128 / 224, rel=0.01)
    unknown = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.SeparableConv2D(4, 3)])
    with pytest.raises(ValueError, match="SeparableConv2D.*none is given"):
        count_flops(unknown)


def test_summary_command_help_and_streamed_rows():
    help_run = subprocess.run(
        [sys.executable, "-m", "efficientnet_tf.summary", "--help"], capture_output=True, text=True, timeout=120
    )
    assert help_run.returncode == 0 and help_run.stdout.startswith("usage: python -m efficientnet_tf.summary")
    from efficientnet_tf.summary import summary_rows

    with pytest.raises(ValueError, match="efficientnet-b9"):
        summary_rows(["efficientnet-lite0", "efficientnet-b9"])  # refused before the first build
    rows = summary_rows(["efficientnet-lite0"])
    row = next(rows)
    assert not isinstance(rows, list) and (row[0], row[2]) == ("efficientnet-lite0", 4_652_008)

