"""A run from a resolved `Config`: data, model, compile, callbacks, `model.fit`.

Every piece is one of the training modules a notebook uses directly; this
file only wires them from the config and owns the model directory:

    config.json        the resolved config (a rerun must match it)
    class_names.json   for predict and export
    ckpt-NNNNN.npz     atomic per-epoch checkpoints (model, optimizer, EMA)
    ckpt-NNNNN-BBBBB.npz  the newest mid-epoch one (SIGTERM, train.checkpoint_every_steps)
    log.csv            one row per finished epoch
    tensorboard/       per-epoch scalars
    history.png        learning curves and schedules
    model.keras        the final model with EMA weights

Distribution is tf.distribute's: the strategy's scope around the model, and
inputs from `distribute_datasets_from_function`, one pipeline per worker,
each sharded and batched per replica. `data.batch_size` is the global batch
and the learning rate scales with it. Under multi-worker training only the
chief writes the model directory; the other workers write the same files
into a temporary directory that is removed when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Iterator, Optional

import keras
import tensorflow as tf

import efficientnet_tf
from efficientnet_tf.data import folder_source, make_datasets, synthetic_source
from efficientnet_tf.data.pipeline import DatasetInfo, resolve_source
from efficientnet_tf.data.service import check_dispatcher
from efficientnet_tf.files import atomic_write, atomic_write_text, check_filesystem, error_text, is_remote
from efficientnet_tf.training.checkpoint import Checkpointer, latest_checkpoint
from efficientnet_tf.training.config import Config, config_from_json, differences, resolve, schedules_dropout
from efficientnet_tf.training.ema import ExponentialMovingAverage
from efficientnet_tf.layers import synchronize_batchnorm
from efficientnet_tf.training.hardware import (
    ProbeTarget, WorkerLost, describe, is_chief, make_strategy, pick_jit_compile, pick_precision,
)  # fmt: skip
from efficientnet_tf.training.keras_patches import is_multi_worker
from efficientnet_tf.training.loading import model_from_config, restore_inference_weights
from efficientnet_tf.training.optimizer import add_weight_decay, make_optimizer
from efficientnet_tf.training.progressive import ProgressiveLearning, progressive_stages
from efficientnet_tf.training.reporting import EpochReport, plot_history, summary_line
from efficientnet_tf.training.reproducibility import check_deterministic_strategy, make_deterministic
from efficientnet_tf.training.schedules import WarmupSchedule, scaled_learning_rate

MODES = ("train", "eval", "train_and_eval")


def make_data(config: Config, strategy: Optional[tf.distribute.Strategy] = None) -> tuple:
    """The config's train and eval inputs; the train one starts at the first stage's values.

    Without a strategy (or with the default one), plain datasets of global
    batches. With one, `distribute_datasets_from_function` inputs: each worker
    reads its own shard in per-replica batches, every worker takes the same
    number of steps per epoch, and all of them read one `AugmentState`, so a
    progressive stage change reaches every replica from the epoch's first batch.
    With `data.service` the train input is global batches from the service, split by Keras.
    """
    data, family = config.data, efficientnet_tf.get_spec(config.model.name).family
    if data.dataset == "synthetic":
        source = synthetic_source(
            num_classes=data.synthetic_classes, resolution=max(data.image_size, data.eval_size),
            train_size=data.synthetic_train, eval_size=data.synthetic_eval, seed=config.train.seed,
            variant=data.synthetic_variant,
        )  # fmt: skip
    elif data.eval_dir:
        source = folder_source(data.dataset, data.eval_dir)
    else:
        source = resolve_source(data.dataset, data.data_dir or None)

    def datasets(state=None, input_context=None):
        # The knobs start a new AugmentState; a shared one already holds them.
        knobs = {} if state is not None else dict(randaug_magnitude=data.randaug_magnitude, mixup_alpha=data.mixup_alpha,
                                      cutmix_alpha=data.cutmix_alpha)  # fmt: skip
        return make_datasets(
            source, family=family, image_size=data.image_size, eval_size=data.eval_size, batch_size=data.batch_size,
            augmentation=data.augmentation, randaug_layers=data.randaug_layers,
            shuffle_buffer=data.shuffle_buffer, cache_eval=data.dataset == "synthetic", state=state,
            input_context=input_context, seed=config.train.seed, service=data.service, **knobs,
        )  # fmt: skip

    if data.service and strategy is not None and is_multi_worker(strategy):
        raise ValueError(
            "data.service feeds one trainer process (its replicas included); for multi-worker training "
            "drop --data.service, or train on one machine with --strategy=mirrored."
        )
    train, evaluation, info = datasets()
    if strategy is None or strategy is tf.distribute.get_strategy():
        return train, evaluation, info
    replicas = strategy.num_replicas_in_sync
    if data.batch_size % replicas:
        raise ValueError(
            f"batch_size {data.batch_size} does not split evenly over {replicas} replicas; pass --batch_size="
            f"{max(replicas, data.batch_size // replicas * replicas)} (a multiple of {replicas})."
        )
    steps = info.num_train // data.batch_size
    tpu = isinstance(strategy, tf.distribute.TPUStrategy)

    def train_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        # Shards differ by up to one example; equal step counts keep the workers' collectives paired.
        replicas_here = context.num_replicas_in_sync // context.num_input_pipelines
        return datasets(info.state, context)[0].take(steps * replicas_here)

    def eval_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        evaluation = datasets(info.state, context)[1]
        # TPUs need static batch shapes: the last partial batch is dropped there.
        return evaluation.rebatch(context.get_per_replica_batch_size(data.batch_size), drop_remainder=True) if tpu else evaluation

    evaluation = strategy.distribute_datasets_from_function(eval_fn)
    if data.service:
        # Global batches, which Keras splits over the replicas: a pass through the service ends after any
        # number of batches, which as per-replica batches could leave a replica without one in the last step.
        return train, evaluation, info
    return strategy.distribute_datasets_from_function(train_fn), evaluation, info


def stages(config: Config) -> list:
    """The progressive-learning stages; the end values are the data and model fields."""
    p, d = config.progressive, config.data
    return progressive_stages(
        config.train.epochs, p.stages, style=p.style,
        image_size=(p.min_image_size, d.image_size),
        randaug_magnitude=(p.min_randaug_magnitude, d.randaug_magnitude),
        mixup_alpha=(p.min_mixup_alpha, d.mixup_alpha), cutmix_alpha=(p.min_cutmix_alpha, d.cutmix_alpha),
        dropout=(p.min_dropout, config.model.dropout) if schedules_dropout(config) else None,
    )  # fmt: skip


def compile_model(model: keras.Model, config: Config, steps_per_epoch: int, jit_compile: bool = False) -> None:
    """The recipe's optimizer, learning-rate schedule, weight decay, loss and top-1 (and top-5 above 5 classes); XLA if `jit_compile`."""
    o = config.optimizer
    schedule = WarmupSchedule(
        scaled_learning_rate(o.lr_per_256, config.data.batch_size), steps_per_epoch, config.train.epochs,
        warmup_epochs=o.warmup_epochs, decay=o.schedule, decay_rate=o.decay_rate, decay_epochs=o.decay_epochs,
    )  # fmt: skip
    add_weight_decay(model, o.weight_decay)
    model.compile(
        make_optimizer(o.name, schedule, momentum=o.momentum, rho=o.rho, epsilon=o.epsilon),
        keras.losses.CategoricalCrossentropy(label_smoothing=config.train.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="top1"),
                 *([keras.metrics.TopKCategoricalAccuracy(5, name="top5")] if model.output_shape[-1] > 5 else [])],
        jit_compile=jit_compile,
    )


