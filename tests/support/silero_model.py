"""Silero VAD for the VAD tests: the real model, loaded (or the test skipped with the
catalogue's message, which names the install command, when its package is missing), and a
stand-in ONNX session of the batched export's kind that counts its calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pipeline.engines import create_engine
from pipeline.engines.vad._silero_stream import _Model
from pipeline.engines.vad.silero import SileroVoiceActivityDetector
from schemas import ModelMissingError

HANG = 10.0  # seconds; only reached when the code under test hangs


def loaded_silero(**options: Any) -> SileroVoiceActivityDetector:
    detector = create_engine("vad", "silero", options)
    assert isinstance(detector, SileroVoiceActivityDetector)
    try:
        detector.load_sync()
    except ModelMissingError as exc:
        pytest.skip(exc.message)
    return detector


async def frames_of(pcm: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(pcm) - 1023, 1024):
        yield pcm[i : i + 1024]


class StandIn:
    """An ONNX session of the batched kind: probability = the row's loudness, state + 1.

    A row holding ``POISON`` breaks the call; ``hold`` (when set) makes each call wait for
    ``release`` after saying it ``entered``.
    """

    POISON = 0.5

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[int] = []

    def get_inputs(self) -> list[Any]:
        return [SimpleNamespace(name=n) for n in ("input", "state", "sr")]

    def run(self, _: Any, feed: dict[str, Any]) -> list[np.ndarray]:
        rows, state = feed["input"], feed["state"]
        self.calls.append(len(rows))
        if self.hold:
            self.entered.set()
            assert self.release.wait(HANG)
        if np.any(rows[:, 64:] == self.POISON):
            raise RuntimeError("the model broke on a row")
        return [np.abs(rows[:, 64:]).mean(axis=1, keepdims=True), state + 1]


def stand_in_detector(session: StandIn, **options: Any) -> SileroVoiceActivityDetector:
    detector = SileroVoiceActivityDetector(batch_wait_ms=16, **options)
    detector._model = _Model(session)  # what load() would open
    return detector


def frame(value: float) -> bytes:
    return (np.full(512, value * 32768)).astype("<i2").tobytes()


class Feed:
    """Frames handed to the detector one at a time, when the test says."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def frames(self) -> AsyncIterator[bytes]:
        while (item := await self.queue.get()) is not None:
            yield item
