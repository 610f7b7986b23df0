"""Random interleavings of append, retried append, trim and read against a model of the log."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pipeline.log import EventLog, StreamId, create_redis
from schemas import Event, EventLogSettings, InputText, InputTextData, ResyncRequiredError


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    """The event-log contract holds on a standalone Redis and on a Redis Cluster."""
    return both_redis_urls

pytestmark = pytest.mark.redis

SESSION = "prop"


class EventLogMachine(RuleBasedStateMachine):
    """The model: the ordered entries that survive, and the newest id trimmed away."""

    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.prefix = f"voxtest:{uuid.uuid4().hex[:12]}"
        self.redis = create_redis(self.redis_url)
        base = EventLogSettings(key_prefix=self.prefix, maxlen=None)
        self.plain = EventLog(self.redis, base)
        self.trimming: dict[int, EventLog] = {
            m: EventLog(
                self.redis, base.model_copy(update={"maxlen": m, "approximate_trim": False})
            )
            for m in (2, 5)
        }
        self.model: list[Event] = []
        self.numbers: list[int] = []
        self.horizon = StreamId(0, 0)
        self.appended = 0
        self.batches: list[list[Event]] = []
        self.counter = 0

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.runner.run(coro)

    def _events(self, size: int) -> list[InputText]:
        out = []
        for _ in range(size):
            self.counter += 1
            out.append(InputText(session_id=SESSION, data=InputTextData(text=f"e{self.counter}")))
        return out

    def _commit(self, batch: list[Event], maxlen: int | None) -> None:
        for event in batch:
            self.appended += 1
            self.model.append(event)
            self.numbers.append(self.appended)
        if maxlen is not None and len(self.model) > maxlen:
            cut = len(self.model) - maxlen
            self.horizon = StreamId.parse(self.model[cut - 1].id or "")
            del self.model[:cut]
            del self.numbers[:cut]

    @initialize()
    def start(self) -> None:
        self.run(self.redis.delete(self.plain.key(SESSION)))

    @rule(size=st.integers(1, 4), maxlen=st.sampled_from([None, None, 2, 5]))
    def append(self, size: int, maxlen: int | None) -> None:
        log = self.plain if maxlen is None else self.trimming[maxlen]
        result = self.run(log.append_batch(self._events(size)))
        assert not result.duplicate
        assert result.first_number == self.appended + 1
        self._commit(list(result.events), maxlen)
        self.batches.append(list(result.events))

    @rule(data=st.data())
    def retry_old_batch(self, data: st.DataObject) -> None:
        if not self.batches:
            return
        batch = data.draw(st.sampled_from(self.batches))
        if StreamId.parse(batch[0].id or "") <= self.horizon:
            return  # trimmed away: a retry that late is outside the contract
        result = self.run(self.plain.append_batch(batch))
        assert result.duplicate

    @rule(data=st.data())
    def read_after(self, data: st.DataObject) -> None:
        known = [None, *(e.id for batch in self.batches for e in batch)]
        after = data.draw(st.sampled_from(known))
        cursor = StreamId(0, 0) if after is None else StreamId.parse(after)
        if cursor < self.horizon:
            with pytest.raises(ResyncRequiredError):
                self.run(self.plain.read_all(SESSION, after=after))
            return
        got = self.run(self.plain.read_all(SESSION, after=after))
        assert got == [e for e in self.model if StreamId.parse(e.id or "") > cursor]

    @invariant()
    def numbers_follow_the_model(self) -> None:
        if self.model:
            page = self.run(self.plain.read_page(SESSION, after=str(self.horizon)))
            assert page.numbers == tuple(self.numbers[: len(page.numbers)])
            assert page.entries_added == self.appended

    def teardown(self) -> None:
        self.run(self.redis.delete(self.plain.key(SESSION), self.plain.feed_key_for(SESSION)))
        self.run(self.redis.aclose())
        self.runner.close()


def test_eventlog_matches_model(redis_url: str) -> None:
    EventLogMachine.redis_url = redis_url
    run = EventLogMachine.TestCase
    run.settings = settings(
        max_examples=40,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()
