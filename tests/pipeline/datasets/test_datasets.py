"""A dataset written from events and read back (:mod:`pipeline.datasets`), without Redis:
what comes back, what an export redacts further, what a reader refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets import DATASET_FORMAT, read_dataset, write_dataset
from schemas import (
    AudioChunkData,
    Event,
    InputAudio,
    InputAudioData,
    InputText,
    InputTextData,
    ProtocolError,
    ResponseAudioChunk,
    TranscriptData,
    TranscriptFinal,
)

SID = "sess-ds"


def events() -> list[Event]:
    pcm = (np.sin(np.arange(1600) / 8) * 9000).astype("<i2").tobytes()
    return [
        InputAudio(id="1-0", session_id=SID, turn_id="t1", ts=1, data=InputAudioData(
            sample_rate=16000, audio=pcm, duration_ms=100, start_ms=40)),
        TranscriptFinal(id="1-1", session_id=SID, turn_id="t1", ts=2, data=TranscriptData(
            text="mail me at ann@example.com", language="en")),
        InputText(id="2-0", session_id=SID, turn_id="t2", ts=3,
                  data=InputTextData(text="my card is 4111 1111 1111 1111")),
        ResponseAudioChunk(id="2-1", session_id=SID, turn_id="t2", ts=4, data=AudioChunkData(
            sample_rate=24000, audio=b"\x01\x02" * 480, sentence_index=0, chunk_index=0,
            end_ms=20)),
    ]


def test_events_come_back_as_written_except_a_replys_audio(tmp_path: Path) -> None:
    summary = write_dataset([(SID, events())], tmp_path / "d")
    assert (summary.sessions, summary.utterances, summary.events) == (1, 1, 4)
    [back] = read_dataset(tmp_path / "d")
    original = events()
    assert list(back.events[:3]) == original[:3]  # the utterance's audio included
    chunk = back.events[3]
    assert isinstance(chunk, ResponseAudioChunk) and chunk.data.audio == b""
    assert chunk.data.model_dump(exclude={"audio"}) == original[3].data.model_dump(
        exclude={"audio"})
    manifest = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert manifest["format"] == DATASET_FORMAT and manifest["utterances"] == 1
    record = json.loads((tmp_path / "d" / "sessions" / f"{SID}.jsonl").read_text()
                        .splitlines()[3])
    assert record["audio_bytes"] == 960 and "audio" not in record["data"]


def test_an_export_can_redact_more_and_leaves_ids_alone(tmp_path: Path) -> None:
    write_dataset([(SID, events())], tmp_path / "d", redact_kinds=("email", "card"))
    text = (tmp_path / "d" / "sessions" / f"{SID}.jsonl").read_text()
    assert "ann@example.com" not in text and "4111" not in text
    assert "[email]" in text and "[card]" in text
    [row] = [json.loads(line) for line in (tmp_path / "d" / "metadata.jsonl").read_text()
             .splitlines()]
    assert row["transcript"] == "mail me at [email]" and row["event_id"] == "1-0"
    assert json.loads((tmp_path / "d" / "dataset.json").read_text())["redact"] == [
        "email", "card"]


def test_an_existing_folder_with_files_is_not_written_into(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        write_dataset([(SID, events())], tmp_path / "d")
    assert (tmp_path / "d" / "keep.txt").read_text() == "mine"


def test_a_reader_refuses_what_is_not_a_dataset_or_not_an_event(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="not a Voxline dataset"):
        read_dataset(tmp_path)
    write_dataset([(SID, events())], tmp_path / "d")
    with pytest.raises(ProtocolError, match="holds no session other"):
        read_dataset(tmp_path / "d", sessions={"other"})
    lines = (tmp_path / "d" / "sessions" / f"{SID}.jsonl")
    edited = lines.read_text().splitlines()
    edited[1] = json.dumps({**json.loads(edited[1]), "type": "no.such.event"})
    lines.write_text("\n".join(edited) + "\n")
    with pytest.raises(ProtocolError, match=rf"{SID}.jsonl:2: not an event"):
        read_dataset(tmp_path / "d")


@pytest.mark.parametrize("session_id", ["..", "../../x", ".hidden", ""])
def test_an_id_cannot_name_a_path_outside_the_dataset(tmp_path: Path, session_id: str) -> None:
    with pytest.raises(ValueError, match="cannot name a file"):
        write_dataset([(session_id, [])], tmp_path / "d")
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "d" / "sessions").exists()
    write_dataset([("a/b", [])], tmp_path / "e")  # a separator becomes part of the name
    assert [p.name for p in (tmp_path / "e" / "sessions").iterdir()] == ["a_b.jsonl"]
