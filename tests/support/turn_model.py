"""The real Smart Turn end-of-turn model for the tests: loaded, or the test skipped with
the catalogue's message (which names the install command) when its wheel is missing."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.engines.turn_detection.smart_turn import SmartTurnDetector
from schemas import ModelMissingError


def loaded_smart_turn() -> SmartTurnDetector:
    detector = SmartTurnDetector()
    try:
        asyncio.run(detector.load())
    except ModelMissingError as exc:
        pytest.skip(exc.message)
    return detector
