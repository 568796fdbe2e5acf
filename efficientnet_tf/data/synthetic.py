"""A procedural image dataset that needs no download: "shapes" and its harder variant "fine".

Each class is a shape kind in a saturated color family (e.g. "red_circle"),
drawn large at a random position near the middle (so random crops rarely
miss it), scale, rotation, shade and texture over a
muted, mildly textured background with small, desaturated distractor shapes
(never in a class color). Classes differ in color family AND shape: class k is
family k % 5 and shape k // 5, so 10 classes are 5 hue families x 2 very
different shapes (circle, cross); up to MAX_CLASSES = 5 x 8 = 40 classes.
Images are rendered with numpy at any resolution, the same for the same seed;
train and eval come from separate random streams, so the splits never overlap
and never change.

"shapes" is learnable at any size a model can take: the built-in recipe
trains V2-B0 on it at 40-64 px, and its objects fill most of the frame, so a
larger image adds pixels but no class information. That makes it the wrong
data to measure what resolution buys (progressive learning's bet).

Variant "fine" (`synthetic_source(variant="fine")`, "synthetic-fine"):
classes differ by a detail that only a high-resolution image records. Each
image has the same background, clutter and one large object in a class color
family as "shapes", but the object's shape is drawn at random (a nuisance,
not the label) and its surface carries fine stripes, horizontal or vertical,
with a period of 1/64 of the image side (3 px at 192 px). Class k is color
family k % 5 and stripe orientation k // 5 (e.g. "red_horizontal"), up to
10 classes. The period sits between the Nyquist limits of a full-size image
(2 px) and a half-size one (4 px of the full image): at full size the stripes
are drawn plainly; rendered at half the size (96 px for 192) they would fall
under 2 px, so they are not drawn at all, as an anti-aliasing filter (or a
camera's pixels) would remove them, and the object is a flat color. A
half-size image of the same scene (same seed) therefore tells the color
family but not the orientation: at most half of the classes can be told
apart, whereas at full size all can. Orientation survives random crops,
aspect changes and horizontal flips, so the label never depends on the
augmentation. Render it at 130 px or more (period > 2 px); the trainer
renders at the final training or eval size, whichever is larger. Note that
the training pipeline resizes crops without an anti-aliasing filter (as the
official code does), so a small training size still shows aliased remnants
of the stripes; the data itself only carries the detail at full resolution.
"""

from __future__ import annotations

import colorsys

import numpy as np

from efficientnet_tf.data.sources import Source, array_source

# Ordered so that the first shapes (used by <= 10 classes) are the most different.
SHAPES = ("circle", "cross", "triangle", "ring", "square", "star", "hexagon", "rhombus")
# Hue centers 0.2 apart; a class color stays within +-HUE_JITTER of its center.
FAMILIES = {"red": 0.0, "yellow": 0.16, "green": 0.36, "blue": 0.6, "magenta": 0.82}
HUE_JITTER = 0.03
MAX_CLASSES = len(SHAPES) * len(FAMILIES)
VARIANTS = ("shapes", "fine")
# Variant "fine": the label's second part, and the stripe period as a fraction of the image side.
ORIENTATIONS = ("horizontal", "vertical")
FINE_PERIOD = 1 / 64
FINE_MAX_CLASSES = len(ORIENTATIONS) * len(FAMILIES)


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"The synthetic dataset's variant must be one of {', '.join(VARIANTS)}, got {variant!r}.")


