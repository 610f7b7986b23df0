"""A session that redacts: what the user types or says reaches the log and the model with
its personal data replaced, the kinds asked for only; one that keeps no audio logs an
utterance's timing, not its sound."""

from __future__ import annotations

import pytest

from pipeline.audio import EndpointConfig
from pipeline.log import EventLog
from pipeline.session import LiveSession, SessionEngines, Tenant, logged_input
from schemas import SessionSettings
from tests.support.audio_fixtures import tone
from tests.support.engines import EnergyVAD, RecordingLLM, ScriptedSTT, ScriptedTTS
from tests.support.sessions import collect_until
from voxline.inspect import SessionRecord, transcript_lines

pytestmark = pytest.mark.redis

SPOKEN = "my card is four one one one one one one one one one one one one one one one"


async def test_typed_and_spoken_personal_data_never_reach_the_log_or_the_model(
    event_log: EventLog, key_prefix: str,
) -> None:
    llm = RecordingLLM(["Noted."])
    parts = SessionEngines(llm=llm, tts=ScriptedTTS(sample_rate=16000),
                           stt=ScriptedSTT(SPOKEN), vad=EnergyVAD())
    settings = SessionSettings(redact=("email", "phone", "card", "iban"))
    session = await LiveSession.open(f"{key_prefix}redact", event_log, parts, create=settings,
                                     endpoint_config=EndpointConfig())
    await session.submit_text("Write to jane@example.com or call 415-555-0132.")
    await collect_until(session, "response.done")
    audio = tone(0.3, False) + tone(1.0, True) + tone(0.8, False)
    for start in range(0, len(audio), 640):
        await session.push_audio(audio[start:start + 640])
    await collect_until(session, "response.done")
    await session.wait_response()
    logged = await event_log.read_all(f"{key_prefix}redact")
    [typed] = [e.data.text for e in logged if e.type == "input.text"]  # type: ignore[union-attr]
    [heard] = [e.data.text for e in logged if e.type == "transcript.final"]  # type: ignore[union-attr]
    assert typed == "Write to [email] or call [phone]."
    assert heard == "my card is [card]"
    asked = [m.content for request in llm.requests for m in request.messages
             if m.role == "user"]
    assert "Write to [email] or call [phone]." in asked and "my card is [card]" in asked
    for secret in ("jane@example.com", "415-555-0132", "four one one one"):
        assert all(secret not in text for text in asked), secret
    await session.close()


async def test_without_redact_the_text_is_kept_as_said(
    event_log: EventLog, key_prefix: str,
) -> None:
    parts = SessionEngines(llm=RecordingLLM(["Noted."]))
    session = await LiveSession.open(f"{key_prefix}keep", event_log, parts,
                                     create=SessionSettings(redact=("card",)))
    await session.submit_text("Mail jane@example.com about card 4111 1111 1111 1111.")
    seen = await collect_until(session, "response.done")
    [typed] = [e.data.text for e in seen if e.type == "input.text"]  # type: ignore[union-attr]
    assert typed == "Mail jane@example.com about card [card]."  # the kinds asked for only
    await session.close()


async def test_store_audio_off_keeps_the_utterances_timing_not_its_sound(
    event_log: EventLog, key_prefix: str,
) -> None:
    stt = ScriptedSTT("hello there")
    parts = SessionEngines(llm=RecordingLLM(["Hi."]), tts=ScriptedTTS(sample_rate=16000),
                           stt=stt, vad=EnergyVAD())
    session = await LiveSession.open(f"{key_prefix}noaudio", event_log, parts,
                                     create=SessionSettings(store_audio=False),
                                     endpoint_config=EndpointConfig())
    audio = tone(0.3, False) + tone(1.0, True) + tone(0.8, False)
    for start in range(0, len(audio), 640):
        await session.push_audio(audio[start:start + 640])
    seen = await collect_until(session, "response.done")
    [utterance] = [e for e in seen if e.type == "input.audio"]
    assert utterance.data.audio == b"" and utterance.data.duration_ms >= 1000  # type: ignore[union-attr]
    assert len(stt.heard) == 1 and stt.heard[0] > 0  # transcribed from what was heard
    assert [e.data.text for e in seen if e.type == "transcript.final"] == ["hello there"]  # type: ignore[union-attr]
    record = SessionRecord(f"{key_prefix}noaudio", tuple(await event_log.read_all(
        f"{key_prefix}noaudio")))
    assert transcript_lines(record)[0] == "user: hello there [its audio was not kept]"
    assert logged_input(record.session_id, record.events) is None
    await session.close()


async def test_an_api_keys_required_redaction_holds_whatever_the_session_updates(
    event_log: EventLog, key_prefix: str,
) -> None:
    sid = f"{key_prefix}tenant"
    session = await LiveSession.open(
        sid, event_log, SessionEngines(llm=RecordingLLM(["Noted."])),
        create=SessionSettings(redact=("email",)), tenant=Tenant("key:bank", ("card",)))
    assert session.settings.redact == ("email", "card")  # the session's and the key's
    await session.update_settings({"redact": []})
    assert session.settings.redact == ("card",)  # the session's own went; the key's stayed
    await session.submit_text("Charge 4111 1111 1111 1111 and mail jane@example.com.")
    await collect_until(session, "response.done")
    await session.close()

    logged = await event_log.read_all(sid)
    [typed] = [e.data.text for e in logged if e.type == "input.text"]  # type: ignore[union-attr]
    assert typed == "Charge [card] and mail jane@example.com."
    created = logged[0].data
    assert (created.tenant, created.redact_required) == (  # type: ignore[union-attr]
        "key:bank", ("card",))
    again = await LiveSession.open(sid, event_log, SessionEngines(llm=RecordingLLM(["Ok."])))
    assert again.state.redact_required == ("card",)  # another replica folds it from the log
    await again.update_settings({"redact": ["iban"]})
    assert again.settings.redact == ("card", "iban")
    await again.close()