def prepare_model_dir(model_dir: str, config: Config, allow_config_change: bool = False, write: bool = True) -> None:
    """Create the directory and save the config; refuse to mix two configs in one directory.

    `write=False` (a non-chief worker) only checks the config the chief saved.
    """
    check_filesystem(model_dir, "model_dir")
    path = os.path.join(model_dir, "config.json")
    if write:
        check_writable(model_dir, keep=True)
    try:
        saved = tf.io.gfile.GFile(path).read() if tf.io.gfile.exists(path) and not allow_config_change else None
    except (OSError, tf.errors.OpError) as e:
        raise OSError(f"model_dir {model_dir!r} cannot be read ({error_text(e)}); pass a --model_dir you can use.") from None
    if saved is not None:
        changed = differences(config_from_json(saved), config)
        if changed:
            raise ValueError(
                f"{model_dir!r} holds a run with another config ({'; '.join(changed)}); use a new --model_dir, "
                "or pass --allow_config_change to continue it with the new values."
            )
    if write:
        atomic_write_text(path, json.dumps(config.to_dict(), indent=2) + "\n")


def check_writable(model_dir: str, keep: bool = False) -> None:
    """One line when `model_dir` (a folder or a bucket) cannot be written, found before any data is read.

    Unless `keep`, a local folder made only for the test is removed again, so a start that fails later
    leaves nothing behind.
    """
    check_filesystem(model_dir, "model_dir")
    made = not keep and not is_remote(model_dir) and not os.path.exists(model_dir)
    try:
        tf.io.gfile.makedirs(model_dir)
        probe = os.path.join(model_dir, ".write-test")
        with tf.io.gfile.GFile(probe, "w") as file:
            file.write("ok")  # an empty write creates nothing on some filesystems
        tf.io.gfile.remove(probe)
        if made:
            os.rmdir(model_dir)
    except (OSError, tf.errors.OpError) as e:
        raise OSError(f"model_dir {model_dir!r} is not writable ({error_text(e)}); pass a --model_dir you can write to.") from None


