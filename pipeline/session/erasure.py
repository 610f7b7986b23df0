"""Erasing a session: everything the server keeps of it, once, with a receipt.

The log's part (:func:`pipeline.log.erase_from_log`: its tombstone first, then its stream
and every pointer to it) is preceded by what lives beside the log: the collections it was
given (its grants revoked). A replica's live sockets of the session are the Gateway's to
close (``deployments/api/_erasure.py``). Erasing an erased session returns its receipt.
"""

from __future__ import annotations

from pipeline.log import EventLog, erase_from_log, erased_receipt
from pipeline.retrieval import CollectionStore
from schemas import ErasureReceipt, ErrorCode, SessionError

__all__ = ["erase_session", "known_or_erased"]


async def known_or_erased(log: EventLog, session_id: str) -> None:
    """Raise ``session_not_found`` unless the session exists or was erased (erasing an
    erased session returns its receipt; one that never was is not found)."""
    if await erased_receipt(log, session_id) is None and not await log.exists(session_id):
        raise SessionError(f"no session {session_id!r}", code=ErrorCode.SESSION_NOT_FOUND)


async def erase_session(
    log: EventLog, session_id: str, *, by: str, collections: CollectionStore | None = None,
    extra: dict[str, int] | None = None,
) -> ErasureReceipt:
    """Erase ``session_id`` (see the module docstring); ``extra``: what the caller removed."""
    done = await erased_receipt(log, session_id)
    if done is not None and done.by:
        return done.model_copy(update={"already": True})
    removed = dict(extra or {})
    if collections is not None:
        removed["collection_grants"] = await collections.revoke_everywhere(session_id)
    return await erase_from_log(log, session_id, by=by, extra=removed)
