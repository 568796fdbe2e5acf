"""The "fine" synthetic variant: its label needs the full resolution.

Classes are color family x stripe orientation, with stripes of period 1/64 of
the image side. A simple orientation statistic (gradient energy along y
against along x) tells the orientation at 192 px and not at half of it (the
same scenes, same seeds, rendered at 96 px), while the color family, the
label's other half, is there at both sizes.
"""

import colorsys

import numpy as np
import pytest

from efficientnet_tf.data import synthetic
from efficientnet_tf.data.synthetic import class_names, render_split, synthetic_source


def orientation_statistic(images: np.ndarray) -> np.ndarray:
    """log(gradient energy along y / along x) of the gray image: > 0 for horizontal stripes."""
    gray = images.astype(np.float32).mean(-1) / 255
    along_y = ((gray[:, 1:, :] - gray[:, :-1, :]) ** 2).mean((1, 2))
    along_x = ((gray[:, :, 1:] - gray[:, :, :-1]) ** 2).mean((1, 2))
    return np.log(along_y / along_x)


def orientation_accuracy(resolution: int, n: int = 100) -> float:
    images, labels = render_split(n, 10, resolution, seed=0, stream=0, variant="fine")
    horizontal = labels // 5 == synthetic.ORIENTATIONS.index("horizontal")
    return float(np.mean((orientation_statistic(images) > 0) == horizontal))


def family_accuracy(resolution: int, n: int = 50) -> float:
    """Nearest family hue of the image's saturated pixels (background and clutter are desaturated)."""
    images, labels = render_split(n, 10, resolution, seed=0, stream=0, variant="fine")
    centers = np.array(list(synthetic.FAMILIES.values()))
    right = 0
    for image, label in zip(images, labels):
        hsv = np.array([colorsys.rgb_to_hsv(*p) for p in image.reshape(-1, 3) / 255.0])
        hue = hsv[hsv[:, 1] > 0.6, 0]
        angle = np.angle(np.exp(2j * np.pi * hue).mean()) / (2 * np.pi) % 1.0  # circular mean
        distance = np.abs((angle - centers + 0.5) % 1.0 - 0.5)
        right += int(np.argmin(distance) == label % 5)
    return right / len(labels)


def test_fine_orientation_is_separable_at_full_resolution_not_at_half():
    assert orientation_accuracy(192) >= 0.97
    assert orientation_accuracy(96) <= 0.65  # chance is 0.5
    assert orientation_accuracy(64) <= 0.65


def test_fine_color_family_is_there_at_any_resolution():
    # So a half-size image carries half of the label: about 50% top-1 at most with 10 classes.
    assert family_accuracy(192) >= 0.95
    assert family_accuracy(48) >= 0.95


def test_fine_is_the_same_scene_at_every_size_and_deterministic_per_seed():
    a, labels = render_split(10, 10, 160, seed=4, stream=0, variant="fine")
    b, _ = render_split(10, 10, 160, seed=4, stream=0, variant="fine")
    c, _ = render_split(10, 10, 160, seed=5, stream=0, variant="fine")
    held, _ = render_split(10, 10, 160, seed=4, stream=1, variant="fine")
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, held)
    assert list(labels) == list(range(10))
    assert np.array_equal(render_split(3, 10, 40, 3, 0)[0], render_split(3, 10, 40, 3, 0, variant="shapes")[0])
    # Half size: the same scene without the stripes, so its 2x2-block averages match a flat object (close to).
    small, _ = render_split(10, 10, 80, seed=4, stream=0, variant="fine")
    big, _ = render_split(10, 10, 160, seed=4, stream=0, variant="fine")
    blocks = big.astype(np.float32).reshape(10, 80, 2, 80, 2, 3).mean((2, 4))
    assert np.median(np.abs(blocks - small)) < 8  # gray levels; noise and edges only


def test_fine_class_names_and_limits():
    names = class_names(10, "fine")
    assert names[0] == "red_horizontal" and names[5] == "red_vertical" and len(set(names)) == 10
    with pytest.raises(ValueError, match="2 to 10"):
        class_names(11, "fine")
    with pytest.raises(ValueError, match="variant"):
        class_names(10, "coarse")
    source = synthetic_source(num_classes=4, resolution=144, train_size=8, eval_size=4, variant="fine")
    assert source.name == "synthetic-fine4" and source.class_names == class_names(4, "fine")
