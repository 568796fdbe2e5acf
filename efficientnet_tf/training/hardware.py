"""What the hardware runs well: the mixed-precision policy, XLA, and the tf.distribute strategy.

On CPU, bfloat16 pays only with native bf16 instructions (AVX512_BF16 or
AMX): on an AVX2-only CPU `mixed_bfloat16` trained efficientnetv2-b0 about 8x
slower than float32 (10.2 s vs 1.3 s per step at 64 px, batch 64). Even with
them it depends on the model: on a 2-core AVX512_BF16 EPYC bf16 trained
efficientnet-b0 (224 px, batch 16) 1.47x faster than float32 but
efficientnetv2-s (128 px, batch 16) 0.75x as fast. So on such CPUs "auto" times
both on the run's own model (`probe_precision`) instead of following a rule.

Two waits in tf.distribute can block for many minutes while ignoring
SIGTERM: a multi-worker strategy whose peers never come up, and connecting to
a TPU address nobody answers. Both run under a watchdog that prints one line
and kills the process after `startup_timeout` seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable, Optional, TypeVar

import tensorflow as tf

from efficientnet_tf.errors import one_line
from efficientnet_tf.files import atomic_write_text
from efficientnet_tf.published import keras_home
from efficientnet_tf.validation import check_float

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_COMPILE = ("auto", "true", "false")
PROBE_POLICIES = ("float32", "mixed_bfloat16")
BF16_MIN_SPEEDUP = 1.1  # the probe picks bf16 only this much faster than float32: a near tie is noise
PROBE_MAX_BATCH = 64  # per-replica batches above this are probed at this size, to keep the probe to seconds
PROBE_TIMEOUT = 600.0
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
TF_CONFIG_EXAMPLE = (
    """TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'"""
)
T = TypeVar("T")


class WorkerLost(RuntimeError):
    """A peer worker stopped answering; the checkpoints stop at the last finished epoch."""


def _cpuinfo(path: str = "/proc/cpuinfo") -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_has_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    flags = _cpuinfo(cpuinfo_path)
    return "avx512_bf16" in flags or "amx_bf16" in flags


def describe_cpu(cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """The CPU's name, core count and the instructions our speed depends on, for benchmark reports."""
    info = _cpuinfo(cpuinfo_path)
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), None)
    words = set(info.split())
    has = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni") if flag in words]
    return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} cores, {' '.join(has) or 'no AVX2'}"


@dataclasses.dataclass(frozen=True)
class ProbeTarget:
    """What the run trains first, for timing float32 against bf16: the model, its first-stage size, the per-replica batch."""

    model: str
    image_size: int
    batch_size: int
    width: Optional[float] = None
    depth: Optional[float] = None


def pick_precision(requested: str = "auto", strategy: Optional[tf.distribute.Strategy] = None,
                   probe: Optional[ProbeTarget] = None) -> tuple[str, str]:  # fmt: skip
    """The policy to train with and why: `requested`, or for "auto" the fastest one, never slower than float32.

    TPUs and GPUs follow the hardware rule. CPUs without native bf16 take
    float32; with it, `probe` is timed in both (`probe_precision`), and
    without a `probe` they take float32. mixed_float16 gets dynamic loss
    scaling from `model.compile`; the models keep logits and softmax in
    float32 under either mixed policy.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {', '.join(PRECISIONS)}, got {requested!r}.")
    if requested != "auto":
        return requested, "requested"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16", "auto: TPU"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        major, minor = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        # bf16 from Ampere on; float16 (with loss scaling) on Volta/Turing tensor cores.
        policy = "mixed_bfloat16" if major >= 8 else "mixed_float16" if major >= 7 else "float32"
        return policy, f"auto: GPU compute capability {major}.{minor}"
    if not cpu_has_bf16():
        return "float32", "auto: this CPU has no native bf16 (AVX512_BF16/AMX), where bf16 trains several times slower"
    from efficientnet_tf.training.keras_patches import is_multi_worker

    if strategy is not None and is_multi_worker(strategy):
        return "float32", "auto: multi-worker on CPUs, where each worker's probe could decide differently"
    if probe is None:
        return "float32", "auto: no model to time bf16 against float32 on this CPU"
    return probe_precision(probe)


def probe_cache_path() -> str:
    """The probe's decisions, one per CPU, TF version, model, size and batch, in the Keras cache."""
    return os.path.join(keras_home(), "efficientnet_tf", "precision_probe.json")


