"""Reference transcripts from JSON Lines: rows with a reference are kept by session and
turn, rows without one are skipped (a dataset's metadata.jsonl as exported), and a row
that is not an object, names no turn, or a file too large are refused naming the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.datasets import dataset_references, read_references
from pipeline.datasets import references as module
from schemas import ConfigurationError


def _write(path: Path, *rows: object) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n"
                            for row in rows), encoding="utf-8")
    return path


def test_rows_with_a_reference_are_kept_and_the_rest_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path / "refs.jsonl",
                  {"session_id": "s1", "turn_id": "t1", "reference": "hello there",
                   "transcript": "hello their", "file_name": "audio/s1/1.wav"},
                  {"session_id": "s1", "turn_id": "t2", "transcript": "no reference yet"},
                  "",
                  {"session_id": "s2", "turn_id": "t1", "reference": ""})
    assert read_references(path) == {("s1", "t1"): "hello there", ("s2", "t1"): ""}


@pytest.mark.parametrize(("row", "said"), [
    ("{not json", r"refs.jsonl:2: not JSON"),
    ('["a list"]', r"refs.jsonl:2: a row is a JSON object"),
    ({"turn_id": "t1", "reference": "x"}, r"refs.jsonl:2: a reference needs session_id"),
    ({"session_id": "s", "turn_id": 3, "reference": "x"}, r"needs session_id and turn_id"),
])
def test_a_bad_row_is_refused_naming_its_line(tmp_path: Path, row: object, said: str) -> None:
    path = _write(tmp_path / "refs.jsonl", {"session_id": "s", "turn_id": "t", "reference": "ok"},
                  row)
    with pytest.raises(ConfigurationError, match=said) as caught:
        read_references(path)
    assert caught.value.details["setting"] == "--references"


def test_a_missing_or_oversized_file_is_refused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="No such file"):
        read_references(tmp_path / "absent.jsonl")
    path = _write(tmp_path / "big.jsonl", {"session_id": "s", "turn_id": "t", "reference": "x"})
    monkeypatch.setattr(module, "MAX_REFERENCES_BYTES", 10)
    with pytest.raises(ConfigurationError, match="at most 10"):
        read_references(path)


def test_a_dataset_without_metadata_has_no_references(tmp_path: Path) -> None:
    assert dataset_references(tmp_path) == {}
    _write(tmp_path / "metadata.jsonl", {"session_id": "s", "turn_id": "t", "reference": "x"})
    assert dataset_references(tmp_path) == {("s", "t"): "x"}
