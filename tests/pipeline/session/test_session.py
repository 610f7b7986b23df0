"""The live session: input in, events out, each one in the log before it is handed out.

A session hands events out one way, through its log: the tests read them as any client
does, with a tail of the log.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections import deque

import numpy as np
import pytest

from pipeline.audio import EndpointConfig, decode_audio, encode_audio
from pipeline.engines import Engine
from pipeline.log import EventLog
from pipeline.reply import ReplyOrchestrator
from pipeline.session import FRAME_QUEUE, LiveSession, SessionEngines, ends_turn, follow_turn
from schemas import (
    AudioFormat,
    ErrorCode,
    ErrorEvent,
    ErrorPayload,
    Event,
    HistorySettings,
    InputAudioData,
    InputTextMessage,
    InvalidAudioError,
    ProtocolError,
    ResponseAudioChunk,
    ResponseAudioDone,
    SessionError,
    SessionSettings,
    SessionUpdate,
)
from tests.support.audio_fixtures import tone
from tests.support.engines import ScriptedLLM, ScriptedSTT, ScriptedTTS
from tests.support.sessions import REPLY, collect_until, engines

pytestmark = pytest.mark.redis


def spoken_samples(tts: ScriptedTTS) -> int:
    """Samples the scripted TTS produced over all its streams."""
    return sum(r.items for r in tts.records) * tts.chunk_bytes // 2


def response_audio(seen: list[Event]) -> tuple[list[ResponseAudioChunk], bytes]:
    """The chunk events of a response (their indexes checked contiguous) and their bytes."""
    chunks = [e for e in seen if isinstance(e, ResponseAudioChunk)]
    assert [c.data.chunk_index for c in chunks] == list(range(len(chunks)))
    return chunks, b"".join(c.data.audio for c in chunks)


def audio_done(seen: list[Event]) -> ResponseAudioDone:
    return next(e for e in seen if isinstance(e, ResponseAudioDone))


def decoded_samples(fmt: AudioFormat, payload: bytes, rate: int) -> int:
    if fmt is AudioFormat.PCM16:
        return len(payload) // 2
    return len(decode_audio(payload, sample_rate=rate)) // 2


async def test_text_turn_events_are_the_log(event_log: EventLog) -> None:
    session = await LiveSession.open("text", event_log, engines(), create=SessionSettings())
    await session.handle(InputTextMessage(text="Where?"))
    seen = await collect_until(session, "response.done")
    types = [e.type for e in seen]
    assert types[:3] == ["session.created", "input.text", "response.started"]
    assert "response.audio.chunk" in types and types[-1] == "response.done"
    assert seen[-1].data.text == "".join(REPLY)  # type: ignore[union-attr]
    chunks = [e for e in seen if e.type == "response.audio.chunk"]
    assert {c.data.sample_rate for c in chunks} == {24000}  # type: ignore[union-attr]
    assert seen == await event_log.read_all("text")
    await session.close()


@pytest.mark.parametrize(
    ("fmt", "rate", "sent_rate"),
    [
        (AudioFormat.PCM16, 24000, 24000),
        (AudioFormat.WAV, 24000, 24000),
        (AudioFormat.MP3, 24000, 24000),
        (AudioFormat.OPUS, 24000, 24000),
        (AudioFormat.OPUS, 44100, 48000),  # opus takes no 44.1 kHz: 48 kHz goes out
    ],
)
async def test_audio_goes_out_in_the_session_format(
    event_log: EventLog, fmt: AudioFormat, rate: int, sent_rate: int
) -> None:
    tts = ScriptedTTS(sample_rate=16000, chunk_bytes=4800)  # 150 ms chunks
    settings = SessionSettings(output_format=fmt, output_sample_rate=rate)
    name = f"fmt-{fmt}-{rate}"
    session = await LiveSession.open(name, event_log, engines(tts=tts), create=settings)
    await session.submit_text("Where?")
    seen = await collect_until(session, "response.done")
    chunks, payload = response_audio(seen)
    done = audio_done(seen)
    assert chunks and done.data.chunk_count == len(chunks)
    assert {(c.data.format, c.data.sample_rate) for c in chunks} == {(fmt, sent_rate)}
    assert seen.index(done) == seen.index(chunks[-1]) + 1  # the tail goes out before done
    if fmt is AudioFormat.WAV:
        assert payload[:4] == b"RIFF" and payload.count(b"RIFF") == 1
    expected = spoken_samples(tts) * sent_rate / 16000
    got = decoded_samples(fmt, payload, sent_rate)
    if fmt in (AudioFormat.PCM16, AudioFormat.WAV):  # lossless: every sample, tail included
        assert abs(got - expected) <= 2
    else:  # lossy: mp3 decodes with its encoder delay (no seekable header to trim it)
        slack = 0.06 if fmt is AudioFormat.MP3 else 0.01
        assert expected - 0.01 * sent_rate <= got <= expected + slack * sent_rate
    assert seen == await event_log.read_all(name)
    await session.close()


async def test_codec_silence_is_merged_and_the_resampler_tail_flushed(
    event_log: EventLog,
) -> None:
    tts = ScriptedTTS(sample_rate=16000)  # 32 samples a chunk: the resampler holds them all
    settings = SessionSettings(output_sample_rate=22050)
    session = await LiveSession.open("tail", event_log, engines(tts=tts), create=settings)
    await session.submit_text("Where?")
    seen = await collect_until(session, "response.done")
    chunks, payload = response_audio(seen)
    assert 0 < len(chunks) < sum(r.items for r in tts.records)  # empty outputs merged
    assert audio_done(seen).data.chunk_count == len(chunks)
    assert chunks[-1].data.sentence_index == len(tts.records) - 1
    assert abs(len(payload) // 2 - spoken_samples(tts) * 22050 / 16000) <= 2
    await session.close()


async def test_cancel_flushes_the_encoder_before_response_cancelled(
    event_log: EventLog,
) -> None:
    llm = ScriptedLLM(REPLY, gate_at=5)  # one sentence, then the reply stalls
    tts = ScriptedTTS(sample_rate=16000, chunk_bytes=4800)
    settings = SessionSettings(output_format=AudioFormat.OPUS)
    session = await LiveSession.open("cut", event_log, engines(llm, tts), create=settings)
    await session.submit_text("Tell me a story")
    seen: list[Event] = []
    async with asyncio.timeout(10):  # a failure, not a hang, if the audio never comes
        while sum(e.type == "response.audio.chunk" for e in seen) < 2:  # sentence 0
            seen += await collect_until(session, "response.audio.chunk")
    await session.cancel_response("client")
    seen += await collect_until(session, "response.cancelled")
    chunks, payload = response_audio(seen)
    assert [e.type for e in seen[-2:]] == ["response.audio.chunk", "response.cancelled"]
    assert seen[-1].data.chunks_sent == len(chunks) == 3  # type: ignore[union-attr]
    got = decoded_samples(AudioFormat.OPUS, payload, 24000)
    assert abs(got - 2 * 2400 * 24000 / 16000) <= 240  # both chunks, the tail included
    await session.close()


async def test_history_carries_over_to_the_next_turn(event_log: EventLog) -> None:
    llm = ScriptedLLM(["Fine."])
    session = await LiveSession.open("hist", event_log, engines(llm), create=SessionSettings())
    await session.submit_text("How are you?")
    await session.wait_response()
    await session.submit_text("And now?")
    await session.wait_response()
    reopened = await LiveSession.open("hist", event_log, engines(llm))
    roles = [(m.role, m.content) for m in reopened.state.history()]
    assert roles[1:] == [
        ("user", "How are you?"),
        ("assistant", "Fine."),
        ("user", "And now?"),
        ("assistant", "Fine."),
    ]
    await session.close()


async def test_voice_turn_is_endpointed_transcribed_and_answered(event_log: EventLog) -> None:
    parts = engines()
    session = await LiveSession.open(
        "voice", event_log, parts, create=SessionSettings(), endpoint_config=EndpointConfig()
    )
    audio = tone(0.3, False) + tone(1.0, True) + tone(0.8, False)
    for start in range(0, len(audio), 640):
        await session.push_audio(audio[start : start + 640])
    seen = await collect_until(session, "response.done")
    types = [e.type for e in seen]
    order = ["input.speech_started", "input.speech_stopped", "input.audio", "transcript.final"]
    assert [t for t in types if t in order] == order
    utterance = next(e for e in seen if e.type == "input.audio")
    assert 1.0 <= utterance.data.duration_ms / 1000 <= 1.6  # type: ignore[union-attr]
    assert isinstance(parts.stt, ScriptedSTT) and len(parts.stt.heard) == 1
    await session.close()


# each pause would end (or not end) an utterance under the default 500 ms the other way
@pytest.mark.parametrize(("end_of_speech_ms", "pause_s", "utterances"),
                         [(200, 0.4, 2), (900, 0.7, 1)])
async def test_the_session_decides_how_much_silence_ends_an_utterance(
    event_log: EventLog, end_of_speech_ms: int, pause_s: float, utterances: int
) -> None:
    parts = engines()
    # immediate: speech over the first reply is the next utterance at once, never judged
    settings = SessionSettings(end_of_speech_ms=end_of_speech_ms, interruptions="immediate")
    session = await LiveSession.open(f"eos{end_of_speech_ms}", event_log, parts, create=settings)
    audio = tone(0.6, True) + tone(pause_s, False) + tone(0.6, True) + tone(1.2, False)
    for start in range(0, len(audio), 640):
        await session.push_audio(audio[start : start + 640])
    await session.commit_audio()
    assert isinstance(parts.stt, ScriptedSTT)
    for _ in range(400):
        if len(parts.stt.heard) >= utterances:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    assert len(parts.stt.heard) == utterances
    await session.close()


async def test_speech_during_a_reply_cancels_it(event_log: EventLog) -> None:
    """``interruptions: immediate`` (the old rule; the default pauses: test_backchannel)."""
    llm = ScriptedLLM(REPLY, gate_at=3)  # the reply stalls after three tokens
    session = await LiveSession.open("barge", event_log, engines(llm),
                                     create=SessionSettings(interruptions="immediate"))
    await session.submit_text("Tell me a story")
    for _ in range(200):
        if llm.records and llm.records[-1].items >= 3:
            break
        await asyncio.sleep(0.005)
    audio = tone(0.6, True)
    for start in range(0, len(audio), 640):
        await session.push_audio(audio[start : start + 640])
    seen = await collect_until(session, "input.speech_started")
    types = [e.type for e in seen]
    # the reply is cancelled as soon as speech is confirmed, before speech_started is sent
    assert types[-2:] == ["response.cancelled", "input.speech_started"]
    assert seen[-2].data.reason == "barge_in"  # type: ignore[union-attr]
    assert llm.records[0].outcome in ("cancelled", "closed")
    await session.close()


async def test_g711_audio_is_decoded_where_it_enters(event_log: EventLog) -> None:
    """A phone line's μ-law at 8 kHz is heard like PCM16; an odd PCM16 frame is refused."""
    settings = SessionSettings(input_format="pcmu", input_sample_rate=8000)
    session = await LiveSession.open("law", event_log, engines(), create=settings)
    spoken = encode_audio(tone(0.6, True, 8000) + tone(1.0, False, 8000), 8000, "pcmu")
    assert len(spoken) == 8000 * 1.6  # one byte a sample
    for start in range(0, len(spoken), 160):  # Twilio's 20 ms frames
        await session.push_audio(spoken[start : start + 160])
    seen = await collect_until(session, "input.audio")
    heard = seen[-1].data
    assert isinstance(heard, InputAudioData) and heard.format == "pcm16"
    samples = np.frombuffer(heard.audio, "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * heard.sample_rate / len(samples)
    assert abs(peak_hz - 220) < 5  # the tone, decoded (read as PCM16 it would be noise)
    await session.close()
    pcm = await LiveSession.open("odd", event_log, engines(), create=SessionSettings())
    with pytest.raises(InvalidAudioError):
        await pcm.push_audio(b"\x01\x02\x03")
    await pcm.close()


async def test_push_to_talk_commit_takes_unheard_audio(event_log: EventLog) -> None:
    parts = engines()
    session = await LiveSession.open("ptt", event_log, parts, create=SessionSettings())
    await session.push_audio(tone(0.5, False))  # VAD hears nothing
    await session.commit_audio()
    seen = await collect_until(session, "transcript.final")
    assert [e.type for e in seen][-3:] == [
        "input.speech_stopped",
        "input.audio",
        "transcript.final",
    ]
    await session.close()


async def test_bad_settings_are_refused_whole(event_log: EventLog) -> None:
    session = await LiveSession.open("bad", event_log, engines(), create=SessionSettings())
    with pytest.raises(ProtocolError) as info:
        await session.update_settings(
            {"voice": "x", "speech_speed": 9.0, "input_sample_rate": 12345}
        )
    assert info.value.code is ErrorCode.INVALID_SETTINGS
    assert session.settings.voice is None
    await session.reject(info.value)
    seen = await collect_until(session, "error")
    assert seen[-1].data.code == "invalid_settings"  # type: ignore[union-attr]
    with pytest.raises(ProtocolError):
        await session.push_audio(b"\x01")
    with pytest.raises(ProtocolError):
        await session.submit_text("   ")
    await session.close()


async def test_tags_are_kept_from_creation_and_an_update_may_not_change_them(
        event_log: EventLog) -> None:
    created = SessionSettings(tags=("release=2026.11", "beta"))
    session = await LiveSession.open("tagged", event_log, engines(), create=created)
    await session.update_settings({"voice": "b", "tags": ["release=2026.11", "beta"]})
    assert session.settings.voice == "b"  # the same tags again: no change, allowed
    for changed in (["beta"], [], ["release=2026.12", "beta"]):
        with pytest.raises(ProtocolError, match="set when the session is created") as info:
            await session.update_settings({"tags": changed})
        assert info.value.code is ErrorCode.INVALID_SETTINGS
    assert session.settings.tags == ("release=2026.11", "beta")
    await session.close()


@pytest.mark.parametrize("field", ["input_sample_rate", "output_sample_rate"])
async def test_a_bad_rate_is_an_unsupported_sample_rate(event_log: EventLog, field: str) -> None:
    session = await LiveSession.open("rate", event_log, engines(), create=SessionSettings())
    with pytest.raises(InvalidAudioError) as info:
        await session.handle(SessionUpdate(settings={"voice": "x", field: 12345}))
    assert info.value.code is ErrorCode.UNSUPPORTED_SAMPLE_RATE
    assert session.settings.voice is None and getattr(session.settings, field) != 12345
    await session.reject(info.value)
    seen = await collect_until(session, "error")
    assert seen[-1].data.code == "unsupported_sample_rate"  # type: ignore[union-attr]
    await session.close()


async def test_unknown_and_closed_sessions(event_log: EventLog) -> None:
    with pytest.raises(SessionError) as info:
        await LiveSession.open("nobody", event_log, engines())
    assert info.value.code is ErrorCode.SESSION_NOT_FOUND
    session = await LiveSession.open("closing", event_log, engines(), create=SessionSettings())
    await session.close(reason="client")
    with pytest.raises(SessionError) as info:
        await LiveSession.open("closing", event_log, engines())
    assert info.value.code is ErrorCode.SESSION_CLOSED


# --- one turn, read from the log ---------------------------------------------------------


async def test_follow_turn_reads_one_turn_from_the_log_and_ends_with_it(
    event_log: EventLog,
) -> None:
    session = await LiveSession.open("follow", event_log, engines(), create=SessionSettings())
    before = session.state.last_event_id
    first = await session.submit_text("Where?")
    await session.wait_response()  # a reader that starts late misses nothing
    second = await session.submit_text("And then?")
    seen = [e async for e in follow_turn(event_log, "follow", first, after=before)]
    assert seen == [e for e in await event_log.read_all("follow") if e.turn_id == first]
    assert seen[0].type == "input.text" and seen[-1].type == "response.done"
    live = [e async for e in follow_turn(event_log, "follow", second, after=before)]
    assert {e.turn_id for e in live} == {second} and live[-1].type == "response.done"
    await session.close()


async def test_follow_turn_ends_at_a_cancel(event_log: EventLog) -> None:
    llm = ScriptedLLM(REPLY, gate_at=3)  # the reply stalls after three tokens
    session = await LiveSession.open("stop", event_log, engines(llm), create=SessionSettings())
    turn = await session.submit_text("Tell me a story")
    reader = follow_turn(event_log, "stop", turn, after=None)
    async with asyncio.timeout(10):
        async for event in reader:
            if event.type == "response.text.delta":
                await session.cancel_response("client")
                break
        rest = [e async for e in follow_turn(event_log, "stop", turn, after=event.id)]
    assert rest[-1].type == "response.cancelled"
    await session.close()


@pytest.mark.parametrize(("recoverable", "ends"), [(True, False), (False, True)])
def test_an_error_ends_a_turn_when_the_turn_cannot_go_on(recoverable: bool, ends: bool) -> None:
    error = ErrorEvent(session_id="s", turn_id="t", data=ErrorPayload(
        code=ErrorCode.LLM_FAILED, message="broke", recoverable=recoverable))
    assert ends_turn(error) is ends  # type: ignore[arg-type]


# --- a long session ---------------------------------------------------------------------

#: what a session shares with others or runs, not what it holds: left out of its footprint
SHARED = (EventLog, SessionEngines, Engine, ReplyOrchestrator, asyncio.AbstractEventLoop,
          asyncio.Future, types.CoroutineType, types.MethodType, types.FunctionType,
          types.ModuleType, type, logging.Logger)


def footprint(session: LiveSession) -> int:
    """What a session holds of its own: the items of every container and the length of
    every buffer and string reachable from it (not through what it shares)."""
    total, seen, stack = 0, set(), [session.__dict__]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, SHARED):
            continue
        seen.add(id(obj))
        if isinstance(obj, bytes | bytearray | str):
            total += len(obj)
        elif isinstance(obj, dict):
            total += len(obj)
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset | deque):
            total += len(obj)
            stack += list(obj)
        elif hasattr(obj, "__dict__"):
            stack.append(vars(obj))
    return total


