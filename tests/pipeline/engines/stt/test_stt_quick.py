"""faster-whisper's short windows: quick requests and voice turns (real tiny.en).

The speech over a held reply is judged with ``TranscriptionRequest.quick``: the engine
encodes it padded to ``quick_window_s`` instead of Whisper's 30 s; a voice turn is padded
to ``turn_window_s`` (15 s for tiny.en). Here: the words are the ones the full window
gives, the encoder is handed the short window, and what does not fit it (or is not greedy
and plain, or is batched) takes the usual path.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.engines import create_engine, transcript_text
from pipeline.engines.stt._whisper_windows import looped, unlooped
from pipeline.engines.stt.faster_whisper import FasterWhisperTranscriber
from pipeline.turntaking.backchannel import backchannel_prompt, is_backchannel
from schemas import TranscriptionRequest
from tests.support.audio_fixtures import piper_pcm16

pytestmark = pytest.mark.models

SHORT = ("Wait.", "Hold on, what about Rome?", "Okay.", "Tell me about Berlin instead.")
RATE = 16000


@pytest.fixture(scope="module")
def engine() -> Iterator[FasterWhisperTranscriber]:
    """tiny.en with voice turns in Whisper's own window: what a quick request is held to."""
    engine = create_engine("stt", "faster-whisper",
                           {"model": "whisper-tiny.en", "cpu_threads": 2, "turn_window_s": 30})
    assert isinstance(engine, FasterWhisperTranscriber)
    engine.load_sync()
    yield engine
    asyncio.run(engine.close())


