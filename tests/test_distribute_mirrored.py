"""MirroredStrategy over 2 logical CPUs: the same training as one device at the same global batch
(with synchronized BatchNorm), and the trainer's distributed input in per-replica batches."""

import json
import os
import subprocess
import sys
import textwrap

TINY_BLOCKS = ["r1_k3_s1_e1_i16_o16_c1", "r1_k3_s2_e4_i16_o24_se0.25"]

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import efficientnet_tf
    from efficientnet_tf.layers import synchronize_batchnorm
    from efficientnet_tf.training import build_config, trainer

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (24, 32, 32, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, 24)]
    GLOBAL_BATCH = 8

    def train(strategy, synchronized, initial):
        with strategy.scope():
            model = efficientnet_tf.get_model("efficientnetv2-b0", blocks=BLOCKS, width=0.5, num_classes=3,
                                              dropout_rate=0.0, survival_prob=1.0)
            model.set_weights(initial)
            synchronize_batchnorm(model, synchronized)
            model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy")

        def per_replica(context):
            batch = context.get_per_replica_batch_size(GLOBAL_BATCH)
            return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)

        data = strategy.distribute_datasets_from_function(per_replica)
        model.fit(data, epochs=1, verbose=0, shuffle=False)
        return [w.numpy() for w in model.weights]

    initial = efficientnet_tf.get_model("efficientnetv2-b0", blocks=BLOCKS, width=0.5, num_classes=3).get_weights()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    one = train(tf.distribute.OneDeviceStrategy("/cpu:0"), False, initial)
    synced = train(mirrored, True, initial)
    local = train(mirrored, False, initial)

    def max_difference(a, b):  # every weight here is O(1)
        return float(max(np.abs(x - y).max() for x, y in zip(a, b)))

    # The trainer's input: per-replica batches, and a new stage's size on both replicas at once.
    config = build_config({"model.name": "efficientnetv2-b0", "data.batch_size": 8, "data.synthetic_train": 32,
                           "data.synthetic_eval": 8, "data.image_size": 32, "data.eval_size": 32})
    train_data, eval_data, info = trainer.make_data(config, mirrored)
    info.state.assign(image_size=24)
    shapes = [tuple(v.shape) for v in mirrored.experimental_local_results(next(iter(train_data))[0])]
    steps = sum(1 for _ in train_data)
    print(json.dumps({"synced": max_difference(one, synced), "local": max_difference(one, local),
                      "moved": max_difference(one, initial), "shapes": shapes, "steps": steps}))
    """
).replace("BLOCKS", repr(TINY_BLOCKS))


def test_two_replicas_with_sync_batchnorm_train_like_one_device_at_the_same_global_batch():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["moved"] > 0.1  # three steps changed the weights
    assert report["synced"] < 2e-6, report  # all weights, BatchNorm moving statistics included
    assert report["local"] > 1e-3, report  # per-replica statistics differ: the comparison can fail
    assert report["shapes"] == [[4, 24, 24, 3]] * 2
    assert report["steps"] == 4  # 32 images / global batch 8
