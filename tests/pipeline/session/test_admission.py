"""The Gateway's admission control: work past capacity is refused at once, with a retry
hint, unless it may wait (a voice turn: in a bounded queue, for a bounded time, first come
first served); a place is given back exactly once."""

from __future__ import annotations

import asyncio
import gc

import pytest

from pipeline.session import Admission, Permit
from pipeline.session.admission import Waiting
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
    assert snapshot["sessions"] == {"in_use": 1, "limit": 1, "waiting": 0, "refused": 1}
    assert snapshot["turns"] == {"in_use": 0, "limit": None, "waiting": 0, "refused": 0}
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


# ---- voice turns wait for a place (reserve) -----------------------------------------


async def test_a_free_place_is_reserved_at_once() -> None:
    admission = Admission(AdmissionSettings(max_turns=1))
    permit = admission.reserve("turns", wait_s=1.0, max_waiting=4)
    assert isinstance(permit, Permit) and admission.in_use("turns") == 1
    permit.release()
    assert admission.in_use("turns") == 0


async def test_waiters_get_places_first_come_first_served() -> None:
    admission = Admission(AdmissionSettings(max_turns=1))
    held = admission.acquire("turns")
    first = admission.reserve("turns", wait_s=10.0, max_waiting=4)
    second = admission.reserve("turns", wait_s=10.0, max_waiting=4)
    assert isinstance(first, Waiting) and isinstance(second, Waiting)
    assert admission.waiting("turns") == 2
    waits = [asyncio.create_task(first.permit()), asyncio.create_task(second.permit())]
    await asyncio.sleep(0)
    with pytest.raises(OverloadedError):
        admission.acquire("turns")  # nothing slips in before the waiters
    held.release()  # the place passes on: the count stays
    assert admission.in_use("turns") == 1
    await waits[0]
    assert not waits[1].done() and admission.waiting("turns") == 1
    assert first.waited_ms is not None and second.waited_ms is None  # how long it took
    first.release()
    await waits[1]
    second.release()
    assert admission.in_use("turns") == 0 and admission.waiting("turns") == 0


async def test_a_wait_past_its_bound_is_refused_and_leaves_the_queue() -> None:
    admission = Admission(AdmissionSettings(max_turns=1, retry_after_ms=900))
    held = admission.acquire("turns")
    waiting = admission.reserve("turns", wait_s=0.02, max_waiting=4)
    assert isinstance(waiting, Waiting)
    with pytest.raises(OverloadedError) as info:
        await waiting.permit()
    assert info.value.retry_after_ms == 900 and admission.refused["turns"] == 1
    assert admission.waiting("turns") == 0
    held.release()
    assert admission.in_use("turns") == 0


async def test_no_wait_or_a_full_queue_is_refused_at_once() -> None:
    admission = Admission(AdmissionSettings(max_turns=1))
    held = admission.acquire("turns")
    with pytest.raises(OverloadedError):
        admission.reserve("turns", wait_s=0, max_waiting=4)
    queued = admission.reserve("turns", wait_s=10.0, max_waiting=1)
    with pytest.raises(OverloadedError):
        admission.reserve("turns", wait_s=10.0, max_waiting=1)
    assert admission.refused["turns"] == 2 and admission.waiting("turns") == 1
    queued.release()
    held.release()
    assert admission.in_use("turns") == 0


async def test_a_wait_given_up_passes_the_place_to_the_next() -> None:
    admission = Admission(AdmissionSettings(max_turns=1))
    held = admission.acquire("turns")
    gone = admission.reserve("turns", wait_s=10.0, max_waiting=4)
    stays = admission.reserve("turns", wait_s=10.0, max_waiting=4)
    assert isinstance(gone, Waiting) and isinstance(stays, Waiting)
    waits = asyncio.create_task(gone.permit())
    await asyncio.sleep(0)
    gone.release()
    with pytest.raises(asyncio.CancelledError):
        await waits
    held.release()
    permit = await stays.permit()
    assert admission.in_use("turns") == 1
    permit.release()
    stays.release()  # idempotent with the permit's own release
    assert admission.in_use("turns") == 0


async def test_a_place_granted_but_never_taken_goes_back() -> None:
    admission = Admission(AdmissionSettings(max_turns=1))
    held = admission.acquire("turns")
    waiting = admission.reserve("turns", wait_s=10.0, max_waiting=4)
    held.release()  # granted to the waiter, which never awaits it
    assert admission.in_use("turns") == 1
    waiting.release()
    assert admission.in_use("turns") == 0


async def test_draining_refuses_the_waiters_and_a_higher_limit_admits_them() -> None:
    admission = Admission(AdmissionSettings(max_turns=1))
    held = admission.acquire("turns")
    raised = admission.reserve("turns", wait_s=10.0, max_waiting=4)
    assert isinstance(raised, Waiting)
    admission.resize(AdmissionSettings(max_turns=2))
    assert admission.in_use("turns") == 2 and admission.waiting("turns") == 0
    (await raised.permit()).release()
    drained = admission.reserve("turns", wait_s=10.0, max_waiting=4)
    assert isinstance(drained, Permit)  # the raised limit's place
    late = admission.reserve("turns", wait_s=10.0, max_waiting=4)
    assert isinstance(late, Waiting)
    admission.drain()
    with pytest.raises(OverloadedError) as info:
        await late.permit()
    assert info.value.code is ErrorCode.SERVER_DRAINING
    late.release(), drained.release(), held.release()
    assert admission.in_use("turns") == 0