@contextlib.contextmanager
def reporting_lost_workers(strategy: tf.distribute.Strategy) -> Iterator[None]:
    """Under multi-worker training, a peer that stops answering becomes one `WorkerLost` line."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as e:
        if not is_multi_worker(strategy):
            raise
        detail = e.message.strip().splitlines()[0][:200] if e.message else ""
        raise WorkerLost(
            f"{describe(strategy)}: a peer worker stopped answering ({type(e).__name__}: {detail}); "
            "restart every worker with the same command to resume from the last finished epoch."
        ) from None


def run(config: Config, model_dir: str, *, mode: str = "train_and_eval", strategy: str = "auto", tpu: Optional[str] = None,
        startup_timeout: float = 600.0, allow_config_change: bool = False, verbose: int = 1) -> dict:  # fmt: skip
    """Train and/or evaluate as configured; returns the final metrics, the summary line, the epoch logs and the model.

    "train" skips the per-epoch validation (one evaluation closes the run);
    "eval" evaluates the newest checkpoint's (EMA) weights and writes nothing.
    `verbose` 1 shows Keras' progress bar, or one line per epoch (2) when
    stdout is not a terminal (a log file, nohup, Slurm, CI); 0 prints nothing.
    `strategy`, `tpu` and `startup_timeout` pick the hardware (see `make_strategy`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    config = resolve(config)
    if config.data.service and mode == "eval":
        config = resolve(config, {"data.service": ""})  # evaluation reads no training data
    elif config.data.service:
        check_dispatcher(config.data.service)  # before the hardware: a TPU or a precision probe can take minutes
    if verbose == 1 and not sys.stdout.isatty():
        verbose = 2  # a progress bar's escape codes and many updates per epoch only clutter a log
    start = time.perf_counter()
    distribution = make_strategy(strategy, tpu=tpu, startup_timeout=startup_timeout)
    if config.train.deterministic:
        check_deterministic_strategy(distribution)
    jit_compile = pick_jit_compile(config.train.jit_compile, distribution, config.train.deterministic)
    first_stage = ProbeTarget(config.model.name, stages(config)[0].image_size,
                              max(1, config.data.batch_size // distribution.num_replicas_in_sync), config.model.width,
                              config.model.depth)  # fmt: skip
    precision = pick_precision(config.train.mixed_precision, distribution, probe=first_stage)
    chief = is_chief(distribution)
    checkpoint, plan = None, None
    if mode == "eval":
        check_filesystem(model_dir, "model_dir")
        checkpoint = latest_checkpoint(model_dir)
        if checkpoint is None:
            raise ValueError(f"{model_dir!r} has no checkpoint to evaluate; train there first or pass the right --model_dir.")
    else:
        plan = stages(config)
        if chief:
            check_writable(model_dir)  # before the data: a shard scan or a folder listing can take minutes
        prepare_model_dir(model_dir, config, allow_config_change, write=False)  # a conflicting run fails first
    with _write_directory(model_dir, chief) as write_dir, reporting_lost_workers(distribution):
        return _run(config, model_dir, write_dir, mode=mode, distribution=distribution, precision=precision,
                    jit_compile=jit_compile, checkpoint=checkpoint, plan=plan, start=start, verbose=verbose,
                    allow_config_change=allow_config_change)  # fmt: skip


@contextlib.contextmanager
def _write_directory(model_dir: str, chief: bool) -> Iterator[str]:
    """The model directory for the chief; for other workers a temporary directory that nobody reads, removed at the end."""
    if chief:
        yield model_dir
        return
    directory = tempfile.mkdtemp(prefix="efficientnet-worker-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _run(config: Config, model_dir: str, write_dir: str, *, mode: str, distribution: tf.distribute.Strategy,
         precision: tuple[str, str], jit_compile: tuple[bool, str], checkpoint: Optional[str], plan: Optional[list],
         start: float, verbose: int, allow_config_change: bool) -> dict:  # fmt: skip
    """`precision` and `jit_compile` are pick_precision's and pick_jit_compile's (choice, reason)."""
    keras.mixed_precision.set_global_policy(precision[0])
    if config.train.deterministic:
        make_deterministic(config.train.seed)
    else:
        keras.utils.set_random_seed(config.train.seed)
    train, evaluation, info = make_data(config, distribution)
    global_batch, replicas = config.data.batch_size, distribution.num_replicas_in_sync
    learning_rate = scaled_learning_rate(config.optimizer.lr_per_256, global_batch)
    if verbose:
        print(f"{mode} {config.model.name} on {info.name} ({info.num_train} train, {info.num_eval} eval images, "
              f"{info.num_classes} classes) in {precision[0]} ({precision[1]}), XLA {'on' if jit_compile[0] else 'off'} "
              f"({jit_compile[1]}), {describe(distribution)}, global batch {global_batch} "
              f"({global_batch // replicas} per replica), peak learning rate {learning_rate:g} "
              f"({config.optimizer.lr_per_256:g} per 256 images), sync BatchNorm "
              f"{'on' if config.train.sync_batchnorm else 'off'}, "
              f"{'deterministic (op determinism on)' if config.train.deterministic else 'seed ' + str(config.train.seed)}, "
              f"model_dir {model_dir}\n"
              f"{json.dumps(config.to_dict(), indent=2)}")  # fmt: skip

    with distribution.scope():
        # Initial weights are loaded even when a checkpoint will be restored over them, so a run
        # whose checkpoints all turn out unreadable still starts from them.
        model = model_from_config(config.model, info.num_classes, None if mode == "eval" else config.model.init_weights)
        synchronize_batchnorm(model, config.train.sync_batchnorm)
        compile_model(model, config, info.num_train // global_batch, jit_compile[0])
        ema = ExponentialMovingAverage(config.train.ema_decay) if config.train.ema_decay else None
    report = EpochReport(global_batch, print_epochs=verbose == 2)
    if mode == "eval":
        restore_inference_weights(checkpoint, model, ema)
        history = []
    else:
        # Written only now that the data, batch size, model and init weights are known to work, so a
        # failed start leaves nothing that would make the corrected command a "different config".
        if write_dir == model_dir:  # the chief; the others checked the chief's config in run()
            prepare_model_dir(model_dir, config, allow_config_change)
        atomic_write_text(os.path.join(write_dir, "class_names.json"), json.dumps(info.class_names) + "\n")
        checkpointer = Checkpointer(model_dir, ema=ema, keep=config.train.keep_checkpoints, verbose=verbose,
                                    write_directory=write_dir, data=None if config.data.service else info.state,
                                    every_steps=config.train.checkpoint_every_steps)  # fmt: skip
        callbacks = [ProgressiveLearning(plan, info.state, verbose=verbose), *([ema] if ema else []), report, checkpointer,
                     keras.callbacks.TensorBoard(os.path.join(write_dir, "tensorboard"), write_graph=False)]  # fmt: skip
        # shuffle=False: the pipeline shuffles itself (Keras would warn that it ignores shuffle=True).
        model.fit(train, epochs=config.train.epochs, callbacks=callbacks, verbose=1 if verbose == 1 else 0, shuffle=False,
                  validation_data=evaluation if mode == "train_and_eval" else None)  # fmt: skip
        history = checkpointer.history
        if ema is not None:
            ema.copy_to_model()
    results = model.evaluate(evaluation, verbose=0, return_dict=True)
    title = f"{config.model.name} on {info.name}"
    weights = f"{'EMA' if ema is not None else 'raw'} weights, {config.data.eval_size} px, {info.num_eval} images"
    line = summary_line(title, results, weights, time.perf_counter() - start, report)
    if mode != "eval":
        atomic_write(os.path.join(write_dir, "model.keras"), lambda tmp: model.save(tmp))
        plot_history(history, os.path.join(write_dir, "history.png"), title)
    if verbose:
        print(line)
    return {**results, "summary": line, "history": history, "model": model}
