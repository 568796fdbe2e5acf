"""tf.data service: the train pipeline on a dispatcher and two workers (127.0.0.1), progressive
stages through it, and the one-line errors for a dispatcher that is not there or not an address."""

import os
import select
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.data import AugmentState, array_source, make_datasets
from efficientnet_tf.data.service import check_dispatcher, parse_address
from efficientnet_tf.training.config import resolve
from efficientnet_tf.training.progressive import ProgressiveLearning, progressive_stages
from harness import assert_one_line_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE = tf.data.experimental.service
NUM_TRAIN, BATCH = 40, 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dispatcher():
    """An in-process dispatcher and two workers; yields the dispatcher's address and the workers."""
    server = SERVICE.DispatchServer(SERVICE.DispatcherConfig(port=0))
    address = f"127.0.0.1:{server.target.rsplit(':', 1)[1]}"
    config = SERVICE.WorkerConfig(dispatcher_address=address, worker_address="127.0.0.1:%port%")
    workers = [SERVICE.WorkerServer(config) for _ in range(2)]
    yield f"grpc://{address}", server
    for worker in workers:
        worker.stop()
    server.stop()


def tiny_source():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (NUM_TRAIN + 8, 24, 24, 3), dtype=np.uint8)
    labels = np.arange(NUM_TRAIN + 8) % 4
    return array_source((images[:NUM_TRAIN], labels[:NUM_TRAIN]), (images[NUM_TRAIN:], labels[NUM_TRAIN:]), list("abcd"))


class SeenSize(keras.layers.Layer):
    """Records the height of the batch that reached the model."""

    def build(self, shape):
        self.height = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False)

    def call(self, x):
        self.height.assign(keras.ops.shape(x)[1])
        return x


def test_progressive_stages_reach_the_model_through_the_service(dispatcher):
    address, server = dispatcher
    state = AugmentState(16)
    # No RandAugment: its graph takes the workers long to build on a loaded CI machine; the size is what the model shows.
    train, _, _ = make_datasets(tiny_source(), family="efficientnetv2", image_size=16, batch_size=BATCH,
                                augmentation=None, state=state, service=address, seed=0)  # fmt: skip
    seen = SeenSize()
    model = keras.Sequential([keras.Input((None, None, 3)), seen, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
    sizes = {}  # epoch -> the heights of its batches, as the model saw them
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: sizes.setdefault(epoch, []),
        on_train_batch_end=lambda batch, logs: sizes[max(sizes)].append(int(seen.height.numpy())),
    )
    stages = progressive_stages(2, 2, image_size=(16, 24))
    model.fit(train, epochs=2, verbose=0, callbacks=[ProgressiveLearning(stages, state, verbose=0), record])
    assert server._num_workers() == 2
    assert sorted(sizes) == [0, 1]
    assert set(sizes[0]) == {16} and set(sizes[1]) == {24}, sizes
    for batches in sizes.values():
        # distributed_epoch: every example is dealt out once per epoch; each worker drops its last partial batch.
        assert (NUM_TRAIN - 2 * (BATCH - 1)) // BATCH <= len(batches) <= NUM_TRAIN // BATCH
    assert state.epoch.numpy() == 2  # the trainer's pass counter advanced, not a worker's copy


def test_a_tfds_split_is_dealt_out_once_per_pass(dispatcher, tmp_path):
    """distributed_epoch on a TFDS split (TFRecord files): the workers share one pass, no example twice."""
    import tensorflow_datasets as tfds

    tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()  # TFDS's offline fake MNIST, 20 train images
    address, _ = dispatcher
    train, _, _ = make_datasets("dummy_mnist", data_dir=str(tmp_path), family="efficientnetv2-base", image_size=16,
                                batch_size=BATCH, augmentation=None, service=address)  # fmt: skip
    shapes = [x.shape for x, _ in train.as_numpy_iterator()]
    # parallel_epochs would give each worker's whole pass (40 images); each worker drops its last partial batch.
    assert (20 - 2 * (BATCH - 1)) // BATCH <= len(shapes) <= 20 // BATCH
    assert set(shapes) == {(BATCH, 16, 16, 3)}


@pytest.mark.parametrize("address", ["localhost", "http://127.0.0.1:5050", "grpc://127.0.0.1:99999", "grpc://:5050"])
def test_a_malformed_address_is_one_line(address):
    with pytest.raises(ValueError) as error:
        parse_address(address)
    assert_one_line_error(error, ValueError, "is not a tf.data service dispatcher address grpc://HOST:PORT")
    with pytest.raises(ValueError) as error:
        resolve({"data.service": address, "model.name": "efficientnetv2-b0"})
    assert_one_line_error(error, ValueError, f"data.service {address!r}")


def test_an_unreachable_dispatcher_is_one_line_naming_the_command():
    port = free_port()
    with pytest.raises(OSError) as error:
        check_dispatcher(f"grpc://127.0.0.1:{port}", timeout=2.0)
    assert_one_line_error(error, OSError, f"python -m efficientnet_tf.data.service dispatcher --port={port}")
    assert f"No tf.data service dispatcher answers at 127.0.0.1:{port}" in str(error.value)


def test_deterministic_training_is_refused_through_the_service():
    with pytest.raises(ValueError) as error:
        resolve({"data.service": "grpc://127.0.0.1:5050", "train.deterministic": True, "model.name": "efficientnetv2-b0"})
    assert_one_line_error(error, ValueError, "train.deterministic cannot hold through data.service")


def start(*args, timeout=60):
    """`python -m efficientnet_tf.data.service ARGS` in its own process, once it printed its address line."""
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "efficientnet_tf.data.service", *args, "--host=127.0.0.1"],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            line = process.stdout.readline()
            assert line.startswith("tf.data service"), line
            return process, line
    process.kill()
    raise AssertionError(f"{args} printed no address in {timeout} s")


