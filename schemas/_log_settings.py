"""The event log's settings and its Redis client's (``VOXLINE_LOG__*``, ``VOXLINE_REDIS__*``):
sections of :class:`schemas.Settings`, apart because they are many."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["EventLogSettings", "RedisSettings"]


class RedisSettings(BaseModel):
    """The Redis client: retries with exponential backoff, timeouts, the pool."""

    model_config = ConfigDict(frozen=True)

    retries: int = Field(default=5, ge=0, description="retries of a failed command")
    backoff_base_s: float = Field(default=0.05, gt=0, description="the first retry's wait")
    backoff_cap_s: float = Field(default=2.0, gt=0, description="the longest retry wait")
    socket_timeout_s: float = Field(default=5.0, gt=0, description="one command's answer")
    health_check_interval_s: int = Field(
        default=30, ge=0, description="an idle connection is checked before use after this"
    )
    max_connections: int = Field(
        default=100, ge=2,
        description="the pool's bound; past it a command waits (socket_timeout_s) for one",
    )


class EventLogSettings(BaseModel):
    """Retention and consumer-group behaviour of the session streams."""

    model_config = ConfigDict(frozen=True)

    key_prefix: str = Field(default="voxline", description="prefix of every Redis key")
    maxlen: int | None = Field(default=100_000, ge=1, description="entries kept per session")
    approximate_trim: bool = Field(
        default=True, description="trim in steps (10% of maxlen, at most 100), not every append"
    )
    max_age_s: float | None = Field(
        default=None, gt=0, description="MINID trimming: drop entries older than this"
    )
    closed_ttl_s: int | None = Field(
        default=7 * 24 * 3600, ge=1, description="a closed session's stream expires after this"
    )
    encrypt: bool = Field(
        default=False,
        description="encryption at rest: the text, transcripts, audio, tool calls and "
        "settings of every event sealed with a data key per session (AES-GCM), wrapped by "
        "the master key; erasure destroys the key, so replicas, AOF, RDB and backups "
        "become unreadable. Off by default: a lost master key loses every log with it, and "
        "each session's first event costs a key (ids, types, times stay clear either way)",
    )
    master_key: SecretStr | None = Field(
        default=None, description="encryption at rest: base64 of 32 random bytes")
    master_key_file: str | None = Field(
        default=None, description="encryption at rest: a file holding the master key")
    retention_days: float | None = Field(
        default=None, gt=0,
        description="sessions older than this are erased (as DELETE /v1/sessions/{id} does: "
        "data key, events, pointers, grants), swept by every Gateway every "
        "retention_sweep_s; unset: kept until trimmed or expired",
    )
    retention_sweep_s: float = Field(
        default=3600.0, gt=0, description="how often a Gateway looks for sessions past "
        "retention_days")
    audit_maxlen: int = Field(
        default=1_000_000, ge=1000,
        description="entries the audit stream of session reads keeps (trimmed in steps)",
    )
    erased_ttl_s: int = Field(
        default=30 * 24 * 3600, ge=1,
        description="how long an erased session's tombstone (its receipt: counts, no "
        "content) answers session_erased and refuses appends",
    )
    claim_idle_ms: int = Field(
        default=30_000, ge=1,
        description="claim entries idle this long (a reader looks for them ten times in it)")
    max_deliveries: int = Field(default=5, ge=1, description="then the entry is dead-lettered")
    read_count: int = Field(default=500, ge=1, description="entries per read round trip")
    worker_folds: int = Field(
        default=256, ge=0,
        description="sessions a background worker (narration, re-transcription) keeps "
        "folded as of the last entry it handled, so that the next entry of a session reads "
        "only what came since instead of the whole log (0: every entry reads it all)",
    )
    worker_fold_ttl_s: float = Field(
        default=60.0, gt=0,
        description="a worker's fold of a session not used this long is dropped (what a "
        "worker holds in memory of an erased session is gone within it)",
    )
    tail_queue: int = Field(
        default=256, ge=1,
        description="events a live reader (socket, SSE) may fall behind before it is dropped",
    )
    live_read: Literal["push", "push_only", "changes"] = Field(
        default="push",
        description="push: Redis pushes each append to the live readers that follow its "
        "session (sharded Pub/Sub), which also read the changes stream twice a second for a "
        "lost push; push_only: no changes stream (once every Gateway pushes); changes: "
        "readers block on the changes stream, woken by every append of their partition",
    )
    direct_appends: bool = Field(
        default=True,
        description="appends are written straight onto one held connection per server and "
        "their replies matched as they arrive (false: every append through redis-py's "
        "client, as before); behind Sentinel they always go through redis-py",
    )
    partitions: int = Field(
        default=16, ge=1, le=16384,
        description="Redis Cluster only: sessions are spread over this many hash tags, each "
        "with its own feed (fixed for a deployment's life; standalone Redis ignores it)",
    )
    replica_acks: int = Field(
        default=0, ge=0,
        description="an append counts once this many replicas confirmed it (WAIT); 0: once "
        "the primary has it",
    )
    replica_ack_timeout_ms: int = Field(
        default=200, ge=1,
        description="how long an append waits for replica_acks; then event_log_unavailable",
    )
    outage_grace_s: float = Field(
        default=10.0, ge=0,
        description="how long an append is retried with its ids, and a live reader and "
        "a background worker wait, while Redis does not answer (a failover, a restart) "
        "before event_log_unavailable; keep it above the cluster's failover time "
        "(cluster-node-timeout + ~2 s)",
    )
