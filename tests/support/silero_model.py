"""The real Silero VAD for the batching tests: loaded, or the test skipped with the
catalogue's message (which names the install command) when its package is missing."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.engines import create_engine
from pipeline.engines.silero import SileroVoiceActivityDetector
from schemas import ModelMissingError


def loaded_silero(**options: Any) -> SileroVoiceActivityDetector:
    detector = create_engine("vad", "silero", options)
    assert isinstance(detector, SileroVoiceActivityDetector)
    try:
        detector.load_sync()
    except ModelMissingError as exc:
        pytest.skip(exc.message)
    return detector
