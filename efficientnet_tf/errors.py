"""One-line error text: messages from TensorFlow, Keras or the OS span lines, and our errors are one line each."""

from __future__ import annotations


def one_line(error: BaseException | str) -> str:
    """The error's message (or the text) with every run of whitespace, newlines included, as one space."""
    return " ".join(str(error).split())
