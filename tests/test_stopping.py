"""``voxline.stopping.StopSignals`` in this process (no Ray): what a signal does in each step
of a server's life. The whole ``voxline serve`` is tests/faults/test_sigterm.py."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from voxline.stopping import STOP_SIGNALS, StopSignals


@pytest.fixture
def signals() -> Iterator[StopSignals]:
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    stop = StopSignals()
    stop.install()
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def deliver(signum: signal.Signals) -> None:
    signal.raise_signal(signum)  # its handler runs before this returns


def test_while_starting_a_signal_interrupts(signals: StopSignals) -> None:
    with pytest.raises(KeyboardInterrupt):
        deliver(signal.SIGTERM)
    assert signals.received.is_set() and signals.name == "SIGTERM"


def test_while_serving_a_signal_ends_the_wait(signals: StopSignals) -> None:
    threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
    signals.wait()  # returns, raises nothing
    assert signals.name == "SIGINT"


def test_while_stopping_only_the_drain_may_be_cut_short(signals: StopSignals) -> None:
    signals.stopping()
    deliver(signal.SIGTERM)  # noted, not raised: Serve and Ray must stop whole
    assert signals.received.is_set()
    with pytest.raises(KeyboardInterrupt), signals.interruptible():
        deliver(signal.SIGTERM)
    deliver(signal.SIGINT)  # after the drain, again nothing