def probe_precision(target: ProbeTarget) -> tuple[str, str]:
    """float32 or mixed_bfloat16, whichever trained `target` faster on this CPU, and the measurement.

    A few train steps of both run in a child process, so the caller's model,
    graph, global policy and random state are untouched. The decision is
    cached (`probe_cache_path`); delete the file to time again. A probe that
    fails or times out gives float32 and is not cached.
    """
    target = dataclasses.replace(target, batch_size=min(target.batch_size, PROBE_MAX_BATCH))
    path, key = probe_cache_path(), _probe_key(target)
    cache = _read_json(path)
    described = f"{target.model} at {target.image_size} px, batch {target.batch_size}"
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("policy") in PROBE_POLICIES and isinstance(entry.get("bf16_vs_float32"), float):
        return entry["policy"], f"auto: probe: bf16 {entry['bf16_vs_float32']:.2f}x float32 for {described} (cached in {path})"
    start = time.perf_counter()
    try:
        rates = _time_in_child(target)
    except (subprocess.SubprocessError, OSError, ValueError) as e:
        return "float32", f"auto: the bf16 probe failed ({one_line(e)[:200]}), so float32"
    seconds = time.perf_counter() - start
    speedup = rates["mixed_bfloat16"] / rates["float32"]
    policy = "mixed_bfloat16" if speedup >= BF16_MIN_SPEEDUP else "float32"
    cache[key] = {"policy": policy, "bf16_vs_float32": round(speedup, 3), "img_per_s": rates, "probe_seconds": round(seconds, 1)}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write_text(path, json.dumps(cache, indent=1, sort_keys=True) + "\n")
        saved = f"cached in {path}"
    except OSError as e:
        saved = f"not cached: {e}"
    return policy, f"auto: probe: bf16 {speedup:.2f}x float32 for {described} (timed in {seconds:.0f} s, {saved})"


def _probe_key(target: ProbeTarget) -> str:
    scale = "" if target.width is None and target.depth is None else f" width {target.width} depth {target.depth}"
    return f"{describe_cpu()}; TF {tf.__version__}; {target.model}{scale}; {target.image_size} px; batch {target.batch_size}"


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):  # missing or torn by hand: probe again
        return {}
    return data if isinstance(data, dict) else {}


def _time_in_child(target: ProbeTarget) -> dict[str, float]:
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(dataclasses.asdict(target))], env=env,
                          capture_output=True, text=True, timeout=PROBE_TIMEOUT)  # fmt: skip
    if done.returncode:
        last_line = (done.stderr.strip().splitlines() or [""])[-1]
        raise ValueError(f"exit status {done.returncode}: {last_line}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_rates(target: ProbeTarget) -> dict[str, float]:
    """Training images/s of `target` in float32 and mixed_bfloat16: built side by side, 3 alternating rounds of 2 steps, medians.

    Sets the global policy: the probe runs it in a process of its own.
    """
    import keras
    import numpy as np

    import efficientnet_tf

    size, batch = target.image_size, target.batch_size
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, 1000, batch))
    models = {}
    for policy in PROBE_POLICIES:
        keras.mixed_precision.set_global_policy(policy)
        model = efficientnet_tf.get_model(target.model, input_shape=(size, size, 3), num_classes=1000, width=target.width,
                                          depth=target.depth)  # fmt: skip
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(), jit_compile=False)
        for _ in range(2):  # trace, then one warm step
            model.train_on_batch(images, labels)
        models[policy] = model
    seconds: dict[str, list[float]] = {policy: [] for policy in PROBE_POLICIES}
    order = list(PROBE_POLICIES)
    for _ in range(3):
        for policy in order:
            start = time.perf_counter()
            for _ in range(2):
                models[policy].train_on_batch(images, labels)
            seconds[policy].append(time.perf_counter() - start)
        order.reverse()
    return {policy: round(batch * 2 / statistics.median(times), 2) for policy, times in seconds.items()}


_PROBE = """
import json, sys
from efficientnet_tf.training.hardware import ProbeTarget, train_rates
print(json.dumps(train_rates(ProbeTarget(**json.loads(sys.argv[1])))))
"""


def pick_jit_compile(requested: str = "auto", strategy: Optional[tf.distribute.Strategy] = None,
                     deterministic: bool = False) -> tuple[bool, str]:  # fmt: skip
    """Whether to XLA-compile the train step, and why: on for GPUs and TPUs, off on CPUs, where it only adds compile time."""
    if requested not in JIT_COMPILE:
        raise ValueError(f"jit_compile must be one of {', '.join(JIT_COMPILE)}, got {requested!r}.")
    if requested != "auto":
        return requested == "true", "requested"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True, "auto: TPU"
    if not tf.config.list_physical_devices("GPU"):
        return False, "auto: CPU"
    if deterministic:
        return False, "auto: train.deterministic (op determinism does not cover XLA)"
    return True, "auto: GPU"