async def test_a_long_session_holds_no_more_after_many_turns(event_log: EventLog) -> None:
    """Memory is bounded by the live response, not by the number of turns: nothing the
    session holds grows with them (no queue of sent events, audio or not; no buffer of
    heard audio; the fold keeps the turns the history shows)."""
    parts = engines(tts=ScriptedTTS(sample_rate=16000, chunk_bytes=4800))
    session = await LiveSession.open("long", event_log, parts, create=SessionSettings(),
                                     history=HistorySettings(max_turns=4))
    utterance = tone(0.64, True) + tone(0.832, False)  # whole 32 ms frames: none left over

    async def turns(n: int) -> None:
        for i in range(n):
            if i % 2:
                await session.submit_text("How are you?")
            else:
                for start in range(0, len(utterance), 640):
                    await session.push_audio(utterance[start : start + 640])
                await session.commit_audio()  # VAD cut it already: this waits for it
            await session.wait_response()

    await turns(10)
    before = footprint(session)
    await turns(30)
    after = footprint(session)
    # every utterance transcribed; speech over a reply still playing is also judged (a
    # quick transcription: interruptions confirmed, the default)
    assert isinstance(parts.stt, ScriptedSTT) and len(parts.stt.heard) >= 20
    log = await event_log.read_all("long")
    assert sum(e.type == "response.done" for e in log) == 40
    assert sum(e.type == "response.audio.chunk" for e in log) > 40
    assert session.voice.audio is not None and session.voice.audio.queued <= FRAME_QUEUE
    assert len(session.state.turns) <= 5
    assert after <= before + 64, (before, after)
    await session.close()
