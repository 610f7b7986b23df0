"""The docs' "adding a TTS engine" example (docs/architecture.md) runs as written: one
file, one registry line.

The file is taken from the page, imported as a module, registered the way the README
says, built through the registry and driven like any synthesizer (its model stubbed: the
example names no real library).
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.engines import ENGINES, Synthesizer, create_engine
from schemas import ConfigurationError, SynthesisRequest

README = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def readme_blocks() -> tuple[str, str]:
    text = README.read_text()
    section = text[text.index("Adding a TTS engine is one file and one registry line"):]
    engine, line = re.findall(r"```python\n(.*?)```", section, flags=re.S)[:2]
    return engine, line.strip()


class _Sentence:
    def __init__(self, pcm16: bytes) -> None:
        self.pcm16 = pcm16


class _Model:
    def speak(self, text: str) -> Iterator[_Sentence]:
        for word in text.split():
            yield _Sentence(word.encode().ljust(8, b"\0")[:8])


@pytest.fixture
def mytts(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    engine, line = readme_blocks()
    name, target = re.fullmatch(r'"(\w+)": "([\w.:]+)",', line).groups()  # type: ignore[union-attr]
    module_name, _, class_name = target.partition(":")
    module = types.ModuleType(module_name)
    exec(compile(engine, f"README:{module_name}", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, module_name, module)
    monkeypatch.setitem(ENGINES["tts"], name, target)
    monkeypatch.setattr(getattr(module, class_name), "_load_blocking", lambda self: _Model())
    return module


async def test_the_readme_engine_builds_through_the_registry_and_streams(
    mytts: types.ModuleType,
) -> None:
    tts = create_engine("tts", "mytts", {"model_path": "/models/anna.bin"})
    assert isinstance(tts, Synthesizer) and tts.options.model_path == "/models/anna.bin"
    await tts.load()
    try:
        assert tts.ready and tts.voices == ("anna",)
        info: dict[str, Any] = await tts.describe()
        assert info["sample_rate"] == 24000
        chunks = [c async for c in tts.synthesize(SynthesisRequest(text="two words"))]
        assert [c.audio for c in chunks] == [b"two\0\0\0\0\0", b"words\0\0\0"]
        assert {c.sample_rate for c in chunks} == {24000}
    finally:
        await tts.close()


def test_the_readme_engine_refuses_a_bad_option_like_every_engine(
    mytts: types.ModuleType,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        create_engine("tts", "mytts", {"max_buffered_chunks": 0})
    assert caught.value.details.get("setting") == "VOXLINE_TTS__OPTIONS"
