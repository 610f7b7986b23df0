"""The capacity runner's call phase: what a connected WebRTC call costs while nobody speaks.

An idle call is a hands-free session whose audio is Opus both ways: the caller's
microphone sends 20 ms frames (silence, which a browser's Opus still encodes and the
Gateway decodes) and the reply's track sends its frames back, while no reply plays one
every 400 ms, as Opus DTX does (:class:`pipeline.webrtc.ReplyTrack`; before 2026-11-28,
fifty a second, each encoded at the Gateway). ``calls`` such callers
(:class:`loadtests._webrtc_call.WebRtcCaller`, aiortc peers in the runner, calling
``POST /v1/realtime/calls`` on loopback) are held for ``seconds``, measured as the idle
sessions are (:func:`loadtests._capacity_idle.idle_figures`: each group's CPU less its
CPU with none connected, per call). Next to the idle sessions' figure, the difference is
the media path's own cost (Opus decode and encode, the jitter buffer, RTP, SRTP and
the 48 kHz audio the VAD resamples): ``media_cpu_percent_per_call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx

from loadtests._capacity_idle import (
    CONNECT_TIMEOUT_S,
    IdleCounts,
    Place,
    idle_figures,
    measure_crowd,
)
from loadtests._capacity_probe import ReplicaProbe
from loadtests._webrtc_call import WebRtcCaller
from voxline.client import VoxlineAPIError

#: at most this many idle calls (each is an aiortc peer in the runner: Opus both ways)
MAX_IDLE_CALLS = 64


async def _hold(url: str, gate: asyncio.Semaphore, stop: asyncio.Event,
                counts: IdleCounts) -> None:
    """One call: dial (``gate`` bounds the calls being set up), then hold it until ``stop``."""
    caller = WebRtcCaller()
    try:
        async with Place(gate, stop, counts) as place:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                answer = await caller.call(url)
                if answer.status_code != 201:  # counted by its code, as a socket's
                    raise VoxlineAPIError(answer.status_code, _code(answer), answer.text)
                await caller.until("session.created", CONNECT_TIMEOUT_S)
            place.connected()
            await stop.wait()
            counts.events.update(e["type"] for e in caller.events
                                 if e["type"] != "session.created")
    finally:
        with contextlib.suppress(Exception):
            await caller.close()


def _code(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return str(answer.status_code)


async def calls_phase(url: str, probe: ReplicaProbe, calls: int, seconds: float, *,
                      baseline_s: float,
                      idle_sessions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hold ``calls`` idle WebRTC calls; the section of the report. With the idle
    sessions' section, each group's CPU per call less its CPU per idle session is the
    media path's (``media_cpu_percent_per_call``)."""
    if not 1 <= calls <= MAX_IDLE_CALLS:
        raise SystemExit(f"--idle-calls must be 1..{MAX_IDLE_CALLS}")

    async def hold(gate: asyncio.Semaphore, stop: asyncio.Event, counts: IdleCounts) -> None:
        await _hold(url, gate, stop, counts)

    crowd = await measure_crowd(probe, calls, seconds=seconds, baseline_s=baseline_s,
                                hold=hold)
    figures = idle_figures(crowd.connected, crowd.baseline, crowd.window)
    per_call = figures.pop("cpu_percent_per_idle_session")
    figures.pop("cpu_per_idle_session")
    per_session = (idle_sessions or {}).get("cpu_percent_per_idle_session")
    media = None
    if per_call is not None and per_session:
        media = {g: round(v - per_session.get(g, 0.0), 4) for g, v in per_call.items()}
    return {
        "calls": calls,
        "connected": crowd.connected,
        "failed_by_code": dict(crowd.counts.failed),
        "t_window_start": round(crowd.window[0].t, 1),
        "t_end": round(crowd.window[1].t, 1),
        "events_received": dict(crowd.counts.events),  # none: silence makes no turn
        "cpu_percent_per_idle_call": per_call,
        "media_cpu_percent_per_call": media,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        **figures,
    }