def class_names(num_classes: int, variant: str = "shapes") -> list[str]:
    """Class k is color family k % 5 and shape k // 5 ("shapes") or stripe orientation k // 5 ("fine")."""
    _check_variant(variant)
    second, most = (SHAPES, MAX_CLASSES) if variant == "shapes" else (ORIENTATIONS, FINE_MAX_CLASSES)
    if not 2 <= num_classes <= most:
        raise ValueError(f"The synthetic dataset {variant!r} has 2 to {most} classes, got {num_classes}.")
    families, n = list(FAMILIES), len(FAMILIES)
    return [f"{families[k % n]}_{second[k // n]}" for k in range(num_classes)]


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in object coordinates (unit radius)."""
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    if kind == "circle":
        return rho <= 1.0
    if kind == "square":
        return np.maximum(abs(u), abs(v)) <= 0.8
    if kind == "rhombus":
        return abs(u) + abs(v) / 0.5 <= 1.0
    if kind == "cross":
        return ((abs(u) <= 0.3) & (abs(v) <= 1.0)) | ((abs(v) <= 0.3) & (abs(u) <= 1.0))
    if kind == "ring":
        return (rho <= 1.0) & (rho >= 0.55)
    if kind == "star":
        tooth = np.abs(((phi * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2.0  # 1 at the points
        return rho <= 0.4 + 0.6 * tooth
    sides = {"triangle": 3, "hexagon": 6}[kind]
    sector = 2 * np.pi / sides
    edge = np.cos(np.pi / sides) / np.cos((phi % sector) - sector / 2)
    return rho <= edge


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def render(label: int, num_classes: int, resolution: int, rng: np.random.Generator, variant: str = "shapes") -> np.ndarray:
    """One uint8 [resolution, resolution, 3] image of class `label`.

    The scene depends on `rng` only, not on `resolution`: the same draws give
    the same image at any size (with "fine", minus the stripes where the size
    cannot hold them).
    """
    names = class_names(num_classes, variant)
    family, detail = names[label].split("_")
    y, x = np.mgrid[0:resolution, 0:resolution].astype(np.float32) / resolution

    # Background: muted (low saturation) color, gradient and a mild striped texture.
    base = _hsv(rng.random(), rng.uniform(0.0, 0.2), rng.uniform(0.3, 0.8))
    angle = rng.uniform(0, np.pi)
    along = x * np.cos(angle) + y * np.sin(angle)
    stripes = np.sin(2 * np.pi * rng.uniform(3, 12) * along + rng.uniform(0, 6.3)) * rng.uniform(0.01, 0.06)
    image = base[None, None, :] * (0.85 + 0.3 * along[..., None]) + stripes[..., None]

    def paint(kind_: str, color: np.ndarray, radius: float, texture: float, spread: float = 0.5, fine=None) -> None:
        reach = min(spread, 0.5 - radius * 0.7)  # how far the center may stray from the middle
        cy, cx = rng.uniform(0.5 - reach, 0.5 + reach, size=2)
        theta = rng.uniform(0, 2 * np.pi)
        dx, dy = (x - cx) / radius, (y - cy) / radius
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        mask = _shape_mask(kind_, u, v)[..., None]
        shade = 1.0 + texture * np.sin(2 * np.pi * rng.uniform(2, 6) * u)[..., None]
        if fine is not None:  # (orientation, amplitude, phase): stripes in image axes, period FINE_PERIOD
            orientation, amplitude, phase = fine
            if FINE_PERIOD * resolution > 2.0:  # above the Nyquist limit of this size; else not recordable
                across = y if orientation == "horizontal" else x  # horizontal stripes vary along y
                shade = shade + amplitude * np.sin(2 * np.pi * across / FINE_PERIOD + phase)[..., None]
        image[:] = np.where(mask, color[None, None, :] * shade, image)

    for _ in range(rng.integers(1, 5)):  # clutter: small, desaturated shapes of any kind
        paint(SHAPES[rng.integers(len(SHAPES))], _hsv(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.2, 0.95)),
              rng.uniform(0.04, 0.08), 0.0)  # fmt: skip
    hue = FAMILIES[family] + rng.uniform(-HUE_JITTER, HUE_JITTER)
    if variant == "shapes":
        paint(detail, _hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)),
              rng.uniform(0.3, 0.45), rng.uniform(0.0, 0.1), spread=0.18)  # fmt: skip
    else:  # any shape; the label is the stripes' orientation
        kind = SHAPES[rng.integers(len(SHAPES))]
        fine = (detail, rng.uniform(0.2, 0.3), rng.uniform(0, 2 * np.pi))
        paint(kind, _hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.6, 0.8)),
              rng.uniform(0.3, 0.45), rng.uniform(0.0, 0.1), spread=0.18, fine=fine)  # fmt: skip

    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_split(num_images: int, num_classes: int, resolution: int, seed: int, stream: int, variant: str = "shapes"):
    """Images and balanced labels of one split; image i depends only on (seed, stream, i)."""
    labels = np.arange(num_images, dtype=np.int32) % num_classes
    images = np.stack([
        render(int(labels[i]), num_classes, resolution, np.random.default_rng([seed, stream, i]), variant)
        for i in range(num_images)
    ])  # fmt: skip
    return images, labels


def synthetic_source(
    *,
    num_classes: int = 10,
    resolution: int = 96,
    train_size: int = 6000,
    eval_size: int = 1000,
    seed: int = 0,
    variant: str = "shapes",
) -> Source:
    """The built-in dataset, rendered in memory (about 2 ms per 96-px image); `variant` "shapes" or "fine"."""
    names = class_names(num_classes, variant)
    train = render_split(train_size, num_classes, resolution, seed, stream=0, variant=variant)
    held = render_split(eval_size, num_classes, resolution, seed, stream=1, variant=variant)
    return array_source(train, held, names, name=f"synthetic{num_classes}" if variant == "shapes" else f"synthetic-{variant}{num_classes}")
