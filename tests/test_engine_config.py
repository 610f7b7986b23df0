"""Every engine refuses a bad option the same way: ConfigurationError naming the setting."""

from __future__ import annotations

import pytest

from pipeline.engines import create_engine
from schemas import ConfigurationError, ErrorCode

ENGINES = [
    ("stt", "faster-whisper"),
    ("vad", "silero"),
    ("llm", "llama-cpp"),
    ("llm", "openai"),
    ("tts", "piper"),
    ("tts", "espeak"),
]


@pytest.mark.parametrize(("stage", "name"), ENGINES)
def test_unknown_option_is_a_configuration_error(stage: str, name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_engine(stage, name, {"no_such_option": 1})
    assert info.value.code is ErrorCode.CONFIGURATION_ERROR
    assert info.value.details["setting"] == f"VOXLINE_{stage.upper()}__OPTIONS"
    assert "no_such_option" in info.value.message


def test_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        create_engine("tts", "nope")
    assert "piper" in info.value.message
