"""A live session's parts for the tests that drive one without HTTP: its engines (scripted,
with a fixed transcript) and the reply they give."""

from __future__ import annotations

from pipeline.session import SessionEngines
from tests.support.engines import EnergyVAD, ScriptedLLM, ScriptedSTT, ScriptedTTS

REPLY = ["Paris ", "is ", "the ", "capital. ", "It ", "is ", "lovely ", "in ", "spring."]


def engines(llm: ScriptedLLM | None = None, tts: ScriptedTTS | None = None) -> SessionEngines:
    return SessionEngines(
        llm=llm or ScriptedLLM(REPLY),
        tts=tts if tts is not None else ScriptedTTS(sample_rate=16000),
        stt=ScriptedSTT(),
        vad=EnergyVAD(),
    )
