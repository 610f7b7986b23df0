"""A feed worker folds a session on from its previous entry: what it decides is what a fold
of the whole log decides, and an entry reads only what came since (real Redis for the log;
:class:`SessionFolds` alone for its bounds)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from pipeline.log import Delivery, EventLog, SessionState, fold
from pipeline.workers import Job, NarrationWorker
from pipeline.workers._folds import SessionFolds
from schemas import (
    EventLogSettings,
    SessionCreated,
    SessionCreatedData,
    SessionSettings,
    SessionUpdated,
    SessionUpdatedData,
)
from tests.support.clock import Clock
from tests.support.engines import ScriptedTTS
from tests.support.feeds import every_delivery
from tests.support.text_turns import text_turn_events

AUTO = SessionSettings(auto_play=True, realtime_tts=False, output_sample_rate=16000)

# ---- the cache's bounds (no Redis) ----------------------------------------------------


def state_at(session_id: str, event_id: str, turns: int = 0) -> SessionState:
    state = SessionState(session_id=session_id, last_event_id=event_id)
    for k in range(turns):
        turn = state._turn(f"t{k}")
        turn.status, turn.user_text, turn.assistant_text = "completed", "hi", "hello"
    return state


def test_a_fold_is_handed_over_only_for_a_later_event() -> None:
    folds = SessionFolds(4, 60)
    folds.keep(state_at("s", "5-0"))
    assert folds.take("s", "5-0") is None  # the same entry again: read from the start
    assert folds.take("s", "4-9") is None  # an older one (redelivered)
    assert folds.take("other", "9-0") is None
    taken = folds.take("s", "5-1")
    assert taken is not None and taken.last_event_id == "5-0"
    assert folds.take("s", "6-0") is None  # handed over: the caller keeps the next one


def test_folds_are_bounded_in_sessions_and_in_time() -> None:
    clock = Clock()
    folds = SessionFolds(2, 60, clock=clock)
    for k, session in enumerate(("a", "b", "c")):
        clock.now = k
        folds.keep(state_at(session, "1-0"))
    assert len(folds) == 2 and folds.take("a", "2-0") is None  # least recently used out
    clock.now = 61.5  # b kept at 1, c at 2: b has lapsed
    assert folds.take("b", "2-0") is None
    assert folds.take("c", "2-0") is not None
    clock.now = 200
    folds.keep(state_at("d", "1-0"))
    clock.now = 261
    assert folds.take("d", "2-0") is None and len(folds) == 0


def test_no_folds_kept_when_turned_off() -> None:
    folds = SessionFolds(0, 60)
    folds.keep(state_at("s", "1-0"))
    assert len(folds) == 0 and folds.take("s", "2-0") is None


def test_a_kept_fold_holds_only_the_turns_a_fold_still_shows() -> None:
    folds = SessionFolds(4, 60)
    folds.keep(state_at("s", "1-0", turns=300))
    taken = folds.take("s", "2-0")
    assert taken is not None and 0 < len(taken.turns) < 300
    assert "t299" in taken.turns  # the newest turn stays


# ---- against a fold of the whole log (real Redis) --------------------------------------

@dataclass(frozen=True)
class Seen:
    """What a job held when the worker judged it (its state moves on with the next)."""

    event_id: str
    settings: SessionSettings
    audio_chunks: int
    read: int
    first_read: str | None
    wanted: bool


class Watching(NarrationWorker):
    """A narrator that writes down each job it was given and what it decided."""

    def __init__(self, log: EventLog) -> None:
        super().__init__(log, ScriptedTTS(sample_rate=16000), consumer="w")
        self.seen: list[Seen] = []

    def wanted(self, job: Job) -> bool:
        wanted = super().wanted(job)
        if job.entry.event_id not in [seen.event_id for seen in self.seen]:
            turn = job.state.turns.get(job.event.turn_id or "")
            self.seen.append(Seen(job.entry.event_id, job.state.settings,
                                  turn.audio_chunks if turn else -1, len(job.events),
                                  job.events[0].id, wanted))
        return wanted


async def deliveries(worker: NarrationWorker) -> list[Delivery]:
    """Every response.done on the feeds not yet delivered to the worker, oldest first."""
    return [d for d in await every_delivery(worker.reader)
            if d.fields[b"type"] == b"response.done"]


@pytest.mark.redis
async def test_each_entry_reads_what_came_since_and_decides_as_the_whole_log(
    event_log: EventLog,
) -> None:
    """Thirty turns, text and spoken, with auto-play switched on and off between them:
    every response is judged on the settings and the turn a fold of the whole log gives,
    and every entry after the first reads only from the previous one on."""
    rng = random.Random(7)
    settings = AUTO.model_copy(update={"auto_play": False})
    await event_log.append(SessionCreated(session_id="s", data=SessionCreatedData(
        settings=settings)))
    worker = Watching(event_log)
    for k in range(30):
        if rng.random() < 0.4:
            settings = settings.model_copy(update={"auto_play": not settings.auto_play,
                                                   "speech_speed": 0.8 + rng.random() / 2})
            await event_log.append(SessionUpdated(session_id="s", data=SessionUpdatedData(
                settings=settings, changed=("auto_play", "speech_speed"))))
        await event_log.append_batch(text_turn_events(
            "s", "Something short.", turn_id=f"t{k}", with_audio=rng.random() < 0.5))
        for delivery in await deliveries(worker):
            await worker.handle(delivery)
            await worker.reader.ack(delivery)

    log = await event_log.read_all("s")
    assert len(worker.seen) == 30
    narrated = 0
    for k, seen in enumerate(worker.seen):
        at = next(i for i, e in enumerate(log) if e.id == seen.event_id)
        whole = fold("s", log[: at + 1])
        assert seen.settings == whole.settings
        turn = whole.turns[f"t{k}"]
        assert seen.audio_chunks == turn.audio_chunks
        # narrated: auto-play on as of the response, and no audio of its own
        assert seen.wanted == (whole.settings.auto_play and turn.audio_chunks == 0)
        narrated += seen.wanted
        if k:  # from the event after the previous entry on, not from the log's start
            previous = next(i for i, e in enumerate(log) if e.id == worker.seen[k - 1].event_id)
            assert seen.first_read == log[previous + 1].id
            assert seen.read < at
    assert 0 < narrated < 30  # the run exercised both answers


@pytest.mark.redis
async def test_a_redelivered_older_entry_is_judged_from_the_start(event_log: EventLog) -> None:
    await event_log.append(SessionCreated(session_id="s", data=SessionCreatedData(
        settings=SessionSettings(auto_play=False))))
    await event_log.append_batch(text_turn_events("s", "Something short.", turn_id="t0"))
    await event_log.append(SessionUpdated(session_id="s", data=SessionUpdatedData(
        settings=AUTO, changed=("auto_play",))))
    await event_log.append_batch(text_turn_events("s", "Something short.", turn_id="t1"))
    worker = Watching(event_log)
    first, second = await deliveries(worker)
    await worker.handle(second)
    await worker.handle(first)  # claimed again after a newer one was handled
    [seen] = worker.seen[1:]
    assert seen.event_id == first.fields[b"event"].decode()
    assert not seen.settings.auto_play and not seen.wanted


@pytest.mark.redis
async def test_a_worker_without_folds_reads_every_entry_from_the_start(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    log = EventLog(redis, log_settings.model_copy(update={"worker_folds": 0}))
    await log.append(SessionCreated(session_id="s", data=SessionCreatedData(settings=AUTO)))
    for k in range(3):
        await log.append_batch(text_turn_events(
            "s", "Something short.", turn_id=f"t{k}", with_audio=True))
    worker = Watching(log)
    for delivery in await deliveries(worker):
        await worker.handle(delivery)
    assert [seen.read for seen in worker.seen] == [len(await log.read_all("s"))] * 3
