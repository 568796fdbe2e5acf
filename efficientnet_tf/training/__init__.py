"""Training pieces, each usable alone with a plain `model.fit`.

    from efficientnet_tf.training import ProgressiveLearning, ExponentialMovingAverage, Checkpointer

`load_trained` gives a finished or still-training run's model with its
inference (EMA) weights, class names and eval preprocessing.

`trainer.run` wires them from a config for `train.py`; a notebook can do
the same by hand (see examples/quickstart.ipynb).
"""

from efficientnet_tf.errors import import_tensorflow

import_tensorflow("efficientnet_tf.training")

from efficientnet_tf.training.checkpoint import Checkpointer, TrainingDiverged, latest_checkpoint, restore
from efficientnet_tf.training.config import Config, build_config, resolve
from efficientnet_tf.training.ema import ExponentialMovingAverage
from efficientnet_tf.training.loading import Trained, load_trained
from efficientnet_tf.training.optimizer import RMSprop, add_weight_decay, make_optimizer
from efficientnet_tf.training.preemption import Preempted
from efficientnet_tf.training.progressive import ProgressiveLearning, Stage, progressive_stages
from efficientnet_tf.training.reproducibility import make_deterministic
from efficientnet_tf.training.schedules import WarmupSchedule, scaled_learning_rate

__all__ = [
    "Checkpointer", "Config", "ExponentialMovingAverage", "Preempted", "ProgressiveLearning", "RMSprop", "Stage", "Trained", "TrainingDiverged",
    "WarmupSchedule", "add_weight_decay", "build_config", "latest_checkpoint", "load_trained", "make_deterministic", "make_optimizer",
    "progressive_stages", "resolve", "restore", "scaled_learning_rate",
]  # fmt: skip
