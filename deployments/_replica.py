"""A name for this replica that is unique in the cluster and says what it is."""

from __future__ import annotations

import uuid

from ray import serve


def replica_name(kind: str) -> str:
    """``<kind>-<Serve's replica id>`` (outside a replica, in tests: a random suffix)."""
    try:
        return f"{kind}-{serve.get_replica_context().replica_id.unique_id}"
    except Exception:
        return f"{kind}-{uuid.uuid4().hex[:8]}"
