"""What erasing a session answers: a receipt of what was removed, and where.

The receipt is also what the session's tombstone holds (``{prefix}:erased:{id}``, kept
``VOXLINE_LOG__ERASED_TTL_S``): counts and names of places, never the session's content,
so an erased session answers ``session_erased`` and erasing it again returns the receipt.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ErasureReceipt(BaseModel):
    """What erasing a session removed (counts by place) and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_id: str
    erased_ts: int = Field(description="server clock, ms since epoch")
    by: str = Field(description="who asked: the session's token, an API key, the CLI")
    removed: dict[str, int] = Field(
        default_factory=dict,
        description="what was removed, by place: events (the stream's entries), "
        "feed_entries and pending (the background workers' pointers, acknowledged), "
        "changes (live readers' pointers), metrics (keys), data_key (encryption at rest), "
        "collection_grants, live_sessions (sockets closed on this replica)")
    already: bool = Field(default=False, description="erased before: this is that receipt")
    notes: tuple[str, ...] = Field(default=(), description="what erasure leaves, and why")