@pytest.fixture
def windows(engine: FasterWhisperTranscriber, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return spy_windows(engine, monkeypatch)


def spy_windows(engine: FasterWhisperTranscriber, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The frames of every window the encoder is handed, streaming path or not: a spy on
    CTranslate2's model, which faster-whisper's own ``encode`` and the engine's
    ``host_encoding`` both call."""
    seen: list[int] = []
    model = engine._model

    class Spy:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def encode(self, features: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(int(features.shape[-1]))
            return self._inner.encode(features, *args, **kwargs)

    monkeypatch.setattr(model, "model", Spy(model.model))
    return seen


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


async def text_of(engine: FasterWhisperTranscriber, pcm: bytes, **kwargs: Any) -> str:
    request = TranscriptionRequest(audio=pcm, sample_rate=RATE, **kwargs)
    return transcript_text([s async for s in engine.transcribe(request)])


async def test_a_quick_request_says_what_the_full_window_says(
    engine: FasterWhisperTranscriber, windows: list[int]
) -> None:
    for text in SHORT:
        pcm = piper_pcm16(text)
        windows.clear()
        quick = await text_of(engine, pcm, quick=True)
        assert windows == [1500], text  # 15 s of 10 ms frames
        full = await text_of(engine, pcm)
        assert windows[1:] == [3000], text
        assert words(quick) == words(full) == words(text), (quick, full)


async def test_what_does_not_fit_the_quick_window_takes_the_usual_path(
    engine: FasterWhisperTranscriber, windows: list[int]
) -> None:
    clip = piper_pcm16(SHORT[1])
    long_pcm = clip + bytes(RATE * 2 * 14)  # over the window with its half-second margin
    assert words(await text_of(engine, long_pcm, quick=True)) == words(SHORT[1])
    assert windows == [3000]
    for kwargs in ({"temperature": 0.5}, {"word_timestamps": True}):
        windows.clear()
        assert await text_of(engine, clip, quick=True, **kwargs)
        assert windows and set(windows) == {3000}, kwargs


async def test_a_quick_request_with_a_prompt_keeps_its_window_and_follows_the_prompt(
    engine: FasterWhisperTranscriber, windows: list[int]
) -> None:
    """The backchannel judgement's prompt is decoded as ``transcribe`` decodes one, in the
    quick window: Piper's "Mm-hmm." comes out as a backchannel (unprompted, tiny.en writes
    "in a month."), a backchannel the prompt makes loop ("Yeah. Yeah. Yeah. Yea") is
    taken without its loop and without a second decode, and words that are not one keep
    their words."""
    prompt = backchannel_prompt("en")
    hum = await text_of(engine, piper_pcm16("Mm-hmm."), quick=True, prompt=prompt)
    assert is_backchannel(hum) and words(hum), hum
    assert windows == [1500]
    for text in ("Yeah.", "Right.", "Okay."):
        windows.clear()
        said = await text_of(engine, piper_pcm16(text), quick=True, prompt=prompt)
        # a loop taken out, or a word said twice ("Right. Right."): a backchannel either way
        assert windows == [1500] and set(words(said)) == set(words(text)), said
        assert is_backchannel(said)
    for text in SHORT[:2]:
        windows.clear()
        quick = await text_of(engine, piper_pcm16(text), quick=True, prompt=prompt)
        assert windows == [1500] and words(quick) == words(text), quick


@pytest.mark.parametrize(("text", "loop"), [
    ("Uh-huh. Uh-huh. Uh-huh. Uh-h", True),  # too short to compress as a loop
    ("m " * 40, True),
    ("Stop. stop, STOP", True),
    ("", False),
    ("Yeah, yeah.", False),
    ("Hold on. What about Rome?", False),
    ("I said no, no, I said no.", False),
])
def test_loops_are_found_by_compression_or_a_word_said_three_times(text: str, loop: bool) -> None:
    assert looped(text, 2.4) is loop


@pytest.mark.parametrize(("text", "said"), [
    ("Yeah. Yeah. Yeah. Yeah. Yeah. Yea", "Yeah."),  # the copy the token bound cut goes too
    ("Uh-huh. Uh-huh. Uh-huh. Uh-h", "Uh-huh."),
    ("I see. I see. I see. I see", "I see."),
    ("m " * 40, "m"),
    ("Stop. stop, STOP", "Stop"),
    ("Hold on. Hold on, what about Rome?", "Hold on. Hold on, what about Rome?"),
    ("I said no, no, I said no.", "I said no, no, I said no."),  # twice is speech
    ("Go. Stop. Go. Stop. Go. Stop.", "Go. Stop. Go. Stop. Go. Stop."),  # not one to take out
])
def test_a_loop_is_taken_out_and_what_came_before_it_kept(text: str, said: str) -> None:
    assert unlooped(text) == said


async def test_quick_requests_of_silence_give_nothing_and_a_full_window_option_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = FasterWhisperTranscriber(model="whisper-tiny.en", cpu_threads=2, warmup=False,
                                      quick_window_s=30)
    await engine.load()
    windows = spy_windows(engine, monkeypatch)
    try:
        assert await text_of(engine, bytes(RATE * 2), quick=True) == ""
        assert windows == []  # silence: no model call
        clip = piper_pcm16(SHORT[0])
        assert words(await text_of(engine, clip, quick=True)) == words(SHORT[0])
        assert windows and set(windows) == {3000}
    finally:
        await engine.close()


async def test_a_looping_quick_decode_is_done_again_in_the_full_window(
    engine: FasterWhisperTranscriber, windows: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whisper in a short window loops now and then. On letters ("m m m m ...", which may
    stand for any word) the transcript is not returned: the request is decoded again the
    usual way. On a word, the word is what was said: it comes back once, with no second
    decode."""
    clip = piper_pcm16(SHORT[0])
    run = engine._batch_sync
    lengths: list[int | None] = []

    def looping(items: Any, window_s: float = 30.0, max_length: int | None = None) -> Any:
        lengths.append(max_length)
        [result] = run(items, window_s, max_length)
        assert isinstance(result, list)
        return [[s.model_copy(update={"text": "m " * 40}) for s in result]]

    monkeypatch.setattr(engine, "_batch_sync", looping)
    assert words(await text_of(engine, clip, quick=True)) == words(SHORT[0])
    assert windows == [1500, 3000]
    assert lengths[0] is not None and lengths[0] < 40  # the loop was bounded: ~1 s of audio

    def word_loop(items: Any, window_s: float = 30.0, max_length: int | None = None) -> Any:
        [result] = run(items, window_s, max_length)
        assert isinstance(result, list)
        return [[s.model_copy(update={"text": "Wait. Wait. Wait. Wai"}) for s in result]]

    windows.clear()
    monkeypatch.setattr(engine, "_batch_sync", word_loop)
    assert await text_of(engine, clip, quick=True) == "Wait."
    assert windows == [1500]


async def test_a_voice_turn_is_encoded_in_the_turn_window_and_says_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tiny.en's default: a voice turn in 10 s where it fits, else in 15 s (English-only
    models; test_stt checks that a multilingual one keeps 30 s), with the words of the full
    window."""
    engine = FasterWhisperTranscriber(model="whisper-tiny.en", cpu_threads=2, warmup=False)
    await engine.load()
    assert engine.options.turn_window_s is None and engine.turn_windows_s == (10.0, 15.0)
    windows = spy_windows(engine, monkeypatch)
    try:
        for text in (SHORT[1], SHORT[3], "Please send me the report before the meeting."):
            windows.clear()
            pcm = piper_pcm16(text)
            request = TranscriptionRequest(audio=pcm, sample_rate=RATE, language="en")
            segments = [s async for s in engine.transcribe(request)]
            assert words(transcript_text(segments)) == words(text)
            assert windows == [1000], text
            # never a time past the audio (the short window's last timestamp can be)
            assert segments[-1].end_s <= len(pcm) / 2 / RATE, segments
        windows.clear()  # what does not fit 10 s goes to 15 s
        longer_pcm = piper_pcm16(SHORT[1]) + bytes(RATE * 2 * 9)
        assert words(await text_of(engine, longer_pcm)) == words(SHORT[1])
        assert windows == [1500]
        windows.clear()  # what does not fit goes the usual way
        long_pcm = piper_pcm16(SHORT[1]) + bytes(RATE * 2 * 14)
        assert words(await text_of(engine, long_pcm)) == words(SHORT[1])
        assert windows == [3000]
    finally:
        await engine.close()


async def test_a_batch_gives_each_voice_turn_the_window_it_has_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batching never changes a turn's window: turns that fit the short turn window are
    encoded in it (one generate for them), one that does not fit the turn windows in 30 s
    (a generate of its own), a looping one again in 30 s; each says what it says alone."""
    engine = FasterWhisperTranscriber(model="whisper-tiny.en", cpu_threads=2, warmup=False,
                                      batch_max_items=3, batch_wait_ms=200)
    await engine.load()
    windows = spy_windows(engine, monkeypatch)
    generated: list[int] = []
    run = engine._batch_sync

    def counting(items: Any, window_s: float = 30.0, max_length: int | None = None) -> Any:
        generated.append(len(items))
        return run(items, window_s, max_length)

    monkeypatch.setattr(engine, "_batch_sync", counting)
    try:
        long_pcm = piper_pcm16(SHORT[1]) + bytes(RATE * 2 * 14)  # over 15 s with its margin
        pcms = [piper_pcm16(SHORT[3]), long_pcm, piper_pcm16(SHORT[1])]
        heard = await asyncio.gather(*(text_of(engine, pcm) for pcm in pcms))
        assert [words(h) for h in heard] == [words(SHORT[3]), words(SHORT[1]), words(SHORT[1])]
        assert sorted(windows) == [1000, 1000, 3000]
        assert sorted(generated) == [1, 2]
        assert engine.batcher is not None and dict(engine.batcher.stats.sizes) == {3: 1}

        def looping(items: Any, window_s: float = 30.0, max_length: int | None = None) -> Any:
            results = counting(items, window_s, max_length)
            if window_s == 30.0:
                return results
            return [[s.model_copy(update={"text": "m " * 40}) for s in r] for r in results]

        monkeypatch.setattr(engine, "_batch_sync", looping)
        windows.clear()
        generated.clear()
        pcms = [piper_pcm16(SHORT[3]), piper_pcm16(SHORT[1]), piper_pcm16(SHORT[0])]
        heard = await asyncio.gather(*(text_of(engine, pcm) for pcm in pcms))
        assert [words(h) for h in heard] == [words(SHORT[3]), words(SHORT[1]), words(SHORT[0])]
        assert windows == [1000] * 3 + [3000] * 3 and generated == [3, 3]
    finally:
        await engine.close()
