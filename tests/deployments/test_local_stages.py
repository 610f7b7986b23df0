"""The CPU profile's Gateway runs the three stages itself: built from the settings, behind
the profile's bounds, its LLM stream windowed as a replica's, closed together."""

from __future__ import annotations

from typing import Any

import pytest

from deployments import local_stages
from deployments.local_stages import LocalStages
from pipeline.engines import Engine
from pipeline.meters import StageCalls
from schemas import (
    EngineError,
    GenerationRequest,
    OverloadedError,
    Settings,
    TranscriptionRequest,
)
from tests.support.engines import ScriptedLLM, ScriptedSTT, ScriptedTTS

BOUNDS = {"stt": {"ongoing": 1, "queued": 0}, "llm": {"ongoing": 1, "queued": 1},
          "tts": {"ongoing": 2, "queued": 2}}
REQUEST = GenerationRequest(request_id="r", messages=[{"role": "user", "content": "hi"}])
AUDIO = TranscriptionRequest(audio=b"\x01\x00" * 1600, sample_rate=16000)


class Closing(ScriptedTTS):
    """A synthesizer that says whether it was closed, and can fail to load."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.closed = False
        self.fail = fail

    async def load(self) -> None:
        if self.fail:
            raise EngineError("no voice", stage="tts")

    async def close(self) -> None:
        self.closed = True

    @property
    def ready(self) -> bool:
        return not self.closed


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The engines LocalStages makes, by stage, with what it was asked for."""
    made: dict[str, Any] = {"asked": []}

    def create(stage: str, name: str, options: dict[str, Any]) -> Engine:
        made["asked"].append((stage, name))
        engine: Engine = {"stt": ScriptedSTT(), "llm": ScriptedLLM(list("abcdefghij")),
                          "tts": made.get("tts") or Closing()}[stage]
        made[stage] = engine
        return engine

    monkeypatch.setattr(local_stages, "create_engine", create)
    return made


async def test_the_stages_are_the_settings_engines_behind_their_bounds(
        made: dict[str, Any]) -> None:
    calls = StageCalls()
    stages = await LocalStages.load(Settings(), BOUNDS, calls)
    settings = Settings()
    assert made["asked"] == [("stt", settings.stt.engine), ("llm", settings.llm.engine),
                             ("tts", settings.tts.engine)]
    assert stages.stt.name == "scripted-stt" and stages.tts.name == "scripted-tts"
    # a replica's window: the first 8 tokens alone, then what came together as one delta
    deltas = [d async for d in stages.llm.generate(REQUEST)]
    assert deltas[:8] == list("abcdefgh") and "".join(deltas) == "abcdefghij"
    assert calls.counts["llm"].calls == 1
    first = stages.stt.transcribe(AUDIO)
    assert (await anext(first)).text
    with pytest.raises(OverloadedError):  # one place, no line: the next is refused at once
        await anext(stages.stt.transcribe(AUDIO))
    await first.aclose()
    stages.check_health()
    await stages.aclose()
    assert made["tts"].closed
    with pytest.raises(EngineError, match="tts engine is not ready"):
        stages.check_health()


async def test_a_stage_that_fails_to_load_closes_the_others(made: dict[str, Any]) -> None:
    made["tts"] = Closing(fail=True)
    with pytest.raises(EngineError, match="no voice"):
        await LocalStages.load(Settings(), BOUNDS, StageCalls())
    assert made["tts"].closed  # closed with the others, though it never loaded
