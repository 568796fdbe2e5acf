"""What a run tells its user: per-epoch learning rate and throughput, the plot, the closing line."""

from __future__ import annotations

import time
from typing import Mapping, Sequence

import keras

from efficientnet_tf.files import atomic_write


class EpochReport(keras.callbacks.Callback):
    """Adds the learning rate and training throughput to each epoch's logs; with `print_epochs`, prints them.

    Throughput counts the training batches only, not validation; the logs
    then reach History, the checkpoint's CSV and TensorBoard alike. The
    printed line (one per epoch, plain text) replaces Keras' progress bar
    where no one watches it: a log file, nohup, Slurm, CI.
    """

    def __init__(self, batch_size: int, print_epochs: bool = False):
        super().__init__()
        self.batch_size = batch_size
        self.print_epochs = print_epochs
        self.train_seconds = 0.0
        self.train_images = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._batches = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if not self._batches:  # an epoch resumed after its last batch
            return
        seconds, images = self._last - self._start, self._batches * self.batch_size
        self.train_seconds += seconds
        self.train_images += images
        logs["images_per_sec"] = images / seconds
        logs["train_seconds"] = self.train_seconds  # cumulative in this process, validation excluded
        if self.print_epochs:
            metrics = ", ".join(f"{name} {logs[name]:.4f}" for name in logs if name.removeprefix("val_") in _METRICS)
            print(f"Epoch {epoch + 1}/{self.params['epochs']}: {metrics}, learning rate {logs['learning_rate']:.3g}, "
                  f"{logs['images_per_sec']:.1f} images/s, {time.perf_counter() - self._start:.0f} s", flush=True)


_METRICS = ("loss", "top1", "top5")  # what the trainer compiles; the schedules' values are in log.csv


PANELS = (
    ("loss", ("loss", "val_loss")),
    ("top-1", ("top1", "val_top1")),
    ("learning rate", ("learning_rate",)),
    ("image size (px)", ("image_size",)),
    ("regularization", ("randaug_magnitude", "mixup_alpha", "cutmix_alpha", "dropout")),
)


def plot_history(history: Sequence[Mapping[str, float]], path: str, title: str = "") -> None:
    """A PNG of the learning curves and the schedules, one panel each, written atomically."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays as it is

    epochs = range(1, len(history) + 1)
    fig = Figure(figsize=(4 * len(PANELS), 3.2))
    axes = fig.subplots(1, len(PANELS))
    for ax, (label, keys) in zip(axes, PANELS):
        for key in keys:
            if any(key in logs for logs in history):
                ax.plot(epochs, [logs.get(key, float("nan")) for logs in history], marker=".", label=key)
        ax.set_title(label)
        if label == "loss":
            ax.set_yscale("log")  # an early validation loss can be orders of magnitude off
        ax.set_xlabel("epoch")
        if len(keys) > 1:
            ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))


def summary_line(title: str, results: Mapping[str, float], weights: str, wall_seconds: float, report: EpochReport) -> str:
    """`title: top-1 .., top-5 .. (weights); N s wall, M training images/s` (top-5 where it was measured)."""
    speed = f"{report.train_images / report.train_seconds:.1f}" if report.train_seconds else "n/a"
    top5 = f", top-5 {results['top5']:.4f}" if "top5" in results else ""
    return (
        f"{title}: top-1 {results['top1']:.4f}{top5} ({weights}); "
        f"{wall_seconds:.0f} s wall, {speed} training images/s"
    )

