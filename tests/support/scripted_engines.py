"""The scripted engines, for the tests that import them from here: they live in
:mod:`loadtests._scripted`, shared with the benchmarks' smoke modes."""

from loadtests._scripted import (
    EnergyVAD,
    ScriptedLLM,
    ScriptedSTT,
    ScriptedTTS,
    StreamRecord,
    outcome_of,
    scripted_audio,
    tokenize,
)

__all__ = [
    "EnergyVAD",
    "ScriptedLLM",
    "ScriptedSTT",
    "ScriptedTTS",
    "StreamRecord",
    "outcome_of",
    "scripted_audio",
    "tokenize",
]
