"""Every RandAugment op at magnitudes 0-28, and every AutoAugment v0 (op, level),
against golden outputs of the official ops.

Sharpness has no stored digest: its smoothing is a depthwise convolution whose
summation order is the CPU's (oneDNN on AVX-512 differs from AVX2), so it is
checked against the official op run here and against the exact smoothing,
which leaves the kernel only the choice at ties (`exact_sharpness`).

How the golden values were made: the official google/automl
`efficientnetv2/autoaugment.py` op semantics (uint8 TF ops; `level_to_arg` in
Python floats; tensorflow_addons' transform with its wrap/unwrap, reproduced with
`ImageProjectiveTransformV3`, fill 0 then 128) were run once on TF 2.21 on
`official_input()` and each uint8 output's SHA-256 (first 16 hex digits) was
recorded here. Ops with a random sign have two goldens, one per sign; every
image must match one of them. Cutout's centre is random, so it is checked
against the official rectangle rule for every possible centre instead.
"""

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.data import augment, image_ops

MAGNITUDES = (0, 2, 5, 10, 15, 20, 28)
COPIES = 8  # images per call: the random signs differ between copies


def official_input() -> np.ndarray:
    """A fixed 24x32 RGB image spread over all 256 levels (a multiplicative hash)."""
    i = np.arange(24 * 32 * 3, dtype=np.uint64)
    return (((i * 2654435761) % 2**32 >> 13) % 256).astype(np.uint8).reshape(24, 32, 3)


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image, np.uint8).tobytes()).hexdigest()[:16]


