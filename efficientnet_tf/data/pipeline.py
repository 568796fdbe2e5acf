"""Assemble train and eval tf.data pipelines from a source.

Train: examples -> shuffle -> decode only the random-crop window -> resize to
the size read once per batch -> flip -> batch -> RandAugment/AutoAugment ->
Mixup/CutMix -> prefetch. Image size, RandAugment magnitude and the mixing
alphas live in `AugmentState` variables that the running pipeline reads, so a
callback can change them between batches without rebuilding the dataset; the
image spec is (batch, None, None, 3), so a Keras train step traced once serves
every size.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from efficientnet_tf.data import augment, mixing, preprocessing
from efficientnet_tf.data.badfiles import decode_files
from efficientnet_tf.data.sources import Source, Split, folder_source, tfds_source
from efficientnet_tf.data.synthetic import synthetic_source

AUGMENTATIONS = (None, "randaugment", "autoaugment")
AUTOTUNE = tf.data.AUTOTUNE


class AugmentState:
    """The run-time knobs of the training pipeline, as host (CPU) variables.

    Assign new values (e.g. from a progressive-learning callback); the pipeline
    picks them up within a few batches. Create it outside any distribution
    strategy scope so the variables stay plain host variables.
    """

    def __init__(self, image_size: int, randaug_magnitude: float = 0.0, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0):
        with tf.device("CPU:0"):
            self.image_size = tf.Variable(int(image_size), dtype=tf.int32, trainable=False, name="image_size")
            self.randaug_magnitude = tf.Variable(float(randaug_magnitude), trainable=False, name="randaug_magnitude")
            self.mixup_alpha = tf.Variable(float(mixup_alpha), trainable=False, name="mixup_alpha")
            self.cutmix_alpha = tf.Variable(float(cutmix_alpha), trainable=False, name="cutmix_alpha")

    def assign(self, **values: float) -> None:
        """Set any of image_size, randaug_magnitude, mixup_alpha, cutmix_alpha."""
        for name, value in values.items():
            if name not in ("image_size", "randaug_magnitude", "mixup_alpha", "cutmix_alpha"):
                raise ValueError(f"AugmentState has no {name!r}; use image_size, randaug_magnitude, mixup_alpha, cutmix_alpha.")
            if name == "image_size" and int(value) < 8:
                raise ValueError(f"image_size must be at least 8, got {value}.")
            if name != "image_size" and value < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns it off), got {value}.")
            getattr(self, name).assign(int(value) if name == "image_size" else float(value))

    def values(self) -> dict[str, float]:
        return {name: getattr(self, name).numpy().item() for name in ("image_size", "randaug_magnitude", "mixup_alpha", "cutmix_alpha")}


@dataclasses.dataclass
class DatasetInfo:
    """What the trainer and exports need to know about the data."""

    name: str
    class_names: list[str]
    num_train: int
    num_eval: int
    state: AugmentState
    bad_files: list[str]  # skipped so far (grows while training reads files)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def resolve_source(source: str | Source, data_dir: str | None = None) -> Source:
    """A Source as is; "synthetic"; an existing folder; else a TFDS dataset name."""
    if isinstance(source, Source):
        return source
    if source == "synthetic":
        return synthetic_source()
    if os.path.isdir(source):
        return folder_source(source)
    return tfds_source(source, data_dir=data_dir)


def _examples_and_decoder(split: Split, window_fn, fam: preprocessing.Family):
    """The split's (payload, label) dataset, and the step that turns it into
    (uint8 crop, label), decoding only the window for JPEG where the family does."""
    ds = split.make()

    def decode_one(data):
        return preprocessing.decode_window(data, window_fn, fam.jpeg_window_decode)

    if split.kind == "path":
        return ds, lambda d: decode_files(d, decode_one, split.bad_files)
    if split.kind == "encoded":
        return ds, lambda d: d.map(lambda x, y: (decode_one(x), y), num_parallel_calls=AUTOTUNE)
    return ds, lambda d: d.map(lambda x, y: (preprocessing.crop(x, window_fn(tf.shape(x))), y), num_parallel_calls=AUTOTUNE)


def _shard(ds: tf.data.Dataset, input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
    if input_context is None or input_context.num_input_pipelines == 1:
        return ds
    return ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def make_train_dataset(
    source: Source,
    *,
    family: str,
    batch_size: int,
    state: AugmentState,
    augmentation: str | None = "randaugment",
    randaug_layers: int = 2,
    shuffle_buffer: int = 10_000,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Training pipeline of (images, one-hot labels); each iteration is one shuffled pass."""
    fam = preprocessing.get_family(family)
    num_classes = len(source.class_names)
    window_fn = preprocessing.train_window_fn(fam, state.image_size)
    ds, decode = _examples_and_decoder(source.train, window_fn, fam)
    ds = _shard(ds, input_context)
    ds = ds.shuffle(min(shuffle_buffer, source.train.size), reshuffle_each_iteration=True)
    ds = decode(ds)

    # One size per batch: read the variable once, repeat it batch_size times.
    sizes = tf.data.Dataset.from_tensors(0).repeat().map(lambda _: tf.fill([batch_size], state.image_size.read_value()))
    ds = tf.data.Dataset.zip(ds, sizes.unbatch())

    def finish(example, size):
        image, label = example
        return preprocessing.train_finish(image, size, fam, augmentation is not None), tf.one_hot(label, num_classes)

    ds = ds.map(finish, num_parallel_calls=AUTOTUNE).batch(batch_size, drop_remainder=True)

    def augment_batch(images, labels):
        # RandAugment/AutoAugment take the uint8 batch as is (their values stay
        # on the uint8 grid), so the batch becomes float32 only for Mixup.
        if augmentation == "randaugment":
            magnitude = state.randaug_magnitude.read_value()
            images = tf.cond(magnitude > 0, lambda: augment.randaugment(images, magnitude, randaug_layers, fam.pil_contrast), lambda: images)
        elif augmentation == "autoaugment":
            images = augment.autoaugment(images, fam.pil_contrast)
        images = tf.cast(images, tf.float32)
        images, labels = mixing.mix_batch(images, labels, state.mixup_alpha.read_value(), state.cutmix_alpha.read_value())
        images.set_shape([batch_size, None, None, 3])
        return images, labels

    ds = ds.map(augment_batch, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def make_eval_dataset(
    source: Source,
    *,
    family: str,
    image_size: int,
    batch_size: int,
    cache: bool = False,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Evaluation pipeline: the family's center crop at a fixed size, in order, all examples."""
    fam = preprocessing.get_family(family)
    num_classes = len(source.class_names)
    ds, decode = _examples_and_decoder(source.eval, preprocessing.eval_window_fn(fam, image_size), fam)
    ds = decode(_shard(ds, input_context))
    size = tf.constant(image_size)
    ds = ds.map(lambda x, y: (preprocessing.resize(x, size, fam), tf.one_hot(y, num_classes)), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size)
    if cache:
        ds = ds.cache()
    return ds.prefetch(AUTOTUNE)


def make_datasets(
    source: str | Source,
    *,
    family: str,
    image_size: int,
    batch_size: int,
    eval_size: int | None = None,
    eval_batch_size: int | None = None,
    augmentation: str | None = "randaugment",
    randaug_magnitude: float = 10.0,
    randaug_layers: int = 2,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    state: AugmentState | None = None,
    shuffle_buffer: int = 10_000,
    cache_eval: bool = False,
    input_context: tf.distribute.InputContext | None = None,
    data_dir: str | None = None,
) -> tuple[tf.data.Dataset, tf.data.Dataset, DatasetInfo]:
    """Train and eval pipelines of (float32 images in [0, 255], one-hot float labels).

    `source`: a Source (folder_source, tfds_source, synthetic_source,
    array_source), "synthetic", a folder path, or a TFDS name (with
    `data_dir`). `family`: "efficientnet", "efficientnet-lite",
    "efficientnetv2-base" or "efficientnetv2". Train batches have
    `batch_size` images (per replica with `input_context`; a last partial
    batch is dropped); eval keeps every example. Pass `state` to share knobs,
    else one is made from image_size, randaug_magnitude and the alphas.
    """
    preprocessing.get_family(family)
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    src = resolve_source(source, data_dir)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if state is None:
        state = AugmentState(image_size, randaug_magnitude, mixup_alpha, cutmix_alpha)
    state.assign(image_size=image_size)  # validates the size
    train = make_train_dataset(
        src, family=family, batch_size=batch_size, state=state, augmentation=augmentation,
        randaug_layers=randaug_layers, shuffle_buffer=shuffle_buffer, input_context=input_context,
    )  # fmt: skip
    evaluation = make_eval_dataset(
        src, family=family, image_size=eval_size or image_size, batch_size=eval_batch_size or batch_size,
        cache=cache_eval, input_context=input_context,
    )  # fmt: skip
    bad = src.train.bad_files.paths if src.train.bad_files else []
    info = DatasetInfo(src.name, src.class_names, src.train.size, src.eval.size, state, bad)
    return train, evaluation, info
