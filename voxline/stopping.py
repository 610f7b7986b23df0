"""How ``voxline serve`` stops on SIGTERM (Kubernetes, systemd, ``kill``) or SIGINT (Ctrl-C).

The order (:func:`voxline.server.running_server` drives it): drain the app (the Gateway
refuses new sessions and turns with ``server_draining``, lets running turns finish for
``VOXLINE_API__SHUTDOWN_GRACE_S``, then closes each socket with 1012 so its client
resumes elsewhere), stop Serve, stop Ray, stop the Redis we started; exit code 0.

Ray's driver brings two signal handlers of its own that get in the way. ``ray.init``
installs a Python SIGTERM handler that exits at once (no drain), and Ray's C++ core
installs abseil's failure signal handler on SIGTERM, which writes native stack traces of
the process to stderr ("*** SIGTERM received at time=...", pages of ``@ 0x...`` frames)
and arms a 3-second alarm that aborts the process if it has not exited by then (a drain
takes longer). :meth:`StopSignals.install`, called again right after ``ray.init``, puts
Python's own handler back through ``signal.signal`` (``sigaction``), which replaces both.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: the signals that mean "stop": what Kubernetes and systemd send, and Ctrl-C
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """SIGTERM and SIGINT as one request to stop, answered in steps.

    While the server starts a signal raises ``KeyboardInterrupt`` in the main thread, so
    the step under way ends and clean-up runs; while it serves, :meth:`wait` simply
    returns. Once stopping (:meth:`stopping`) signals are only noted, but inside
    :meth:`interruptible` (the drain), where a second signal cuts the wait short:
    stopping Serve and Ray half-way would leave their processes behind.
    """

    def __init__(self) -> None:
        self.received = threading.Event()
        self.signum: int | None = None
        self._interrupt = True

    def install(self) -> None:
        """Take SIGTERM and SIGINT (again: call it after ``ray.init``). Main thread only;
        elsewhere (a test's server in a thread) the signals stay someone else's."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        self.received.set()
        if self._interrupt:
            raise KeyboardInterrupt

    def wait(self) -> None:
        """Serve until a signal comes (then return: the caller leaves its block and the
        server stops)."""
        self._interrupt = False
        self.received.wait()

    def stopping(self) -> None:
        """From now on a signal interrupts nothing (but :meth:`interruptible` blocks)."""
        self._interrupt = False

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A step a (further) signal may cut short with ``KeyboardInterrupt``."""
        self._interrupt = True
        try:
            yield
        finally:
            self._interrupt = False

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "no signal"