RANDAUGMENT_GOLDEN = {
    "AutoContrast@0": {'22b238ff409bbe0d'},
    "AutoContrast@2": {'22b238ff409bbe0d'},
    "AutoContrast@5": {'22b238ff409bbe0d'},
    "AutoContrast@10": {'22b238ff409bbe0d'},
    "AutoContrast@15": {'22b238ff409bbe0d'},
    "AutoContrast@20": {'22b238ff409bbe0d'},
    "AutoContrast@28": {'22b238ff409bbe0d'},
    "Equalize@0": {'9ca65409ca80cda4'},
    "Equalize@2": {'9ca65409ca80cda4'},
    "Equalize@5": {'9ca65409ca80cda4'},
    "Equalize@10": {'9ca65409ca80cda4'},
    "Equalize@15": {'9ca65409ca80cda4'},
    "Equalize@20": {'9ca65409ca80cda4'},
    "Equalize@28": {'9ca65409ca80cda4'},
    "Invert@0": {'9e6ca1da638533ec'},
    "Invert@2": {'9e6ca1da638533ec'},
    "Invert@5": {'9e6ca1da638533ec'},
    "Invert@10": {'9e6ca1da638533ec'},
    "Invert@15": {'9e6ca1da638533ec'},
    "Invert@20": {'9e6ca1da638533ec'},
    "Invert@28": {'9e6ca1da638533ec'},
    "Rotate@0": {'22b238ff409bbe0d'},
    "Rotate@2": {'687500f9f2f5fc24', '97cae4368e7ae4aa'},
    "Rotate@5": {'0d216798591920a1', 'f3fb7b6134198337'},
    "Rotate@10": {'814727b5de02fcc4', 'a3633962b50164b4'},
    "Rotate@15": {'696ea845da9a2b7d', 'f76af9254bb594a4'},
    "Rotate@20": {'e1760e2ad64e3c85', 'fb62ce81de11f369'},
    "Rotate@28": {'5ac60510e88636eb', 'b6f48a99a5515903'},
    "Posterize@0": {'586240e004fcfb0a'},
    "Posterize@2": {'586240e004fcfb0a'},
    "Posterize@5": {'5310dbeee0126099'},
    "Posterize@10": {'c8793b936fb03896'},
    "Posterize@15": {'f55c996ab79f0760'},
    "Posterize@20": {'22b238ff409bbe0d'},
    "Posterize@28": {'586240e004fcfb0a'},
    "Solarize@0": {'9e6ca1da638533ec'},
    "Solarize@2": {'68aaa438a9f294a7'},
    "Solarize@5": {'e3cd50c91aa366f8'},
    "Solarize@10": {'9e6ca1da638533ec'},
    "Solarize@15": {'e3cd50c91aa366f8'},
    "Solarize@20": {'9e6ca1da638533ec'},
    "Solarize@28": {'65efdefb001a21bd'},
    "Color@0": {'f6baaf7d93206118'},
    "Color@2": {'a25ae771fb852d17'},
    "Color@5": {'22b238ff409bbe0d'},
    "Color@10": {'42206ce315c8a55e'},
    "Color@15": {'c640cbb3cd8d59aa'},
    "Color@20": {'d74dd25802f8f449'},
    "Color@28": {'92c693d576e907ef'},
    "Contrast@0": {'2bf3f723ec19a04c'},
    "Contrast@2": {'3c7347ad467ae258'},
    "Contrast@5": {'22b238ff409bbe0d'},
    "Contrast@10": {'1084e841cc8441f8'},
    "Contrast@15": {'eb6fd380eb215667'},
    "Contrast@20": {'60a0191b64f17944'},
    "Contrast@28": {'735344590db8ff91'},
    "Brightness@0": {'86d5a2b20390a933'},
    "Brightness@2": {'c8f1342d1729d63d'},
    "Brightness@5": {'22b238ff409bbe0d'},
    "Brightness@10": {'61cd2ef44f09f32e'},
    "Brightness@15": {'9a6766f10333261a'},
    "Brightness@20": {'b0a26b0585e86d84'},
    "Brightness@28": {'3c0769320fcbb1ca'},
    "ShearX@0": {'22b238ff409bbe0d'},
    "ShearX@2": {'591c0903f1fab391', 'df2df1892e3e5789'},
    "ShearX@5": {'7091166d2caf7f8c', '78c3dac66b254ecb'},
    "ShearX@10": {'285f6d2f9d615c16', '4e08bfa5ada9609b'},
    "ShearX@15": {'7e136546e1791dff', '890e1d291d1ed356'},
    "ShearX@20": {'96b5b168d96138cd', 'a8fa9c8f48075ed8'},
    "ShearX@28": {'2de436f17f6aaa3e', '349a51b2fcc19c97'},
    "ShearY@0": {'22b238ff409bbe0d'},
    "ShearY@2": {'ad2c770b9c4bc622', 'bba1b1fd93f2f4a9'},
    "ShearY@5": {'90ad2048727cd3dc', 'e7ddcd85569e4319'},
    "ShearY@10": {'7caae7dc7a812824', 'ec294cc1e532f460'},
    "ShearY@15": {'6e5bdc6b81c6b19c', '85baa4de90c1a045'},
    "ShearY@20": {'abbe9b2850c0c2d7', 'fe397ad19bd0a03a'},
    "ShearY@28": {'756964f35922714b', '7b30c7404821eb63'},
    "TranslateX@0": {'22b238ff409bbe0d'},
    "TranslateX@2": {'d0312890e9740aac', 'f71c009ba7ed6eb4'},
    "TranslateX@5": {'dea313a03db46a22'},
    "TranslateX@10": {'dea313a03db46a22'},
    "TranslateX@15": {'dea313a03db46a22'},
    "TranslateX@20": {'dea313a03db46a22'},
    "TranslateX@28": {'dea313a03db46a22'},
    "TranslateY@0": {'22b238ff409bbe0d'},
    "TranslateY@2": {'2171163354714c8e', '85215c951790dda3'},
    "TranslateY@5": {'dea313a03db46a22'},
    "TranslateY@10": {'dea313a03db46a22'},
    "TranslateY@15": {'dea313a03db46a22'},
    "TranslateY@20": {'dea313a03db46a22'},
    "TranslateY@28": {'dea313a03db46a22'},
    "SolarizeAdd@0": {'22b238ff409bbe0d'},
    "SolarizeAdd@2": {'2e146907ef2cc3fa'},
    "SolarizeAdd@5": {'3a8720f0aaa42435'},
    "SolarizeAdd@10": {'4571d123867fa382'},
    "SolarizeAdd@15": {'9dace33fa267740a'},
    "SolarizeAdd@20": {'4506af2f18115933'},
    "SolarizeAdd@28": {'efaf4351783e1629'},
}

