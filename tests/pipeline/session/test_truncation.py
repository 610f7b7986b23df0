"""A reply played only in part: the client says how far (``response.truncate``), the log
keeps what was heard (``response.truncated``) and the next turn's LLM sees only that."""

from __future__ import annotations

import pytest

from pipeline.log import EventLog
from pipeline.session import LiveSession
from schemas import (
    ErrorCode,
    ProtocolError,
    ResponseAudioChunk,
    ResponseCancelled,
    ResponseSentence,
    ResponseTruncate,
    ResponseTruncated,
    SessionSettings,
)
from tests.support.engines import RecordingLLM, ScriptedTTS
from tests.support.sessions import collect_until, engines

pytestmark = pytest.mark.redis

TOKENS = ["Paris is the capital of France. ", "It is lovely in spring, when the trees bloom."]


def _tts() -> ScriptedTTS:
    return ScriptedTTS(sample_rate=16000, chunks_per_piece=2, chunk_bytes=3200)  # 100 ms each


async def test_a_finished_reply_is_truncated_to_what_was_played(event_log: EventLog) -> None:
    llm = RecordingLLM(TOKENS)
    session = await LiveSession.open("trunc", event_log, engines(llm, _tts()),
                                     create=SessionSettings())
    await session.submit_text("Tell me about Paris")
    seen = await collect_until(session, "response.done")
    sentences = [e.data.text for e in seen if isinstance(e, ResponseSentence)]
    chunks = [e.data for e in seen if isinstance(e, ResponseAudioChunk)]
    ends = [c.end_ms or 0 for c in chunks]
    assert len(sentences) == 2 and ends == sorted(ends) and ends[-1] == 400
    first_end = max(c.end_ms or 0 for c in chunks if c.sentence_index == 0)

    # played the first sentence and half of the second
    await session.handle(ResponseTruncate(turn_id=None, audio_end_ms=first_end + 100))
    [truncated] = await collect_until(session, "response.truncated")
    assert isinstance(truncated, ResponseTruncated)
    words = sentences[1].split()
    heard = f"{sentences[0]} {' '.join(words[: len(words) // 2])}"
    assert truncated.data.model_dump() == {
        "audio_end_ms": first_end + 100, "audio_ms": 400, "text_heard": heard}

    await session.submit_text("And Rome?")
    await session.wait_response()
    history = [(m.role, m.content) for m in llm.requests[-1].messages]
    assert history[1:] == [("user", "Tell me about Paris"), ("assistant", heard),
                           ("user", "And Rome?")]
    reopened = await LiveSession.open("trunc", event_log, engines())
    assert reopened.state.history()[2].content == heard  # the log alone says so
    await session.close()


async def test_a_reply_still_running_is_cancelled_then_truncated(event_log: EventLog) -> None:
    llm = RecordingLLM(TOKENS, gate_at=1)  # the first sentence, then it stalls
    session = await LiveSession.open("trunc-run", event_log, engines(llm, _tts()),
                                     create=SessionSettings())
    turn = await session.submit_text("Tell me about Paris")
    seen = []
    while sum(isinstance(e, ResponseAudioChunk) for e in seen) < 2:
        seen += await collect_until(session, "response.audio.chunk")
    await session.handle(ResponseTruncate(turn_id=turn, audio_end_ms=100))
    seen = await collect_until(session, "response.truncated")
    cancelled = next(e for e in seen if isinstance(e, ResponseCancelled))
    assert cancelled.data.reason == "client"
    assert seen[-1].type == "response.truncated" and seen[-1].turn_id == turn
    # half of the first piece's 200 ms (the buffer cuts a first piece early for a fast
    # start: "Paris is the capital"): 2 of its 4 words
    assert session.state.turns[turn].sentences == {0: "Paris is the capital"}
    assert seen[-1].data.text_heard == "Paris is"  # type: ignore[union-attr]
    assert session.state.turns[turn].assistant_text == "Paris is"
    assert not session.responding
    await session.close()


async def test_what_cannot_be_truncated_is_refused_with_a_code(event_log: EventLog) -> None:
    session = await LiveSession.open("trunc-bad", event_log, engines(RecordingLLM(TOKENS), _tts()),
                                     create=SessionSettings())
    with pytest.raises(ProtocolError) as nothing:
        await session.truncate_response(None, 0)
    assert nothing.value.code is ErrorCode.NOT_FOUND
    turn = await session.submit_text("Tell me about Paris")
    await session.wait_response()
    with pytest.raises(ProtocolError) as past:
        await session.truncate_response(turn, 401)
    assert (past.value.code, past.value.details["limit"]) == (ErrorCode.INVALID_MESSAGE, 400)
    with pytest.raises(ProtocolError) as unknown:
        await session.truncate_response("turn_nope", 10)
    assert unknown.value.code is ErrorCode.NOT_FOUND
    await session.update_settings({"realtime_tts": False})
    text_turn = await session.submit_text("And Rome?")
    await session.wait_response()
    with pytest.raises(ProtocolError) as silent:
        await session.truncate_response(text_turn, 0)
    assert (silent.value.code, silent.value.details["param"]) == (
        ErrorCode.INVALID_MESSAGE, "turn_id")
    assert not any(isinstance(e, ResponseTruncated) for e in await event_log.read_all("trunc-bad"))
    await session.close()
