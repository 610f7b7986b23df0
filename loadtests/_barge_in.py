"""The barge-in half of ``bench_turn_taking``: sounds over a reply, through the real app.

Each item of :mod:`loadtests._overlap_corpus` goes into a session of its own: a typed
question starts a long spoken reply, the microphone streams silence in real time, and half
a second after the reply's first audio arrived the item is streamed, in real time, then
silence until the session has had its say. Times are taken on this process's clock, from
the moment the item's first sample was sent:

* the reply **stops** (as a client would stop playing it) at the first ``response.paused``
  (``interruptions: confirmed``), ``response.cancelled``, or, with ``immediate``,
  ``input.speech_started`` (clients stop playback there);
* it **stops for good** when it is cancelled or a new turn begins (``input.audio``), and
  **resumes** at ``response.resumed``, timed from the item's last sample sent.

Scores, per configuration: **false barge-in** (a backchannel or a noise stopped the reply
for good, or paused it without a resume), the resumes' latency, **missed barge-in** (an
interruption not stopping the reply within :data:`STOP_BOUND_MS`, or resumed), and the stop
latency of the interruptions (p50/p95).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from loadtests._overlap_corpus import OverlapItem
from loadtests._report import percentiles
from loadtests._turn_corpus import RATE
from voxline.client import VoxlineClient

#: (name, session settings)
BARGE_CONFIGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("immediate", {"interruptions": "immediate"}),
    ("confirmed", {"interruptions": "confirmed"}),
)
PROMPT = "Tell me a long story about a lighthouse keeper and his cat."
SAMPLING = {"max_tokens": 120, "temperature": 0.0, "seed": 1}
#: the sound starts this long after the reply's first audio arrived
INTO_REPLY_S = 0.5
#: the bounds the issue sets: an interruption stops the reply within this, and a
#: backchannel's reply resumes within RESUME_BOUND_MS of its end
STOP_BOUND_MS = 300
RESUME_BOUND_MS = 500
#: silence streamed after the sound (room for the end of turn and a transcription)
AFTER_S = 3.0
FRAME_MS = 32
SETTLE_S = 15.0
ITEM_TIMEOUT_S = 90.0


@dataclass
class Outcome:
    item: OverlapItem
    stop_ms: float | None = None
    resume_ms: float | None = None
    stopped_for_good: bool = False
    paused: bool = False
    #: the reply was written in full before the sound came (its audio was still playing)
    written_before: bool = False
    errors: list[str] = field(default_factory=list)


async def run_overlap(client: VoxlineClient, item: OverlapItem, settings: dict[str, Any]
                      ) -> Outcome:
    """One item over one reply (see the module docstring)."""
    session = await client.create_session(
        input_sample_rate=RATE, language=item.language or "en", sampling=SAMPLING, **settings)
    out = Outcome(item)
    immediate = settings.get("interruptions", "immediate") == "immediate"
    first_audio, idle = asyncio.Event(), asyncio.Event()
    refused: list[float] = []  # retry hints of a prompt refused as overloaded
    marks: dict[str, float] = {}
    running: set[str] = set()  # turns whose reply runs
    async with client.connect(session) as conn:
        reply: list[str] = []  # the first turn's id, once known

        def stop(now: float) -> None:
            if "onset" in marks and out.stop_ms is None:
                out.stop_ms = (now - marks["onset"]) * 1000

        async def receive() -> None:
            async for event in conn.events():
                now, kind, mine = time.perf_counter(), event.type, event.turn_id in reply
                # the reply ended for good: cancelled, or a new turn began
                ended = (kind == "response.cancelled" and mine) or (
                    kind == "input.audio" and not mine)
                if kind == "response.started":
                    running.add(event.turn_id or "")
                    reply[:] = reply or [event.turn_id or ""]
                elif kind in ("response.done", "response.cancelled"):
                    running.discard(event.turn_id or "")
                    if not running and "end" in marks:
                        idle.set()
                if kind == "response.audio.chunk" and mine:
                    first_audio.set()
                elif kind == "response.done" and mine and "onset" not in marks:
                    out.written_before = True
                elif kind == "response.paused":
                    out.paused = True
                    stop(now)
                elif kind == "input.speech_started" and immediate:
                    stop(now)
                elif ended:
                    out.stopped_for_good = True
                    stop(now)
                elif kind == "response.resumed" and "end" in marks:
                    out.resume_ms = (now - marks["end"]) * 1000
                elif kind == "error":
                    data: Any = event.data
                    out.errors.append(str(data.code))
                    if data.code == "overloaded" and not reply:  # the last item's reply
                        refused.append(data.details.get("retry_after_ms", 500) / 1000)

        async def silence(seconds: float) -> None:
            frame = bytes(RATE * 2 * FRAME_MS // 1000)
            for _ in range(int(seconds * 1000 / FRAME_MS)):
                await conn.send_audio(frame)
                await asyncio.sleep(FRAME_MS / 1000)

        async def send() -> None:
            await conn.send_text(PROMPT)
            while not first_audio.is_set():
                if refused and not reply:  # the server still finishes another reply
                    await asyncio.sleep(refused.pop())
                    await conn.send_text(PROMPT)
                if receiver.done():  # the socket ended (or the reader failed): say why
                    receiver.result()
                    raise RuntimeError(f"{item.id}: the session ended before the reply's "
                                       f"audio (errors: {out.errors})")
                await silence(FRAME_MS / 1000)
            await silence(INTO_REPLY_S)
            step = RATE * 2 * FRAME_MS // 1000
            marks["onset"] = time.perf_counter()
            for offset in range(0, len(item.pcm16), step):
                await conn.send_audio(item.pcm16[offset : offset + step])
                await asyncio.sleep(FRAME_MS / 1000)
            marks["end"] = time.perf_counter()
            await silence(AFTER_S)
            # leave the server idle for the next item: whatever reply runs is cancelled
            if running:
                await conn.cancel()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(idle.wait(), SETTLE_S)

        receiver = asyncio.create_task(receive())
        try:
            await asyncio.wait_for(send(), ITEM_TIMEOUT_S)
        finally:
            receiver.cancel()
    return out


def session_language(item: OverlapItem) -> str:
    """The language of the session an item is played into (a noise's: English)."""
    return item.language or "en"


def score_overlaps(outcomes: list[Outcome]) -> dict[str, Any]:
    """False and missed barge-ins, resume and stop latencies of one configuration: in
    all, and per session language (the issue's goals are on the English items; German
    backchannels are judged by the multilingual model, the slower one)."""
    languages = sorted({session_language(o.item) for o in outcomes})
    return {**_scores(outcomes), "by_language": {
        lang: _scores([o for o in outcomes if session_language(o.item) == lang])
        for lang in languages}}


def _scores(outcomes: list[Outcome]) -> dict[str, Any]:
    keep = [o for o in outcomes if not o.item.should_stop]
    stop = [o for o in outcomes if o.item.should_stop]
    false_ones = [o for o in keep if o.stopped_for_good or (o.paused and o.resume_ms is None)]
    false = [o.item.id for o in false_ones]
    resumes = [o.resume_ms for o in keep if o.resume_ms is not None]
    missed = [o.item.id for o in stop
              if o.stop_ms is None or o.stop_ms > STOP_BOUND_MS or o.resume_ms is not None]
    stops = [o.stop_ms for o in stop if o.stop_ms is not None]
    by_kind: dict[str, list[bool]] = {}
    for o in keep:
        by_kind.setdefault(o.item.kind, []).append(o in false_ones)
    return {
        "items": len(outcomes),
        "false_barge_in_rate": round(len(false) / len(keep), 4) if keep else None,
        "false_barge_in_by_kind": {k: round(sum(v) / len(v), 4) for k, v in by_kind.items()},
        "resumed": len(resumes),
        "resume_ms": {k: round(v, 1) for k, v in percentiles(resumes).items()},
        "resumed_within_bound": sum(r <= RESUME_BOUND_MS for r in resumes),
        "slow_resumes": {o.item.id: round(o.resume_ms) for o in keep
                         if o.resume_ms is not None and o.resume_ms > RESUME_BOUND_MS},
        "missed_barge_in_rate": round(len(missed) / len(stop), 4) if stop else None,
        "stop_ms": {k: round(v, 1) for k, v in percentiles(stops).items()},
        "written_before_sound": sum(o.written_before for o in outcomes),
        "false_items": false[:20],
        "missed_items": missed[:20],
        "server_errors": {o.item.id: o.errors for o in outcomes if o.errors},
    }


async def bench_overlaps(url: str, items: list[OverlapItem], say: Any,
                         configs: tuple[tuple[str, dict[str, Any]], ...] = BARGE_CONFIGS,
                         ) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with VoxlineClient(url) as client:
        for name, settings in configs:
            started = time.perf_counter()
            outcomes = [await run_overlap(client, item, settings) for item in items]
            row = figures[name] = {"settings": settings, **score_overlaps(outcomes),
                                   "wall_s": round(time.perf_counter() - started, 1)}
            for label, part in (("all", row), *row["by_language"].items()):
                say(f"barge-in {name:>9} {label:>3}: false barge-in "
                    f"{_rate(part['false_barge_in_rate'])}, resumed {part['resumed']} "
                    f"({part['resumed_within_bound']} within {RESUME_BOUND_MS} ms, p95 "
                    f"{_ms(part['resume_ms'].get('p95'))}), missed "
                    f"{_rate(part['missed_barge_in_rate'])}, stop p50 "
                    f"{_ms(part['stop_ms'].get('p50'))} / p95 {_ms(part['stop_ms'].get('p95'))}")
    return figures


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.0f} ms"  # NaN: none