def make_strategy(name: str = "auto", tpu: Optional[str] = None, startup_timeout: float = 600.0) -> tf.distribute.Strategy:
    """The tf.distribute strategy for `name`.

    "auto": a TPU when `tpu` is given or TPU_NAME is set;
    multi_worker when TF_CONFIG lists several tasks; MirroredStrategy over
    several local GPUs; else the default (one device). "multi_worker" reads
    the cluster from TF_CONFIG; "tpu" connects to `tpu` (a name, a
    grpc://host:port address or "local"; default TPU_NAME, else "local").
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}.")
    check_float("startup_timeout", startup_timeout, min=0.0, min_open=True)
    gpus = tf.config.list_physical_devices("GPU")  # logical devices would initialize TF before multi-worker setup
    if name == "auto":
        if tpu or os.environ.get("TPU_NAME"):  # device files (/dev/accel*, /dev/vfio) are not TPU-specific
            name = "tpu"
        elif "TF_CONFIG" in os.environ and _cluster_size(_tf_config()) > 1:
            name = "multi_worker"
        else:
            name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return _multi_worker_strategy(startup_timeout)
    return _tpu_strategy(tpu or os.environ.get("TPU_NAME") or "local", startup_timeout)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: the chief, else worker 0; always true on one machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def describe(strategy: tf.distribute.Strategy) -> str:
    """`MultiWorkerMirroredStrategy, 2 replica(s), worker 1 of 2 tasks` for the start-of-run line."""
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)  # class name CollectiveAllReduceStrategy
    name = "the default strategy" if strategy is tf.distribute.get_strategy() else type(strategy).__name__
    name = "MultiWorkerMirroredStrategy" if multi_worker else name
    text = f"{name}, {strategy.num_replicas_in_sync} replica(s)"
    resolver = getattr(strategy, "cluster_resolver", None)
    if multi_worker and resolver is not None and resolver.task_type:
        tasks = sum(len(v) for v in resolver.cluster_spec().as_dict().values())
        text += f", {resolver.task_type} {resolver.task_id} of {tasks} tasks{' (chief)' if is_chief(strategy) else ''}"
    return text


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise ValueError(f"strategy multi_worker needs the cluster in TF_CONFIG, e.g. {TF_CONFIG_EXAMPLE}.")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}); it looks like {TF_CONFIG_EXAMPLE}.") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError(f"TF_CONFIG needs a \"cluster\" and a \"task\" object; it looks like {TF_CONFIG_EXAMPLE}.")
    task_type, index = task.get("type"), task.get("index")
    members = cluster.get(task_type)
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise ValueError(f"TF_CONFIG task {task!r} is not in its cluster {cluster!r}; give each process its own "
                         "task type and index from the cluster.")  # fmt: skip
    return config


def _cluster_size(config: dict) -> int:
    return sum(len(v) for v in config["cluster"].values() if isinstance(v, list))


def _multi_worker_strategy(startup_timeout: float) -> tf.distribute.Strategy:
    from efficientnet_tf.training import keras_patches

    config = _tf_config()
    keras_patches.apply()
    task = config["task"]
    peers = _cluster_size(config) - 1
    return within(
        startup_timeout, tf.distribute.MultiWorkerMirroredStrategy,
        f"strategy multi_worker: {task['type']} {task['index']} did not reach its {peers} peer(s) in TF_CONFIG within "
        f"{startup_timeout:g} s; start every task listed there (same command), or raise --startup_timeout.",
    )  # fmt: skip


def _tpu_strategy(tpu: str, startup_timeout: float) -> tf.distribute.Strategy:
    def connect():
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)

    fix = "pass --tpu=NAME, --tpu=grpc://HOST:8470 or --tpu=local on a TPU VM, or another --strategy"
    try:
        return within(startup_timeout, connect, f"strategy tpu: no TPU answered at {tpu!r} within {startup_timeout:g} s; {fix}.")
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        cause = one_line(getattr(e, "message", e))[:200]
        raise ValueError(f"strategy tpu: no TPU reachable at {tpu!r} ({type(e).__name__}: {cause}); {fix}.") from None


def within(seconds: float, start: Callable[[], T], message: str) -> T:
    """`start()`, or after `seconds` print `message` and SIGKILL this process.

    For tf.distribute waits that block in C++ holding the GIL and ignore
    SIGTERM: no thread of this process can stop them, so a small watchdog
    process does, unless `start()` returns first.
    """
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), f"error: {message}"])
    try:
        return start()
    finally:
        watchdog.kill()
        watchdog.wait()


_WATCHDOG = """
import os, signal, sys, time
pid, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(seconds)
if os.getppid() == pid:  # never a recycled process id
    print(message, file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)
"""
