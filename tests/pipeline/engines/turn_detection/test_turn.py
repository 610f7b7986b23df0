"""The smart-turn end-of-turn engine: the packaged model hears a finished question from a
cut-off one; a missing model or an unloaded engine fails with its code."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from loadtests._turn_corpus import split_at_pauses, synthesize
from pipeline.engines import TurnDetector, create_engine
from pipeline.engines.turn_detection.smart_turn import SmartTurnDetector
from schemas import EngineError, ErrorCode, ModelMissingError


def _pcm16(samples: np.ndarray, silence_s: float = 0.15) -> bytes:
    audio = np.concatenate([samples, np.zeros(int(silence_s * 16000), np.float32)])
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def detector() -> SmartTurnDetector:
    engine = create_engine("turn", "smart-turn")
    assert isinstance(engine, SmartTurnDetector) and isinstance(engine, TurnDetector)
    try:
        asyncio.run(engine.load())
    except ModelMissingError as exc:
        pytest.skip(exc.message)
    return engine


async def test_a_finished_question_sounds_complete_and_a_cut_off_one_does_not(
    detector: SmartTurnDetector,
) -> None:
    whole = synthesize("espeak", "en-us", "What is the capital of France?", 160)
    assert await detector.completion(_pcm16(whole)) > 0.5
    head, _ = split_at_pauses(synthesize("piper", "joe", "Could you tell me about, the "
                                         "history of Rome?", 1.0), 1)
    assert await detector.completion(_pcm16(head)) < 0.5
    # only the last 8 s count: a long turn is judged on its end
    long = np.concatenate([np.tile(head, 6), whole])
    assert await detector.completion(_pcm16(long)) > 0.5


async def test_an_unloaded_engine_and_a_missing_model_say_so(tmp_path: object) -> None:
    engine = SmartTurnDetector()
    with pytest.raises(EngineError) as caught:
        await engine.completion(b"\x00\x00" * 1600)
    assert caught.value.code == ErrorCode.TURN_DETECTION_FAILED
    with pytest.raises(ModelMissingError, match="no Smart Turn model"):
        await SmartTurnDetector(model="/nonexistent/smart-turn.onnx").load()
