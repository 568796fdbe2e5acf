"""Where files go: local disk or a bucket, written so a crash (even SIGKILL) never leaves a torn file behind.

Every user path may be a local path or a URL that TensorFlow's filesystems
reach (``gs://bucket/run``, ``s3://`` with tensorflow-io, ``ram://`` in
tests); readers call ``tf.io.gfile`` directly, which takes both. Only the
helpers that add something live here.

A reader, or a run resumed after a crash, sees either the previous file or
the complete new one. On local disk the new content goes to a temporary file
in the same directory (same filesystem, so the rename is atomic), is fsynced,
then renamed over the target. On an object store the content is written
locally, uploaded under a temporary name (an object appears only once its
upload completes) and renamed onto the target: a crash leaves at most a
``.tmp-*`` object that no reader matches.

TensorFlow is imported only for URLs, so local writers stay cheap to import.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import types
import uuid
from typing import Callable, Iterator, Optional

from efficientnet_tf.errors import import_tensorflow, one_line

# Temporary files start with this prefix and end with the target's own name, so
# writers that insist on a suffix (".keras", ".weights.h5", ".npz") accept them.
TEMP_PREFIX = ".tmp-"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Schemes that tensorflow-io adds to TensorFlow when imported.
_TENSORFLOW_IO_SCHEMES = ("s3", "hdfs", "viewfs", "har", "az", "http", "https")


def is_remote(path: str) -> bool:
    """True for a URL such as ``gs://bucket/run``: TensorFlow's filesystems reach it, not the OS."""
    return bool(_URL.match(os.fspath(path)))


# The few tf.io.gfile functions the model path uses, for local paths without TensorFlow.
_LOCAL = types.SimpleNamespace(exists=os.path.exists, isdir=os.path.isdir, listdir=os.listdir, walk=os.walk)


def filesystem(path: str):
    """`tf.io.gfile` for a URL; for a local path the os functions of the same names, so loading weights into a
    model on JAX or PyTorch needs no TensorFlow."""
    if is_remote(path):
        return import_tensorflow(f"Reading {path}").io.gfile
    return _LOCAL


def is_file(path: str) -> bool:
    """True for an existing file (not a directory), local or a URL."""
    fs = filesystem(path)
    return fs.exists(path) and not fs.isdir(path)


def directory_of(path: str) -> str:
    """The directory holding `path`, absolute when local (os.path.abspath would turn ``gs://b`` into ``gs:/b``)."""
    return os.path.dirname(path if is_remote(path) else os.path.abspath(path))


def check_filesystem(path: str, what: str) -> None:
    """Raises a one-line OSError when `path` is a URL whose scheme TensorFlow cannot open.

    Without this a path like ``s3://bucket/run`` fails deep inside a writer,
    or, worse, Python's own file functions make a local folder named ``s3:``.
    tensorflow-io registers its filesystems when imported, so it is imported
    here if installed. No request is sent: reachability shows on first use.
    """
    match = _URL.match(os.fspath(path))
    if not match:
        return
    import tensorflow as tf

    scheme = match.group(1)
    if scheme in tf.io.gfile.get_registered_schemes():
        return
    with contextlib.suppress(ImportError):
        import tensorflow_io  # noqa: F401 (registers s3://, hdfs://, az://, http://)
    if scheme in tf.io.gfile.get_registered_schemes():
        return
    known = ", ".join(f"{s}://" for s in sorted(tf.io.gfile.get_registered_schemes()) if s and s != "file")
    fix = (
        "pip install tensorflow-io (it adds s3://, hdfs://, az:// and http:// to TensorFlow)"
        if scheme in _TENSORFLOW_IO_SCHEMES
        else f"use a local path or one of {known}"
    )
    raise OSError(f"{what} {path!r}: TensorFlow has no filesystem for {scheme}://; {fix}.")


def error_text(error: BaseException) -> str:
    """One line saying why a file operation failed, from an OSError or a TensorFlow error alike."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    message = getattr(error, "message", None)  # tf.errors.OpError
    return one_line(message or f"{type(error).__name__}: {error}".rstrip(": "))


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Calls `write(tmp)` to fill a local temporary file, then moves it onto `path` (local or a URL).

    Any failure removes the temporary file and surfaces as one OSError that
    names `path` and the cause, because "disk full" or "bucket not found"
    deep inside a writer library is otherwise hard to trace back to a file.
    """
    if is_remote(path):
        _atomic_upload(path, write)
        return
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
        _fsync_directory(directory)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if not isinstance(error, Exception):  # KeyboardInterrupt and friends pass through.
            raise
        raise OSError(f"Could not write {path}: {error_text(error)}") from error


def atomic_write_text(path: str, text: str) -> None:
    """`atomic_write` for a text file (UTF-8)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as file:
            file.write(text)

    atomic_write(path, write)


def _atomic_upload(path: str, write: Callable[[str], None]) -> None:
    """Writes locally, uploads as ``.tmp-*-<name>`` beside `path`, renames that onto `path`."""
    import tensorflow as tf

    check_filesystem(path, "output")
    directory, name = path.rsplit("/", 1)
    remote_tmp = f"{directory}/{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}"
    with tempfile.TemporaryDirectory(prefix="efficientnet_tf-") as local:
        try:
            local_file = os.path.join(local, name)
            write(local_file)
            tf.io.gfile.copy(local_file, remote_tmp, overwrite=True)
            tf.io.gfile.rename(remote_tmp, path, overwrite=True)
        except BaseException as error:
            with contextlib.suppress(Exception):
                tf.io.gfile.remove(remote_tmp)
            if not isinstance(error, Exception):
                raise
            raise OSError(f"Could not write {path}: {error_text(error)}") from error


def copy_tree(source: str, destination: str, last: Optional[str] = None) -> None:
    """Copies directory `source` into `destination` file by file (either may be a URL); `last` (a file name) goes last.

    Object stores cannot rename a directory at once, so a reader that checks
    for `last` (a manifest) never takes a half-copied directory for a whole one.
    """
    import tensorflow as tf

    deferred = []
    try:
        for root, _, names in tf.io.gfile.walk(source):
            relative = root[len(source):].strip("/" + os.sep)  # walk joins its directories onto `source`
            target = f"{destination.rstrip('/')}/{relative}" if relative else destination
            tf.io.gfile.makedirs(target)
            for name in names:
                pair = (os.path.join(root, name), f"{target.rstrip('/')}/{name}")
                if root == source and name == last:
                    deferred.append(pair)
                else:
                    tf.io.gfile.copy(*pair, overwrite=True)
        for pair in deferred:
            tf.io.gfile.copy(*pair, overwrite=True)
    except tf.errors.OpError as error:
        raise OSError(f"Could not copy {source} to {destination}: {error_text(error)}") from None


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """`path` itself when local; for a URL, a local copy of the file or directory, removed afterwards.

    h5py, tarfile and Keras' loaders need a local file.
    """
    if not is_remote(path):
        yield path
        return
    import tensorflow as tf

    directory = tempfile.mkdtemp(prefix="efficientnet_tf-")
    try:
        local = os.path.join(directory, path.rstrip("/").rsplit("/", 1)[-1])
        if tf.io.gfile.isdir(path):
            copy_tree(path, local)
        else:
            try:
                tf.io.gfile.copy(path, local)
            except tf.errors.OpError as error:
                raise OSError(f"Could not read {path}: {error_text(error)}") from None
        yield local
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _fsync_directory(directory: str) -> None:
    """Makes the rename itself durable; only POSIX can open a directory for that."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
