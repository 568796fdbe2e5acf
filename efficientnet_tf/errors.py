"""One-line error text: messages from TensorFlow, Keras or the OS span lines, and our errors are one line each."""

from __future__ import annotations


def one_line(error: BaseException | str) -> str:
    """The error's message (or the text) with every run of whitespace, newlines included, as one space."""
    return " ".join(str(error).split())


def import_tensorflow(purpose: str):
    """The `tensorflow` module, or an ImportError whose one line says that `purpose` needs it and how to get it.

    The models run on any Keras 3 backend without TensorFlow; training, the
    data pipeline, export and official checkpoints need it.
    """
    try:
        import tensorflow
    except ImportError:
        raise ImportError(
            f"{purpose} needs TensorFlow, which is not installed; pip install tensorflow "
            "(the models themselves run on JAX and PyTorch without it)."
        ) from None
    return tensorflow