def train(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


TINY = ["--model=efficientnetv2-b0", "--model.width=0.5", "--model.depth=0.3", "--batch_size=16",
        "--data.synthetic_train=96", "--data.synthetic_eval=32", "--data.image_size=32", "--data.eval_size=32",
        "--progressive.min_image_size=16", "--train.ema_decay=0", "--data.augmentation=none"]  # fmt: skip


def test_train_py_with_no_dispatcher_is_one_line(tmp_path):
    port = free_port()
    address = f"--data.service=grpc://127.0.0.1:{port}"
    result = train(*TINY, "--epochs=1", "--progressive.stages=1", address, f"--model_dir={tmp_path}", timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
    assert f"No tf.data service dispatcher answers at 127.0.0.1:{port}" in line
    assert f"python -m efficientnet_tf.data.service dispatcher --port={port}" in line


@pytest.mark.slow
def test_train_py_through_a_dispatcher_and_two_workers(tmp_path):
    processes = []
    try:
        dispatcher, line = start("dispatcher", "--port=0")
        processes.append(dispatcher)
        address = line.split(" at ", 1)[1].split(";", 1)[0]
        host_port = address.removeprefix("grpc://")
        for _ in range(2):
            processes.append(start("worker", f"--dispatcher={host_port}")[0])
        run = tmp_path / "run"
        result = train(*TINY, "--epochs=2", "--progressive.stages=2", f"--data.service={address}", f"--model_dir={run}")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Stage 2/2 from epoch 2: image 32 px" in result.stdout
        with open(run / "log.csv") as f:
            rows = f.read().splitlines()
        assert len(rows) == 3, rows
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                assert process.wait(timeout=30) == 0
            except subprocess.TimeoutExpired:
                process.kill()
                raise


MIRRORED = """
import sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
service = tf.data.experimental.service
dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
address = "127.0.0.1:" + dispatcher.target.rsplit(":", 1)[1]
config = service.WorkerConfig(dispatcher_address=address, worker_address="127.0.0.1:%port%")
workers = [service.WorkerServer(config) for _ in range(2)]
from efficientnet_tf.training import trainer
from efficientnet_tf.training.config import resolve

config = resolve({"model.name": "efficientnetv2-b0", "model.width": 0.5, "model.depth": 0.3, "data.batch_size": 8,
                  "data.synthetic_train": 48, "data.synthetic_eval": 16, "data.image_size": 32, "data.eval_size": 32,
                  "progressive.min_image_size": 16, "progressive.stages": 2, "train.epochs": 2, "train.ema_decay": 0,
                  "optimizer.warmup_epochs": 0, "data.augmentation": "none", "data.service": "grpc://" + address})
result = trainer.run(config, sys.argv[1], strategy="mirrored", verbose=0)
print("image sizes", [logs["image_size"] for logs in result["history"]])
"""


@pytest.mark.slow
def test_mirrored_replicas_split_the_service_batches(tmp_path):
    """Two replicas: a pass through the service ends after any number of batches, so the trainer takes global
    batches and Keras splits them (per-replica batches left replica 2 an empty last batch)."""
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path / "run")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "image sizes [16.0, 32.0]" in result.stdout
