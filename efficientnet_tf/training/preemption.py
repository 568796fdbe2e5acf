"""SIGTERM as a request to save and stop, for preemptible machines.

Spot VMs, Kubernetes and Slurm send SIGTERM some seconds before they kill a
job. While `Checkpointer` runs a fit it turns SIGTERM into a flag
(`SigtermListener`); at the next step boundary it saves, then raises
`Preempted`, whose message is the one line to print. A process that ends
on it exits with `EXIT_CODE`, 128 + SIGTERM, which shells and schedulers
read as "terminated by SIGTERM".
"""

from __future__ import annotations

import signal
import threading
import warnings

EXIT_CODE = 128 + signal.SIGTERM  # 143


class Preempted(Exception):
    """SIGTERM arrived; the training state is saved and the run stops (its message says where)."""


class SigtermListener:
    """Records SIGTERM instead of dying of it, until `close()` puts the previous handler back.

    A second SIGTERM before `close()` gets the previous handler's behaviour
    (by default the process dies), so repeated signals still stop a run
    that no longer reaches a step boundary. Signals only reach Python's main
    thread: from another thread nothing is installed (with a warning).
    """

    def __init__(self) -> None:
        self.received = False
        self._previous = None
        if threading.current_thread() is not threading.main_thread():
            warnings.warn("fit runs outside the main thread: SIGTERM cannot be caught there and kills the run unsaved.")
            return
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        if not self.received:
            self.received = True
            return
        self.close()
        signal.raise_signal(signal.SIGTERM)

    def close(self) -> None:
        """Restores the handler that was there before (idempotent)."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
