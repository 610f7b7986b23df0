"""The Gateway's admission control: work past capacity is refused at once, with a retry
hint, never queued; a place is given back exactly once."""

from __future__ import annotations

import gc

import pytest

from pipeline.session import Admission, Permit
from schemas import AdmissionSettings, ErrorCode, OverloadedError


def test_the_n_plus_first_is_refused_with_a_retry_hint() -> None:
    admission = Admission(AdmissionSettings(max_turns=2, retry_after_ms=2500))
    first, second = admission.acquire("turns"), admission.acquire("turns")
    with pytest.raises(OverloadedError) as info:
        admission.acquire("turns")
    error = info.value
    assert error.code is ErrorCode.OVERLOADED and error.http_status == 503 and error.transient
    assert error.retry_after_ms == 2500
    assert error.to_payload().details == {"retry_after_ms": 2500, "limit": 2, "work": "turns"}
    assert admission.in_use("turns") == 2 and admission.refused["turns"] == 1
    first.release()
    third = admission.acquire("turns")  # a released place is free again
    assert admission.in_use("turns") == 2
    second.release(), third.release()
    assert admission.in_use("turns") == 0


def test_a_permit_is_released_once_however_often_it_is_released() -> None:
    admission = Admission(AdmissionSettings(max_speech=1))
    permit = admission.acquire("speech")
    permit.release()
    permit.release()
    assert admission.in_use("speech") == 0
    with admission.admit("speech"):
        assert admission.in_use("speech") == 1
        with pytest.raises(OverloadedError):
            admission.acquire("speech")
    assert admission.in_use("speech") == 0


def test_a_refusal_inside_admit_takes_no_place_and_an_error_gives_it_back() -> None:
    admission = Admission(AdmissionSettings(max_transcriptions=1))
    with pytest.raises(RuntimeError), admission.admit("transcriptions"):
        raise RuntimeError("the work failed")
    assert admission.in_use("transcriptions") == 0


def test_kinds_are_counted_apart_and_none_is_unlimited() -> None:
    admission = Admission(AdmissionSettings(max_sessions=1, max_turns=None))
    held = admission.acquire("sessions")
    with pytest.raises(OverloadedError):
        admission.acquire("sessions")
    permits = [admission.acquire("turns") for _ in range(1000)]
    assert admission.in_use("turns") == 1000 and admission.limit("turns") is None
    for permit in permits:
        permit.release()
    snapshot = admission.snapshot()
    assert snapshot["sessions"] == {"in_use": 1, "limit": 1, "refused": 1}
    assert snapshot["turns"] == {"in_use": 0, "limit": None, "refused": 0}
    held.release()


def test_check_refuses_without_reserving() -> None:
    admission = Admission(AdmissionSettings(max_turns=1))
    admission.check("turns")
    assert admission.in_use("turns") == 0
    held = admission.acquire("turns")
    with pytest.raises(OverloadedError):
        admission.check("turns")
    held.release()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas import Settings

    monkeypatch.setenv("VOXLINE_ADMISSION__MAX_TURNS", "3")
    monkeypatch.setenv("VOXLINE_ADMISSION__RETRY_AFTER_MS", "1500")
    monkeypatch.setenv("VOXLINE_HISTORY__MAX_TOKENS", "2048")
    settings = Settings()
    assert settings.admission.max_turns == 3 and settings.admission.retry_after_ms == 1500
    assert settings.history.max_tokens == 2048


def test_a_permit_lost_by_its_holder_is_given_back_when_collected() -> None:
    admission = Admission(AdmissionSettings(max_speech=1))

    class Body:  # a response body that never started: it holds the permit, nothing else
        def __init__(self, permit: Permit) -> None:
            self.permit = permit

    never_started = Body(admission.acquire("speech"))
    assert admission.in_use("speech") == 1
    del never_started
    gc.collect()
    assert admission.in_use("speech") == 0
