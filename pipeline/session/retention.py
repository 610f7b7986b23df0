"""Retention: sessions older than ``VOXLINE_LOG__RETENTION_DAYS`` (or their API key's
``VOXLINE_API__KEY_RETENTION_DAYS``) erased, as erasure does.

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
from collections.abc import Mapping

from pipeline.log import EventLog, logged_sessions
from pipeline.retrieval import CollectionStore
from pipeline.session.erasure import erase_session
from schemas import ErasureReceipt

__all__ = ["expire_sessions", "sweep_forever"]

logger = logging.getLogger(__name__)


async def expire_sessions(log: EventLog, days: float | None, *,
                          tenants: Mapping[str, float] | None = None,
                          collections: CollectionStore | None = None,
                          now_ms: int | None = None) -> list[ErasureReceipt]:
    """Erase every session created more than ``days`` ago, or its tenant's days
    (``tenants``: an API key's digest → days, as ``session.created`` names it); their
    receipts."""
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    shortest = min([d for d in (days, *(tenants or {}).values()) if d is not None],
                   default=None)
    if shortest is None:
        return []
    receipts = []
    async for logged in logged_sessions(log):
        session_id = logged.session_id
        age_days = (now - logged.started_ms) / 86_400_000
        if age_days <= shortest:
            continue
        if tenants:  # whose it is: session.created says (read, and opened if sealed)
            created = (await log.read_page(session_id, count=1)).events
            tenant = getattr(created[0].data, "tenant", None) if created else None
            keep = tenants.get(tenant or "", days)
        else:
            keep = days
        if keep is None or age_days <= keep:
            continue
        receipts.append(await erase_session(log, session_id, by="retention",
                                            collections=collections))
    return receipts


async def sweep_forever(log: EventLog, days: float | None, every_s: float, *,
                        tenants: Mapping[str, float] | None = None,
                        collections: CollectionStore | None = None) -> None:
    """:func:`expire_sessions` every ``every_s`` until cancelled; a failed sweep is logged
    and tried again at the next."""
    while True:
        try:
            erased = await expire_sessions(log, days, tenants=tenants,
                                           collections=collections)
            if erased:
                logger.info("retention: %d sessions past their retention erased",
                            len(erased))
        except Exception:
            logger.exception("retention sweep failed; trying again in %g s", every_s)
        await asyncio.sleep(every_s)