AUTOAUGMENT_GOLDEN = {
    "AutoContrast@2": {'22b238ff409bbe0d'},
    "AutoContrast@7": {'22b238ff409bbe0d'},
    "Color@0": {'f6baaf7d93206118'},
    "Color@1": {'ab6baed1624ecda4'},
    "Color@4": {'637f9023e1c18546'},
    "Color@6": {'61afe957ebbe08be'},
    "Color@7": {'87bcad383626fb1d'},
    "Color@9": {'bc206197e8b0f714'},
    "Equalize@0": {'9ca65409ca80cda4'},
    "Equalize@1": {'9ca65409ca80cda4'},
    "Equalize@2": {'9ca65409ca80cda4'},
    "Equalize@3": {'9ca65409ca80cda4'},
    "Equalize@4": {'9ca65409ca80cda4'},
    "Equalize@7": {'9ca65409ca80cda4'},
    "Equalize@8": {'9ca65409ca80cda4'},
    "Equalize@9": {'9ca65409ca80cda4'},
    "Invert@9": {'9e6ca1da638533ec'},
    "Posterize@2": {'586240e004fcfb0a'},
    "Posterize@6": {'5310dbeee0126099'},
    "Rotate@0": {'22b238ff409bbe0d'},
    "Rotate@2": {'687500f9f2f5fc24', '97cae4368e7ae4aa'},
    "Rotate@5": {'0d216798591920a1', 'f3fb7b6134198337'},
    "Rotate@7": {'29129f70e568116a', 'fffe59089310bd9a'},
    "Rotate@8": {'22d61e82f7ef1fd6', '843f5427dccbbd66'},
    "Rotate@9": {'549381cb1f4c1d5a', 'ea32312d55f78d7a'},
    "ShearX@0": {'22b238ff409bbe0d'},
    "ShearX@9": {'43e94ea0918e2a6c', 'cb84a2518f1ed16f'},
    "ShearY@0": {'22b238ff409bbe0d'},
    "ShearY@3": {'4f8fe5800708001c', 'c575ec8c1523ee5a'},
    "ShearY@4": {'01c3c9b044b015c1', '0fa45470d5516d6c'},
    "ShearY@7": {'587ee0d9115f3302', 'dead3790be512226'},
    "Solarize@2": {'68aaa438a9f294a7'},
    "Solarize@3": {'d9cd4efb12a37cb6'},
    "Solarize@4": {'2284dcba70d23c3e'},
    "Solarize@8": {'65efdefb001a21bd'},
    "Solarize@10": {'9e6ca1da638533ec'},
    "SolarizeAdd@3": {'13e755b8a4c4b9c6'},
    "SolarizeAdd@7": {'c13a4375e2c591ab'},
    "TranslateY@9": {'dea313a03db46a22'},
}


def _apply(autoaugment_consts: bool):
    consts = augment.AUTOAUGMENT_CONSTS if autoaugment_consts else augment.RANDAUGMENT_CONSTS
    return lambda x, i, m: augment.apply_ops(x, i, m, consts)


TRACED = {flag: tf.function(_apply(flag)) for flag in (False, True)}


