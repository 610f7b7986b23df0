"""The schemas package: its public surface, the JSON Schema file, events and settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import schemas
from schemas import EVENT_ADAPTER, EVENT_TYPES, SessionSettings, primary_language
from schemas._jsonschema import SCHEMA_PATH, render
from tests.support.event_samples import sample_events

DESIGN_EVENT_TYPES = {
    "session.created", "session.updated", "session.closed", "input.speech_started",
    "input.speech_stopped", "input.audio", "input.text", "transcript.partial",
    "transcript.final", "response.started", "response.text.delta", "response.sentence",
    "response.audio.chunk", "response.audio.done", "response.done", "response.cancelled",
    "narration.ready", "error",
}  # fmt: skip


def test_every_design_event_type_exists() -> None:
    assert set(EVENT_TYPES) >= DESIGN_EVENT_TYPES


def test_public_names_are_exported_and_nothing_private() -> None:
    assert sorted(schemas.__all__) == sorted(set(schemas.__all__))
    for name in schemas.__all__:
        assert hasattr(schemas, name), name
        assert not name.startswith("_")


@pytest.mark.parametrize("event", sample_events("json"), ids=lambda e: e.type)
def test_events_round_trip_through_json(event: schemas.EventBase) -> None:
    assert EVENT_ADAPTER.validate_json(event.model_dump_json()) == event


def test_audio_is_standard_base64_in_json() -> None:
    chunk = schemas.AudioChunkData(
        sample_rate=16000, sentence_index=0, chunk_index=0, audio=bytes([0xFB, 0xFF, 0xFE])
    )
    assert '"audio":"+//+"' in chunk.model_dump_json()


def test_json_schema_file_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), (
        "docs/protocol.schema.json is stale: run `python -m schemas`"
    )


def test_settings_updates_are_validated_whole() -> None:
    base = SessionSettings()
    updated = base.merged({"voice": "joe", "sampling": {"temperature": 0.1}})
    assert updated.voice == "joe" and updated.sampling.temperature == 0.1
    assert updated.sampling.max_tokens == base.sampling.max_tokens
    with pytest.raises(ValidationError):
        base.merged({"input_sample_rate": 12345})
    with pytest.raises(ValidationError):
        base.merged({"voice": "x", "no_such_setting": 1})


def test_error_payload_carries_code_and_transient_bit() -> None:
    err = schemas.ResyncRequiredError("trimmed", horizon="5-0")
    payload = err.to_payload()
    assert payload.code == "resync_required" and payload.transient is False
    assert payload.details == {"horizon": "5-0"}
    assert err.http_status == 410
    assert schemas.EventLogError("down").to_payload().transient is True


def test_a_turns_events_carry_its_trace_ids_derived_never_read() -> None:
    text = schemas.InputText(session_id="s1", turn_id="t1",
                             data=schemas.InputTextData(text="hi"))
    assert text.trace_id == schemas.trace_id("s1", "t1")
    assert text.span_id == schemas.root_span_id(text.trace_id)
    assert len(text.trace_id) == 32 and len(text.span_id) == 16
    wire = text.model_dump(mode="json")
    assert (wire["trace_id"], wire["span_id"]) == (text.trace_id, text.span_id)
    forged = {**wire, "trace_id": "0" * 32, "span_id": "0" * 16}
    assert EVENT_ADAPTER.validate_python(forged).trace_id == text.trace_id
    outside = schemas.SessionClosed(session_id="s1", data=schemas.SessionClosedData())
    assert (outside.trace_id, outside.span_id) == (None, None)
    other_turn = text.model_copy(update={"turn_id": "t2"})
    assert other_turn.trace_id != text.trace_id


@pytest.mark.parametrize(("tag", "primary"), [("en", "en"), ("de-AT", "de"), ("EN-us", "en"),
                                              ("yue", "yue")])
def test_a_language_tags_primary_subtag(tag: str, primary: str) -> None:
    assert primary_language(tag) == primary
