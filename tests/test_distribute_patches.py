"""The Keras patch for multi-worker fit patches only the code it was written against."""

import keras
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer

from efficientnet_tf.training import keras_patches


def test_the_patched_keras_code_is_the_code_that_was_read():
    # A failure here means a Keras upgrade changed the functions keras_patches.py wraps: check whether
    # keras-team/keras#20585 is fixed upstream (then drop the patch) or re-read and update the patch.
    assert keras_patches.fingerprints() == keras_patches.FINGERPRINTS, (
        f"Keras {keras.__version__} changed the code patched for multi-worker fit ({keras_patches.UPSTREAM})"
    )


def test_apply_wraps_once_and_keeps_the_originals():
    original = tf_trainer.reduce_per_replica
    original = getattr(original, "__wrapped__", original)
    keras_patches.apply()
    keras_patches.apply()
    assert tf_trainer.reduce_per_replica.__wrapped__ is original
    assert not hasattr(tf_trainer.TensorFlowTrainer._maybe_symbolic_build.__wrapped__, "__wrapped__")
    # Outside multi-worker training the wrappers are the original code.
    logs = {"loss": tf.constant(2.5)}
    assert tf_trainer.reduce_per_replica(logs, tf.distribute.get_strategy(), "auto") is not None
    assert float(tf_trainer.reduce_per_replica(logs, tf.distribute.get_strategy(), "auto")["loss"]) == 2.5
