"""Log records carry the session, turn and trace ids of the task that wrote them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from pipeline.tracing import bind_session, install_log_context, trace_id, turn_context


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[_Keep]:
    install_log_context()
    install_log_context()  # twice: still one wrapper
    logger = logging.getLogger("voxline.test.log_context")
    logger.setLevel(logging.INFO)
    handler = _Keep()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def test_a_sessions_tasks_and_its_turns_say_whom_they_work_for(kept: _Keep) -> None:
    logger = logging.getLogger("voxline.test.log_context")

    async def session() -> None:
        bind_session("sess_a")
        logger.info("opened")

        async def turn() -> None:
            logger.info("replying")

        await asyncio.create_task(turn(), context=turn_context("turn_1"))
        logger.info("after the turn")

    await asyncio.create_task(session())
    logger.info("elsewhere")
    opened, replying, after, elsewhere = kept.records
    assert opened.session_id == "sess_a" and not hasattr(opened, "turn_id")
    assert (replying.session_id, replying.turn_id) == ("sess_a", "turn_1")
    assert replying.trace_id == trace_id("sess_a", "turn_1") and len(replying.trace_id) == 32
    assert not hasattr(after, "turn_id")  # the turn's context was its task's only
    assert not hasattr(elsewhere, "session_id")  # another task's session is not this one's
    factory = logging.getLogRecordFactory()
    assert getattr(factory, "voxline_context", False)
