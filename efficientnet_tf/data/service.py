"""tf.data service: CPU machines run the training pipeline and stream its batches to the trainer.

    python -m efficientnet_tf.data.service dispatcher --port=5050                # one, anywhere
    python -m efficientnet_tf.data.service worker --dispatcher=HOST:5050         # one per CPU machine
    python train.py ... --data.service=grpc://HOST:5050

Why it is built this way:

- A dataset sent to workers is serialized into a graph that runs in their
  processes. The `AugmentState` variables it reads cannot follow: TF 2.21
  raises nothing and sends the values they hold at that moment, frozen, and
  the pass counter then advances on a worker's copy, so every epoch would
  replay pass 0. The train pipeline therefore sends each pass afresh when the
  trainer starts it, with the state's values of that moment as constants.
  `ProgressiveLearning` sets a stage in `on_epoch_begin`, before Keras'
  `fit` draws the epoch's first batch, so each epoch runs on its stage's
  values, through the service as locally.
- processing_mode "distributed_epoch": the dispatcher deals the examples
  (splits of the source) out to the workers, so an epoch is one pass over the
  data shared by all of them. With "parallel_epochs" every worker would run
  the whole pass with the same random keys: each batch once per worker.
  Examples a worker holds when it is lost are skipped for that epoch.
- Each worker counts the examples and batches it makes from 0, so random
  keys by position would repeat on every worker; through the service each
  position key takes fresh entropy instead. The batches' order and content
  depend on the workers' timing: runs through the service are not
  reproducible, and a resumed epoch is not the one that was interrupted.
- What workers run must be graph ops: image folders (whose bad-file log runs
  Python on the trainer) are refused. A TFDS train split skips TFDS's own
  count check, which fails on workers that each read part of the split.
- Keras' `fit` starts a fresh iterator each epoch; through the service an
  epoch's length is not known in advance (each worker drops its last
  partial batch), so the dataset states none.
- The trainer checks that the dispatcher answers (a TCP connect with a short
  timeout) before it starts; tf.data itself would retry for a long time.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import sys
import threading
import warnings

import tensorflow as tf

from efficientnet_tf.errors import one_line

PROCESSING_MODE = "distributed_epoch"
DEFAULT_PORT = 5050
_ADDRESS = re.compile(r"(?:grpc://)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})")
_MODULE = "python -m efficientnet_tf.data.service"
_START_DISPATCHER = _MODULE + " dispatcher --port={port}"


def parse_address(address: str, what: str = "data.service") -> tuple[str, int]:
    """(host, port) of `grpc://HOST:PORT` or `HOST:PORT`; raises ValueError naming `what` otherwise."""
    match = _ADDRESS.fullmatch(address.strip()) if isinstance(address, str) else None
    port = int(match["port"]) if match else 0
    if not match or not 0 < port < 65536:
        raise ValueError(
            f"{what} {address!r} is not a tf.data service dispatcher address grpc://HOST:PORT; start a dispatcher "
            f"with `{_START_DISPATCHER.format(port=DEFAULT_PORT)}` and pass the address it prints."
        )
    return match["host"], port


def check_dispatcher(address: str, timeout: float = 5.0, what: str = "data.service") -> str:
    """`address` as grpc://HOST:PORT once something accepts connections there, else a one-line OSError naming the fix."""
    host, port = parse_address(address, what)
    try:
        socket.create_connection((host.strip("[]"), port), timeout=timeout).close()
    except OSError as e:
        fix = f"start it there with `{_START_DISPATCHER.format(port=port)}`"
        if what == "data.service":
            fix += f" and workers with `{_MODULE} worker --dispatcher={host}:{port}`, or train without --data.service"
        reason = e.strerror or type(e).__name__
        raise OSError(f"No tf.data service dispatcher answers at {host}:{port} ({what}={address}: {reason}); {fix}.") from None
    return f"grpc://{host}:{port}"


def distribute(dataset: tf.data.Dataset, address: str) -> tf.data.Dataset:
    """`dataset` run by the service's workers, each example of a pass made once (see the module docstring)."""
    with warnings.catch_warnings():  # inside a tf.data function, distribute() reads the options as TF warns it may
        warnings.filterwarnings("ignore", "To make it possible to preserve tf.data options", UserWarning)
        return dataset.apply(tf.data.experimental.service.distribute(PROCESSING_MODE, address))


def worker_position_key(key: tf.Tensor, position: tf.Tensor) -> tf.Tensor:
    """The key of the example or batch at a worker's `position`, mixed with fresh entropy so workers differ.

    A random op with both seeds 0 draws its seed from the OS when a worker instantiates it,
    whatever the graph or global seed.
    """
    entropy = tf.raw_ops.RandomUniformInt(
        shape=tf.constant([], tf.int32), minval=tf.constant(0, tf.int64), maxval=tf.constant(2**62, tf.int64), seed=0, seed2=0
    )
    return tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(key, position), entropy)


def _serve(args: argparse.Namespace) -> tuple:
    """Starts the server; returns it and the line that tells where it is."""
    service = tf.data.experimental.service
    if args.role == "dispatcher":
        server = service.DispatchServer(service.DispatcherConfig(port=args.port))
        port = int(server.target.rsplit(":", 1)[1])
        return server, (
            f"tf.data service dispatcher at grpc://{args.host}:{port}; start workers with `{_MODULE} worker "
            f"--dispatcher={args.host}:{port}` and train with --data.service=grpc://{args.host}:{port}"
        )
    dispatcher = check_dispatcher(args.dispatcher, what="--dispatcher").removeprefix("grpc://")
    config = service.WorkerConfig(dispatcher_address=dispatcher, worker_address=f"{args.host}:%port%", port=args.port)
    server = service.WorkerServer(config)
    return server, f"tf.data service worker at {args.host}:{server._address.rsplit(':', 1)[1]} for dispatcher {dispatcher}"


def main(argv: list[str] | None = None) -> int:
    """Runs a dispatcher or a worker until SIGTERM or SIGINT; bad input is one line on stderr."""
    parser = argparse.ArgumentParser(prog=_MODULE, description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("dispatcher", "worker"))
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to listen on (dispatcher default {DEFAULT_PORT}, worker: any free port)")  # fmt: skip
    parser.add_argument("--dispatcher", help="the dispatcher's HOST:PORT (workers only)")
    parser.add_argument("--host", default=socket.gethostname(),
                        help="the name other machines reach this one by (default: the host name)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.role == "worker" and not args.dispatcher:
        parser.error("a worker needs --dispatcher=HOST:PORT (the address the dispatcher printed)")
    if args.port is None:
        args.port = DEFAULT_PORT if args.role == "dispatcher" else 0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server, line = _serve(args)
    except (ValueError, OSError) as e:
        print(f"{_MODULE}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # TF's gRPC server says only "Could not start gRPC server"
        print(f"{_MODULE}: error: the {args.role} could not listen on port {args.port} ({one_line(e)}); pass a free --port.",
              file=sys.stderr)  # fmt: skip
        return 2
    print(line, flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
