"""Retention: sessions older than ``VOXLINE_LOG__RETENTION_DAYS`` erased, as erasure does.

Trimming and a closed session's TTL bound what Redis keeps; retention is the promise an
operator makes about *how long* anything of a user is kept: a session past it is erased
with :func:`pipeline.session.erase_session` (its data key first, then every copy's
pointer), not merely expired. A sweep looks at every session stream under the prefix;
a stream's first entry id is its creation time, so no index is written on the hot path.
Every Gateway replica sweeps (``retention_sweep_s``); erasure is idempotent, so two
sweeps of one session cost a second look, not a second erasure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

from pipeline.log import EventLog, StreamId
from pipeline.retrieval import CollectionStore
from pipeline.session.erasure import erase_session
from schemas import ErasureReceipt

__all__ = ["expire_sessions", "sweep_forever"]

logger = logging.getLogger(__name__)


async def expire_sessions(log: EventLog, days: float, *,
                          collections: CollectionStore | None = None,
                          now_ms: int | None = None) -> list[ErasureReceipt]:
    """Erase every session created more than ``days`` ago; their receipts."""
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    horizon = now - int(days * 86_400_000)
    prefix = log.keys.session("")  # "{prefix}:session:" (standalone) or with a tag
    pattern = (f"{log.settings.key_prefix}:session:*" if not log.keys.cluster
               else f"{log.settings.key_prefix}:session:{{*}}:*")
    receipts = []
    async for raw in log.redis.scan_iter(match=pattern, count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        session_id = key.rsplit(":", 1)[1] if log.keys.cluster else key[len(prefix):]
        first = cast(list[tuple[bytes, object]], await log.redis.xrange(key, "-", "+", count=1))
        if not first or StreamId.parse(first[0][0]).ms >= horizon:
            continue
        receipts.append(await erase_session(log, session_id, by="retention",
                                            collections=collections))
    return receipts


async def sweep_forever(log: EventLog, days: float, every_s: float, *,
                        collections: CollectionStore | None = None) -> None:
    """:func:`expire_sessions` every ``every_s`` until cancelled; a failed sweep is logged
    and tried again at the next."""
    while True:
        try:
            erased = await expire_sessions(log, days, collections=collections)
            if erased:
                logger.info("retention: %d sessions older than %g days erased",
                            len(erased), days)
        except Exception:
            logger.exception("retention sweep failed; trying again in %g s", every_s)
        await asyncio.sleep(every_s)
