"""Assemble train and eval tf.data pipelines from a source.

Train: examples -> shuffle -> decode only the random-crop window -> resize to
the size read once per batch -> flip -> batch -> RandAugment/AutoAugment ->
Mixup/CutMix -> prefetch. Image size, RandAugment magnitude and the mixing
alphas live in `AugmentState` variables that the running pipeline reads, so a
callback can change them between batches without rebuilding the dataset; the
image spec is (batch, None, None, 3), so a Keras train step traced once serves
every size.

Each iteration of the train dataset is one pass (epoch) over the data, and
every random draw in it is keyed by (seed, input pipeline, pass, position)
(see `seeds`): the same seed gives the same batches, and pass `e` is the
same whether or not passes 0..e-1 ran in this process. `AugmentState.epoch`
numbers the passes; each new iteration advances it, and a callback may set it
(`ProgressiveLearning` sets Keras' epoch, so a resumed fit replays its epochs).
`AugmentState.resume_at(batch)` makes the next pass start at that batch, the
ones before it skipped before any decoding (a run resumed mid-epoch).

With `service=` the passes run on tf.data service workers, each with the
knobs' values at its start (see `service`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from efficientnet_tf.data import augment, mixing, preprocessing, seeds
from efficientnet_tf.data.badfiles import decode_files
from efficientnet_tf.data.shards import shard_source
from efficientnet_tf.data.sources import Source, Split, folder_source, tfds_source
from efficientnet_tf.data.synthetic import synthetic_source
from efficientnet_tf.files import check_filesystem, is_remote
from efficientnet_tf.validation import check_choice, check_float, check_int

AUGMENTATIONS = ("randaugment", "autoaugment", None)  # None: no augmentation (`none` on the command line)
AUTOTUNE = tf.data.AUTOTUNE


MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 8192
KNOBS = ("image_size", "randaug_magnitude", "mixup_alpha", "cutmix_alpha")
# RandAugment's magnitude scale ends at 30 (10 is the usual maximum); larger alphas are
# no longer a mixing distribution anyone means (Beta(100, 100) always mixes 50/50).
MAX_MAGNITUDE, MAX_ALPHA = 30.0, 100.0


def check_knobs(**values) -> dict:
    """`AugmentState` values checked and made plain ints/floats; raises on the first bad one."""
    unknown = sorted(set(values) - set(KNOBS))
    if unknown:
        raise ValueError(f"AugmentState has no {', '.join(map(repr, unknown))}; use {', '.join(KNOBS)}.")
    limits = dict(randaug_magnitude=MAX_MAGNITUDE, mixup_alpha=MAX_ALPHA, cutmix_alpha=MAX_ALPHA)
    return {
        name: check_int(name, value, min=MIN_IMAGE_SIZE, max=MAX_IMAGE_SIZE) if name == "image_size"
        else check_float(name, value, min=0.0, max=limits[name])
        for name, value in values.items()
    }


class AugmentState:
    """The run-time knobs of the training pipeline, as host (CPU) variables.

    Assign new values (e.g. from a progressive-learning callback); the pipeline
    picks them up within a few batches. Create it outside any distribution
    strategy scope so the variables stay plain host variables. A 0 magnitude
    or alpha turns that augmentation off. `epoch` is the number of the next
    pass over the training data, which keys its random draws; `first_batch`
    is where that pass starts (0 but in a resumed epoch, see `resume_at`).
    """

    def __init__(self, image_size: int, randaug_magnitude: float = 0.0, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0):
        values = check_knobs(
            image_size=image_size, randaug_magnitude=randaug_magnitude, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha
        )
        with tf.device("CPU:0"):
            for name, value in values.items():
                dtype = tf.int32 if name == "image_size" else tf.float32
                setattr(self, name, tf.Variable(value, dtype=dtype, trainable=False, name=name))
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.first_batch = tf.Variable(0, dtype=tf.int64, trainable=False, name="first_batch")
            # Set while a pass that starts after its first batch runs; the dataset's length stays
            # the full pass, so its end is an empty extra pass (see make_train_dataset).
            self.cut_short = tf.Variable(False, trainable=False, name="cut_short")

    def next_pass(self) -> tf.Tensor:
        """The pass number to use, advancing `epoch` (called once per iteration of the train dataset)."""
        return self.epoch.assign_add(1) - 1

    def resume_at(self, batch: int) -> None:
        """The next pass starts at `batch` (the first `batch` batches were trained before a restart); once."""
        self.first_batch.assign(check_int("batch", batch, min=0))
        self.cut_short.assign(False)

    def assign(self, **values: float) -> None:
        """Set any of image_size, randaug_magnitude, mixup_alpha, cutmix_alpha (all checked before any is set)."""
        for name, value in check_knobs(**values).items():
            getattr(self, name).assign(value)

    def values(self) -> dict[str, float]:
        return {name: getattr(self, name).numpy().item() for name in KNOBS}


@dataclasses.dataclass
class DatasetInfo:
    """What the trainer and exports need to know about the data.

    For image folders, files that fail to decode are found while training
    reads them: `num_train`, `num_eval` and `bad_files` follow as they are.
    """

    source: Source
    state: AugmentState

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_train(self) -> int:
        return self.source.train.usable_size

    @property
    def num_eval(self) -> int:
        return self.source.eval.usable_size

    @property
    def bad_files(self) -> list[str]:
        """Files skipped so far (scan and decoding), each once."""
        logs = (self.source.train.scanned, self.source.train.bad_files, self.source.eval.bad_files)
        return list(dict.fromkeys(path for log in logs if log is not None for path in log.paths))


def _looks_like_path(text: str) -> bool:
    """Absolute, home-relative or dot-relative, or a relative path whose first folder exists.

    TFDS names may hold a slash too ("imagenet_v2/matched-frequency"), so a
    slash alone does not make a path.
    """
    if text.startswith((os.sep, "/", ".", "~")) or os.path.splitdrive(text)[0] or is_remote(text):
        return True
    parts = text.replace(os.sep, "/").split("/")
    return len(parts) > 1 and os.path.isdir(parts[0])


def resolve_source(source: str | os.PathLike | Source, data_dir: str | None = None) -> Source:
    """A Source as is; "synthetic"; "tfrecord" (the shards in `data_dir`); an existing folder; else a TFDS dataset name."""
    if isinstance(source, Source):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a Source, 'synthetic', 'tfrecord', a folder path or a TFDS name, got {source!r}.")
    source = os.fspath(source)
    if source == "synthetic":
        return synthetic_source()
    if source == "tfrecord":
        return shard_source(data_dir or "")
    folder = os.path.expanduser(source)
    check_filesystem(folder, "Image folder")
    if tf.io.gfile.isdir(folder):
        return folder_source(folder)
    if _looks_like_path(source):
        raise ValueError(
            f"Image folder {source!r} does not exist; pass an existing folder with one subfolder per class "
            "(or a TFDS name such as 'cifar10')."
        )
    return tfds_source(source, data_dir=data_dir)


def _examples_and_decoder(split: Split, fam: preprocessing.Family, input_context=None):
    """This input pipeline's (payload, label) dataset of the split, and the step `decode(ds, window_fn)` that turns
    (payload, label, key) into (uint8 crop, label, key), decoding only the window `window_fn(shape, key)` for JPEG
    where the family does."""
    ds = _shard(split, input_context)

    def decode_one(data, key, window_fn):
        return preprocessing.decode_window(data, lambda shape: window_fn(shape, key), fam.jpeg_window_decode)

    if split.kind == "path":
        return ds, lambda d, window_fn: decode_files(d, lambda x, k: decode_one(x, k, window_fn), split.bad_files)
    if split.kind == "encoded":
        return ds, lambda d, window_fn: d.map(lambda x, y, k: (decode_one(x, k, window_fn), y, k), num_parallel_calls=AUTOTUNE)
    return ds, lambda d, window_fn: d.map(
        lambda x, y, k: (preprocessing.crop(x, window_fn(tf.shape(x), k)), y, k), num_parallel_calls=AUTOTUNE
    )


def _shard(split: Split, input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
    if input_context is None or input_context.num_input_pipelines == 1:
        return split.make()
    count, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    return split.make_shard(count, index) if split.make_shard else split.make().shard(count, index)


def make_train_dataset(
    source: Source,
    *,
    family: str | preprocessing.Family,
    batch_size: int,
    state: AugmentState,
    augmentation: str | None = "randaugment",
    randaug_layers: int = 2,
    shuffle_buffer: int = 10_000,
    input_context: tf.distribute.InputContext | None = None,
    seed: int = 0,
    service: str = "",
) -> tf.data.Dataset:
    """Training pipeline of (images, one-hot labels); each iteration is one shuffled pass, keyed by `seed`.

    With `service` (a dispatcher's grpc://HOST:PORT), each pass runs on that tf.data service's workers.
    """
    fam = preprocessing.get_family(family)
    num_classes = len(source.class_names)
    if service:
        # Imported here: `python -m efficientnet_tf.data.service` imports this module first.
        from efficientnet_tf.data import service as data_service

        service = data_service.check_dispatcher(service)
    examples, decode = _examples_and_decoder(source.train, fam, input_context)
    pipeline_id = 0 if input_context is None else input_context.input_pipeline_id
    run_key = tf.constant([seed, pipeline_id], tf.int64)

    def finish(example, size):
        image, label, key = example
        image = preprocessing.train_finish(image, size, fam, augmentation is not None, seeds.fold_in(key, 1))
        return image, tf.one_hot(label, num_classes)

    def augment_batch(key, batch, read):
        # RandAugment/AutoAugment take the uint8 batch as is (their values stay
        # on the uint8 grid); Mixup/CutMix give float32, an image at a time.
        images, labels = batch
        augment_key, mix_key = tf.unstack(seeds.split(key, 2))
        if augmentation == "randaugment":
            magnitude = read("randaug_magnitude")
            images = tf.cond(
                magnitude > 0,
                lambda: augment.randaugment(images, magnitude, randaug_layers, fam.pil_contrast, augment_key),
                lambda: images,
            )  # fmt: skip
        elif augmentation == "autoaugment":
            images = augment.autoaugment(images, fam.pil_contrast, augment_key)
        images, labels = mixing.mix_batch(images, labels, read("mixup_alpha"), read("cutmix_alpha"), mix_key)
        images.set_shape([batch_size, None, None, 3])
        return images, labels

    def one_pass(epoch, read, first_batch=0, position_key=seeds.fold_in):
        """Pass `epoch` from batch `first_batch` on (the ones before are skipped before any decoding; the rest keep
        their keys); `read(knob)` gives a knob's value where a batch uses it, `position_key(key, i)` the key of the
        example or batch at position i."""
        shuffle_key, example_key, batch_key = tf.unstack(seeds.split(seeds.fold_in(run_key, epoch), 3))
        shuffle_seed = tf.random.stateless_uniform([], shuffle_key, minval=None, maxval=None, dtype=tf.int64)
        # While tracing this sets only this function's graph seed, which TF pairs with the op seed:
        # the order then depends on the key alone, and TF's pairing, which cannot take a tensor op
        # seed beside a global seed of 0 (keras.utils.set_random_seed(0)), never sees that case.
        tf.random.set_seed(1)
        ds = examples.shuffle(min(shuffle_buffer, source.train.size), seed=shuffle_seed)
        ds = ds.enumerate().skip(first_batch * batch_size)
        ds = ds.map(lambda i, e: (e[0], e[1], position_key(example_key, i)))
        ds = decode(ds, lambda shape, key: preprocessing.random_crop_window(shape, fam, read("image_size"), seeds.fold_in(key, 0)))
        # One size per batch: read the knob once, repeat it batch_size times.
        sizes = tf.data.Dataset.from_tensors(0).repeat().map(lambda _: tf.fill([batch_size], read("image_size")))
        ds = tf.data.Dataset.zip(ds, sizes.unbatch())
        ds = ds.map(finish, num_parallel_calls=AUTOTUNE).batch(batch_size, drop_remainder=True)
        ds = ds.enumerate(start=first_batch).map(lambda b, batch: augment_batch(position_key(batch_key, b), batch, read),
                                                 num_parallel_calls=AUTOTUNE)  # fmt: skip
        return ds

    if service:
        # Workers cannot read the state's variables (a distributed dataset would carry the values they had
        # when it was sent, frozen), so each pass is sent afresh with the values of its start (see `service`).
        if source.train.kind == "path":
            raise ValueError(
                "data.service cannot run an image-folder pipeline (its bad-file log runs Python on the trainer); "
                "convert the folder to a TFDS dataset or TFRecords, or train without --data.service."
            )
        passes = tf.data.Dataset.from_tensors(0).map(
            lambda _: (state.next_pass(), {knob: getattr(state, knob).read_value() for knob in KNOBS})
        )
        return passes.flat_map(
            lambda epoch, values: data_service.distribute(
                one_pass(epoch, values.get, position_key=data_service.worker_position_key), service)
        ).prefetch(AUTOTUNE)

    # flat_map hides the length; restore it where every example makes it (files can fail to decode).
    examples_per_pass = int(examples.cardinality())
    if examples_per_pass == tf.data.UNKNOWN_CARDINALITY and source.train.make_shard is None:
        # A TFDS train split does not count itself (see tfds_source); it is sharded by example.
        pipelines = 1 if input_context is None else input_context.num_input_pipelines
        examples_per_pass = len(range(pipeline_id, source.train.size, pipelines))
    batches_per_pass = examples_per_pass // batch_size if examples_per_pass >= 0 and source.train.kind != "path" else -1
    # `first_batch` counts the trainer's steps; each step takes one batch per replica this pipeline feeds.
    batches_per_step = 1 if input_context is None else input_context.num_replicas_in_sync // input_context.num_input_pipelines

    @tf.function(autograph=False)
    def start_pass(_):
        """(pass, first batch), consuming `first_batch`; pass -1 (none) to end a pass that was cut short."""

        def start():
            first = state.first_batch.read_value() * batches_per_step
            with tf.control_dependencies([first]):
                reset = state.first_batch.assign(0)
                cut = state.cut_short.assign(tf.logical_and(first > 0, first < batches_per_pass))
            with tf.control_dependencies([reset, cut]):
                return state.next_pass(), tf.identity(first)

        def end():
            with tf.control_dependencies([state.cut_short.assign(False)]):
                return tf.constant(-1, tf.int64), tf.constant(0, tf.int64)

        return tf.cond(state.cut_short.read_value(), end, start)

    def read_state(knob):
        return getattr(state, knob).read_value()

    passes = tf.data.Dataset.from_tensors(0).map(start_pass).filter(lambda epoch, first: epoch >= 0)
    ds = passes.flat_map(lambda epoch, first: one_pass(epoch, read_state, first))
    if batches_per_pass >= 0:
        # Length by repeat-and-take rather than assert_cardinality, which fails a pass resumed mid-way: that
        # pass is shorter, and its repetition is an empty pass (cut_short), which ends the iteration.
        ds = ds.repeat().take(batches_per_pass)
    return ds.prefetch(AUTOTUNE)


def make_eval_dataset(
    source: Source,
    *,
    family: str | preprocessing.Family,
    image_size: int,
    batch_size: int,
    cache: bool = False,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Evaluation pipeline: the family's center crop at a fixed size, in order, all examples."""
    fam = preprocessing.get_family(family)
    num_classes = len(source.class_names)
    center = preprocessing.eval_window_fn(fam, image_size)
    ds, decode = _examples_and_decoder(source.eval, fam, input_context)
    no_key = tf.zeros([2], tf.int64)  # the center crop draws nothing
    ds = decode(ds.map(lambda x, y: (x, y, no_key)), lambda shape, key: center(shape))
    size = tf.constant(image_size)
    ds = ds.map(lambda x, y, k: (preprocessing.resize(x, size, fam), tf.one_hot(y, num_classes)), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size)
    if cache:
        ds = ds.cache()
    return ds.prefetch(AUTOTUNE)


def make_datasets(
    source: str | Source,
    *,
    family: str | preprocessing.Family,
    image_size: int,
    batch_size: int,
    eval_size: int | None = None,
    eval_batch_size: int | None = None,
    augmentation: str | None = "randaugment",
    randaug_magnitude: float | None = None,
    randaug_layers: int = 2,
    mixup_alpha: float | None = None,
    cutmix_alpha: float | None = None,
    state: AugmentState | None = None,
    shuffle_buffer: int = 10_000,
    cache_eval: bool = False,
    input_context: tf.distribute.InputContext | None = None,
    data_dir: str | None = None,
    seed: int | None = None,
    service: str = "",
) -> tuple[tf.data.Dataset, tf.data.Dataset, DatasetInfo]:
    """Train and eval pipelines of (float32 images in [0, 255] give or take bicubic overshoot, one-hot labels).

    `source`: a Source (folder_source, tfds_source, synthetic_source,
    array_source, shard_source), "synthetic", "tfrecord" (the TFRecord shards
    in `data_dir`, see `shards`), a folder path, or a TFDS name (with
    `data_dir`). `family`: "efficientnet", "efficientnet-lite",
    "efficientnetv2-base", "efficientnetv2", or a customized
    `preprocessing.Family`. Train batches have
    `batch_size` images (a last partial batch is dropped; a batch larger
    than the training set is an error); eval keeps every example, at
    `eval_size` (default `image_size`) in batches of `eval_batch_size`
    (default `batch_size`). With `input_context` both batch sizes are global
    and split per replica. Pass `state` to share knobs (then the
    magnitude and alphas come from it), else one is made from image_size,
    randaug_magnitude (default 10) and the alphas (default 0: off). `seed` keys every random draw of the
    train pipeline (default: one drawn from numpy's global generator, which
    `keras.utils.set_random_seed` seeds). `service`: a tf.data service
    dispatcher's grpc://HOST:PORT that runs the train pipeline (`service`
    module); evaluation stays local.
    Every argument is checked before the source is read.
    """
    preprocessing.get_family(family)
    check_choice("augmentation", augmentation, AUGMENTATIONS)
    batch_size = check_int("batch_size", batch_size, min=1)
    given = {k: v for k, v in dict(randaug_magnitude=randaug_magnitude, mixup_alpha=mixup_alpha,
                                    cutmix_alpha=cutmix_alpha).items() if v is not None}  # fmt: skip
    knobs = check_knobs(image_size=image_size, **given)
    image_size = knobs["image_size"]
    eval_size = image_size if eval_size is None else check_int("eval_size", eval_size, min=MIN_IMAGE_SIZE, max=MAX_IMAGE_SIZE)
    eval_batch_size = batch_size if eval_batch_size is None else check_int("eval_batch_size", eval_batch_size, min=1)
    randaug_layers = check_int("randaug_layers", randaug_layers, min=0)
    shuffle_buffer = check_int("shuffle_buffer", shuffle_buffer, min=1)
    check_choice("cache_eval", cache_eval, (True, False))
    if service:
        from efficientnet_tf.data.service import check_dispatcher

        check_dispatcher(service)
    seed = int(np.random.randint(2**31)) if seed is None else check_int("seed", seed, min=0, max=2**63 - 1)
    if state is None:
        state = AugmentState(**{"randaug_magnitude": 10.0, **knobs})
    elif not isinstance(state, AugmentState):
        raise TypeError(f"state must be an AugmentState or None, got {state!r}.")
    elif given:
        raise ValueError(
            f"{', '.join(given)} would be ignored: with state= the pipeline reads the state's values; "
            "pass them to AugmentState (or state.assign) instead."
        )
    else:
        state.assign(image_size=image_size)
    src = resolve_source(source, data_dir)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        eval_batch_size = input_context.get_per_replica_batch_size(eval_batch_size)
    pipelines = 1 if input_context is None else input_context.num_input_pipelines
    if batch_size > src.train.size // pipelines:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {src.train.size // pipelines} training examples of "
            f"{src.name!r}{' per input pipeline' if pipelines > 1 else ''}, so an epoch would have no batch; "
            f"pass batch_size={max(1, src.train.size // pipelines)} or smaller."
        )
    train = make_train_dataset(
        src, family=family, batch_size=batch_size, state=state, augmentation=augmentation,
        randaug_layers=randaug_layers, shuffle_buffer=shuffle_buffer, input_context=input_context, seed=seed,
        service=service,
    )  # fmt: skip
    evaluation = make_eval_dataset(
        src, family=family, image_size=eval_size, batch_size=eval_batch_size,
        cache=cache_eval, input_context=input_context,
    )  # fmt: skip
    return train, evaluation, DatasetInfo(src, state)
