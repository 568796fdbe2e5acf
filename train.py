"""Train and evaluate EfficientNet / EfficientNetV2 with the papers' recipes.

    python train.py --model=efficientnetv2-s --dataset=imagenet2012 --data_dir=~/tensorflow_datasets
    python train.py --model=efficientnetv2-b0                    # the built-in dataset, minutes on a CPU
    python train.py --dataset=/path/to/images --optimizer.lr_per_256=0.008 --train.ema_decay=0.999
    TF_CONFIG='{"cluster": {"worker": ["a:2222", "b:2222"]}, "task": {"type": "worker", "index": 0}}' \
        python train.py --strategy=multi_worker --model_dir=/shared/run   # the same on b with index 1

Every config field can be set by its dotted name (see configs/ and
efficientnet_tf/training/config.py); the resolved config is printed and
saved in --model_dir. Rerunning the same command resumes from the last
finished epoch, or mid-epoch from a mid-epoch checkpoint.

On SIGTERM (spot VMs, Kubernetes and Slurm send it before they kill a job)
the run saves a checkpoint at the next step boundary (an evaluation in
progress is abandoned; a checkpoint being written is finished), prints one
line naming it, and exits with status 143 (128 + SIGTERM); rerunning the
same command resumes at that step. --train.checkpoint_every_steps=N also
saves one every N steps, which bounds what a SIGKILL loses.
"""

from __future__ import annotations

import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "efficientnetv2-s", "Model name (python -m efficientnet_tf.summary lists them).")
flags.DEFINE_string("dataset", "synthetic",
                    "A preset (imagenet2012, cifar10, cifar100, tf_flowers, oxford_flowers102, synthetic), "
                    "a TFDS name, an image folder with one subfolder per class, or tfrecord "
                    "(ImageNet-layout train-*/validation-* shards in --data_dir).")  # fmt: skip
flags.DEFINE_string("eval_dir", None, "Held-out image folder (default: 10% of the training folder).")
flags.DEFINE_string("data_dir", None, "TFDS data directory, or the shards' folder (local or gs://) for --dataset=tfrecord.")
flags.DEFINE_string("model_dir", None, "Run directory (default: runs/<model>-<dataset>).")
flags.DEFINE_integer("epochs", None, "Training epochs (default: the recipe's).")
flags.DEFINE_integer("batch_size", None, "Global batch size (default: the recipe's).")
flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval"],
                  "train_and_eval validates every epoch; train only once at the end; eval evaluates the newest checkpoint.")  # fmt: skip
flags.DEFINE_enum("mixed_precision", None, ["auto", "float32", "mixed_bfloat16", "mixed_float16"],
                  "Precision policy (default auto: bfloat16 only where the hardware runs it fast).")  # fmt: skip
flags.DEFINE_enum("jit_compile", None, ["auto", "true", "false"],
                  "XLA-compile the train step (default auto: on for GPUs and TPUs, off on CPUs).")  # fmt: skip
flags.DEFINE_enum("strategy", "auto", ["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy. auto: a TPU if one resolves, multi_worker if TF_CONFIG lists several "
                  "tasks, mirrored over several GPUs, else one device. --batch_size is global.")  # fmt: skip
flags.DEFINE_string("tpu", None, "TPU name or grpc://host:port address (default TPU_NAME, else 'local' on a TPU VM).")
flags.DEFINE_float("startup_timeout", 600, "Seconds to wait for multi-worker peers or a TPU before giving up.")
flags.DEFINE_bool("sync_batchnorm", None, "BatchNorm statistics over the global batch when there are several replicas.")
flags.DEFINE_string("init_weights", None,
                    "Weights to start from: a name (imagenet, noisy-student, ...; see efficientnet_tf.weights.weights_names), "
                    "a weights or .keras file, or an official checkpoint; a head of another size starts fresh. "
                    "An image folder defaults to imagenet; none trains from scratch.")  # fmt: skip
flags.DEFINE_enum("schedule", "paper", ["paper", "automl"],
                  "Progressive-learning schedule: the V2 paper's Table 6, or the released google/automl one.")  # fmt: skip
flags.DEFINE_bool("allow_config_change", False, "Continue a run in --model_dir although the config differs.")

FLAGS = flags.FLAGS
NAMED = {"epochs": "train.epochs", "batch_size": "data.batch_size", "data_dir": "data.data_dir",
         "eval_dir": "data.eval_dir", "mixed_precision": "train.mixed_precision", "init_weights": "model.init_weights",
         "sync_batchnorm": "train.sync_batchnorm", "jit_compile": "train.jit_compile"}  # fmt: skip


def parse_flags(argv: list[str]) -> list[str]:
    """absl parses the named flags; `--section.field=value` config overrides pass through to main."""
    dotted = [a for a in argv[1:] if a.startswith("--") and "." in a.split("=", 1)[0]]
    rest = flags.FLAGS([a for a in argv if a not in dotted])
    if len(rest) > 1:
        raise app.UsageError(f"Unexpected arguments {rest[1:]}; flags look like --name=value.")
    return rest[:1] + dotted


def main(argv: list[str]) -> int:
    import logging

    import configs
    from efficientnet_tf.training import trainer
    from efficientnet_tf.training.config import parse_overrides

    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # tf.distribute logs every collective at INFO

    named = {dotted: getattr(FLAGS, flag) for flag, dotted in NAMED.items() if getattr(FLAGS, flag) is not None}
    config = configs.recipe(FLAGS.model, FLAGS.dataset, FLAGS.schedule, {**named, **parse_overrides(argv[1:])})
    dataset_name = os.path.basename(os.path.normpath(config.data.dataset))
    model_dir = FLAGS.model_dir or os.path.join("runs", f"{config.model.name}-{dataset_name}")
    trainer.run(config, model_dir, mode=FLAGS.mode, strategy=FLAGS.strategy, tpu=FLAGS.tpu,
                startup_timeout=FLAGS.startup_timeout, allow_config_change=FLAGS.allow_config_change)
    return 0


# The library's keyword arguments that error messages name, and the flags that set them here.
NAMED_ARGUMENTS = {"weights": "init_weights", "batch_size": "batch_size"}


def cli_wording(message: str) -> str:
    """The library's messages name its Python arguments (`weights=`, `batch_size=`); here they are flags."""
    message = re.sub(r"(?<![-\w])weights=None\b", "--init_weights=none", message)
    return re.sub(r"(?<![-\w])(weights|batch_size)=", lambda m: f"--{NAMED_ARGUMENTS[m[1]]}=", message)


def run_cli() -> None:
    """Bad input ends with one line naming the fix and a non-zero exit, never a traceback."""
    from efficientnet_tf.training.checkpoint import TrainingDiverged
    from efficientnet_tf.training.hardware import WorkerLost
    from efficientnet_tf.training.preemption import EXIT_CODE, Preempted

    try:
        app.run(main, flags_parser=parse_flags)
    except (flags.Error, app.UsageError) as e:
        print(f"train.py: error: {e}; `python train.py --help` lists the flags.", file=sys.stderr)
        sys.exit(2)
    except (ValueError, OSError, TrainingDiverged, WorkerLost) as e:
        print(f"train.py: error: {cli_wording(str(e))}", file=sys.stderr)
        sys.exit(2)
    except Preempted as e:
        print(f"train.py: {e}", file=sys.stderr)
        sys.exit(EXIT_CODE)
    except KeyboardInterrupt:
        print("train.py: interrupted; rerun the same command to resume from the last checkpoint.", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run_cli()