def narrow_input() -> np.ndarray:
    """official_input() squeezed into a different range per channel, so AutoContrast has work to do."""
    return (official_input().astype(int) * 3 // 5 + np.array([10, 60, 90])).astype(np.uint8)


def outputs(cases: list[tuple[str, float]], autoaugment_consts: bool = False, image=None) -> list[list[np.ndarray]]:
    """COPIES outputs of each (op, level), run as the pipeline runs them (in a tf.data map) and in
    a tf.function: graph rewrites differ between the two, and each must give the official bits."""
    image = official_input() if image is None else image
    images = np.repeat(np.repeat(image[None, None], COPIES, 1), len(cases), 0)
    op_index = np.array([[augment.RANDAUGMENT_OPS.index(op)] * COPIES for op, _ in cases], np.int32)
    levels = np.array([[level] * COPIES for _, level in cases], np.float32)
    piped = tf.data.Dataset.from_tensor_slices((images, op_index, levels)).map(_apply(autoaugment_consts))
    results = []
    for args, in_pipeline in zip(zip(images, op_index, levels), piped):
        traced = TRACED[autoaugment_consts](*args)
        assert traced.dtype == in_pipeline.dtype == tf.uint8
        results.append([*in_pipeline.numpy(), *traced.numpy()])
    return results


def test_input_is_the_recorded_one():
    assert digest(official_input()) == "22b238ff409bbe0d"


def mismatches(golden: dict, autoaugment_consts: bool, op: str | None = None) -> list[str]:
    keys = [key for key in golden if op in (None, key.split("@")[0])]
    cases = [(key.split("@")[0], float(key.split("@")[1])) for key in keys]
    results = outputs(cases, autoaugment_consts)
    return sorted({key for key, images in zip(keys, results) for image in images if digest(image) not in golden[key]})


@pytest.mark.parametrize("op", [op for op in augment.RANDAUGMENT_OPS if op not in ("Cutout", "Sharpness")])
def test_randaugment_op_matches_official_at_every_magnitude(op):
    assert mismatches(RANDAUGMENT_GOLDEN, False, op) == []


def test_per_channel_ops_match_official_on_a_narrow_range():
    """official_input() spans 0-255 in every channel, where AutoContrast is the identity."""
    golden = {"AutoContrast": "722528bfadb46ecc", "Equalize": "4ef5f9da5b4081a7"}
    assert digest(narrow_input()) == "29ae1c03f7f6f554"
    for op, expected in golden.items():
        assert {digest(image) for image in outputs([(op, 5)], image=narrow_input())[0]} == {expected}, op


def test_autoaugment_policy_ops_match_official():
    assert mismatches(AUTOAUGMENT_GOLDEN, True) == []


def official_cutouts(image: np.ndarray, pad: int):
    """Every output the official Cutout can give: a 128 square of half-side `pad` at any centre, clipped."""
    h, w = image.shape[:2]
    for cy in range(h):
        for cx in range(w):
            out = image.copy()
            out[max(0, cy - pad) : min(h, cy + pad), max(0, cx - pad) : min(w, cx + pad)] = 128
            yield out


def test_cutout_matches_official_rule():
    for level in MAGNITUDES:
        pad = int(level / 10 * augment.RANDAUGMENT_CONSTS["cutout"])
        candidates = {digest(c) for c in official_cutouts(official_input(), pad)}
        assert all(digest(image) in candidates for image in outputs([("Cutout", level)])[0]), level


def pixel_op(name, values, level, pil_contrast=False, size=None):
    """One pixel op on gray pixels holding `values` in a row, or tiled to `size`."""
    row = np.repeat(np.asarray(values, np.uint8)[:, None], 3, 1)[None]
    image = row if size is None else np.resize(row, size + (3,))
    op = image_ops.contrast_pil if pil_contrast else image_ops.PIXEL_OPS[name]
    return op(tf.constant(image[None]), tf.constant([float(level)]), augment.RANDAUGMENT_CONSTS).numpy()[0]


VALUES = [0, 1, 127, 128, 200, 255]


@pytest.mark.parametrize(
    "level,expected",
    [
        (0, [0, 0, 0, 128, 128, 128]),  # 0 bits: a uint8 shift by 8 is clamped to 7
        (2, [0, 0, 0, 128, 128, 128]),  # int(0.8) = 0 bits
        (4.9, [0, 0, 0, 128, 128, 128]),  # 1 bit: shift 7
        (5, [0, 0, 64, 128, 192, 192]),  # 2 bits
        (20, VALUES),  # 8 bits: unchanged
        (22.5, [0, 0, 0, 128, 128, 128]),  # 9 bits: shift -1 wraps to 255, clamped to 7
        (28, [0, 0, 0, 128, 128, 128]),
    ],
)
def test_posterize_shift_wraps_like_uint8(level, expected):
    assert pixel_op("Posterize", VALUES, level)[0, :, 0].tolist() == expected


@pytest.mark.parametrize(
    "level,threshold",
    [(0, 0), (5, 128), (9.99, 255), (10, 0), (15, 128), (20, 0), (28, 204)],  # int(level * 25.6) mod 256
)
def test_solarize_threshold_wraps_like_uint8(level, threshold):
    expected = [255 - v if v >= threshold else v for v in VALUES]
    assert pixel_op("Solarize", VALUES, level)[0, :, 0].tolist() == expected


@pytest.mark.parametrize("size,target", [((16, 16), 1), ((128, 128), 64), ((224, 224), 196), ((256, 256), 255)])
def test_contrast_blends_towards_pixel_count_over_256(size, target):
    """Level 0 is factor 0.1: a black image becomes int(0.9 * min(H * W / 256, 255))."""
    out = pixel_op("Contrast", [0], 0, size=size)
    assert np.unique(out).tolist() == [int(0.9 * target)]


def test_pil_contrast_option_blends_towards_mean_gray():
    out = pixel_op("Contrast", [0, 200], 0, pil_contrast=True, size=(224, 224))
    assert np.unique(out).tolist() == [90, 110]  # mean gray 100: 100 + 0.1 * (x - 100)


def reference_sharpness(images: np.ndarray, factor: float) -> np.ndarray:
    """The official Sharpness, image by image: a depthwise convolution, truncated to uint8, the border kept, blended."""
    kernel = tf.tile((tf.constant([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13.0)[:, :, None, None], [1, 1, 3, 1])
    out = []
    for image in images:
        x = tf.constant(image, tf.float32)
        smooth = tf.nn.depthwise_conv2d(x[None], kernel, [1, 1, 1, 1], "VALID")[0]
        degenerate = image.copy()
        degenerate[1:-1, 1:-1] = tf.cast(tf.clip_by_value(smooth, 0.0, 255.0), tf.uint8).numpy()
        d = tf.constant(degenerate, tf.float32)
        out.append(tf.cast(tf.clip_by_value(d + factor * (x - d), 0.0, 255.0), tf.uint8).numpy())
    return np.stack(out)


def exact_sharpness(images: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Sharpness from the smoothing's exact value, in integers: (result, result where the smoothing ties).

    The smoothing is S / 13 with S the integer weighted sum. When 13 does not
    divide S it is at least 1/13 from a whole number, far beyond float32's
    rounding of nine products (under 3e-4 here), so every summation order
    floors it alike. When 13 divides S the float sum lands on either side of
    S / 13, and the kernel's order picks S / 13 or S / 13 - 1: the second
    array is the result with the lower one. The blend turns that one level
    into at most ceil(|1 - factor|) levels.
    """
    x = images.astype(np.int64)
    h, w = x.shape[1] - 2, x.shape[2] - 2
    total = sum(x[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) + 4 * x[:, 1:-1, 1:-1]
    results = []
    for smooth in (total // 13, total // 13 - (total % 13 == 0)):
        degenerate = images.copy()
        degenerate[:, 1:-1, 1:-1] = smooth
        d, f = degenerate.astype(np.float32), np.float32(factor)
        results.append(np.clip(d + f * (images.astype(np.float32) - d), 0, 255).astype(np.uint8))
    return results[0], results[1]


@pytest.mark.parametrize("level", MAGNITUDES)
def test_sharpness_matches_the_exact_smoothing_up_to_ties(level):
    """Kernel-independent golden: away from ties the official smoothing has one right answer."""
    images = np.stack([official_input(), narrow_input(), np.random.default_rng(level).integers(0, 4, (24, 32, 3)) * 13])
    images = images.astype(np.uint8)
    factor = float(np.float32(level / 10 * 1.8 + 0.1))
    piped = tf.data.Dataset.from_tensors(images).map(lambda x: image_ops.sharpness(x, tf.fill([3], float(level)), {}))
    ours = next(iter(piped)).numpy()
    exact, tie_low = exact_sharpness(images, factor)
    assert np.all((ours == exact) | (ours == tie_low))
    tolerance = int(np.ceil(abs(1 - factor)))
    assert np.abs(exact.astype(int) - tie_low.astype(int)).max() <= tolerance


@pytest.mark.parametrize("shape", [(3, 37, 41), (2, 224, 224)])
def test_fast_ops_equal_the_official_tf_ops_on_random_images(shape):
    """Sharpness (batched) and the geometric transform (one gather) against the official
    ops, image by image, on this machine's kernels: every bit, on random images and on
    low-entropy ones where the smoothing lands exactly on whole numbers, eagerly and
    inside a tf.data map as the pipeline runs them."""
    rng = np.random.default_rng(sum(shape))
    levels = (2.0, 10.0, 28.0)
    for images in (rng.integers(0, 256, shape + (3,)), rng.integers(0, 4, shape + (3,)) * 13):
        images = tf.constant(images.astype(np.uint8))
        sharpened = [image_ops.sharpness(images, tf.fill([shape[0]], level), {}) for level in levels]
        piped = tf.data.Dataset.from_tensor_slices(tf.constant(levels)).map(
            lambda level: image_ops.sharpness(images, tf.fill([shape[0]], level), {}))
        for level, eager, in_pipeline in zip(levels, sharpened, piped):
            official = reference_sharpness(images.numpy(), float(np.float32(level / 10 * 1.8 + 0.1)))
            np.testing.assert_array_equal(eager.numpy(), official)
            np.testing.assert_array_equal(in_pipeline.numpy(), official)
        cases = [(name, fn(tf.fill([shape[0]], level), augment.AUTOAUGMENT_CONSTS, shape[1], shape[2]))
                 for level in levels for name, fn in image_ops.GEOMETRIC_OPS.items()]  # fmt: skip
        piped = tf.data.Dataset.from_tensor_slices(tf.stack([m for _, m in cases])).map(
            lambda matrices: image_ops.transform(images, matrices))
        for (name, matrices), in_pipeline in zip(cases, piped):
            official = tf.raw_ops.ImageProjectiveTransformV3(
                images=images, transforms=matrices, output_shape=shape[1:], fill_value=128.0,
                interpolation="NEAREST", fill_mode="CONSTANT",
            ).numpy()  # fmt: skip
            np.testing.assert_array_equal(image_ops.transform(images, matrices).numpy(), official, name)
            np.testing.assert_array_equal(in_pipeline.numpy(), official, name)
