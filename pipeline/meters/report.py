"""A replica's report: its own counts, as one message that travels through Redis."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pipeline.meters.histogram import HistogramData

__all__ = ["AdmissionCounts", "ReplicaReport", "StageCounts"]


class AdmissionCounts(BaseModel):
    in_use: int = Field(ge=0)
    limit: int | None = None
    #: work queued for a place (voice turns: AdmissionSettings.voice_turn_wait_ms)
    waiting: int = Field(default=0, ge=0)
    refused: int = Field(default=0, ge=0)


class StageCounts(BaseModel):
    in_flight: int = Field(default=0, ge=0)
    calls: int = Field(default=0, ge=0)
    refused: int = Field(default=0, ge=0)


class ReplicaReport(BaseModel):
    """One Gateway replica's counts at ``at_ms``; counters count since the replica
    started (Prometheus sees a restart as a reset)."""

    replica: str
    at_ms: int
    draining: bool = False
    admission: dict[str, AdmissionCounts] = Field(default_factory=dict)
    stages: dict[str, StageCounts] = Field(default_factory=dict)
    log_append_ms: HistogramData
    tail_lag_ms: HistogramData
    #: live readers (sockets, streams) and the sessions they read
    tail_readers: int = 0
    tail_sessions: int = 0
