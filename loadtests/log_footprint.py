"""How much of the event log one live session makes: events and bytes per turn, per second
and per session-hour, for voice and text sessions (the figures of docs/operations.md,
"Sizing the event log").

One simulated user of the capacity runner (``loadtests/capacity.py``'s ``Run.user``: its
default 3 turns per session, 1–3 s of thinking between turns, ``max_tokens`` 40, replies
at 24 kHz PCM16) talks to the real API (``deployments.api`` on uvicorn in this process,
:func:`loadtests._gateway.serve_api`) for ``--seconds`` per kind of session:

* ``voice``: the runner's questions spoken by the server's own voice, streamed in real
  time as 20 ms frames with 0.3 s / 1.0 s of silence around them; spoken replies;
* ``text``: the same questions typed on the socket (Locust's ``TextUser``); spoken replies;
* ``text-only``: typed, ``realtime_tts`` off: replies in text, no audio.

Then the log is read back, session by session: events by type and per turn, the entries'
payload bytes, Redis's own ``MEMORY USAGE`` of each session stream, and the feed entries
the sessions wrote (each feed's memory shared out by entries). Per second and per
session-hour are what the user's sessions hold divided by the time the user ran: think
times, new sessions and the engines' own speed included.

Engines: the CPU profile's packaged models in this process (faster-whisper ``tiny.en``,
llama.cpp ``gemma-3-270m``, Piper ``joe``, Silero VAD), as ``voxline serve`` runs them.
``--smoke`` runs scripted engines for a few seconds: the code runs, the figures mean
nothing. The log is the Redis of ``VOXLINE_REDIS_URL`` (``redis+cluster://`` works: each
``MEMORY USAGE`` goes to the node holding the key), else a server of our own::

    python -m loadtests.log_footprint [--seconds 90] [--kinds voice,text,text-only]
    python -m loadtests.log_footprint --kinds voice --output-format opus   # compressed replies
    python -m loadtests.log_footprint --smoke

Writes ``reports/log_footprint.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtests._gateway import forget_keys, serve_api
from loadtests._report import add_smoke_flag, smoke_reports, write_report
from loadtests.capacity import (
    QUESTIONS,
    THINK_S,
    TURNS_PER_SESSION,
    Run,
    StepStats,
    Utterance,
    spoken_scripts,
)
from pipeline.engines import LanguageModel, Synthesizer, Transcriber
from pipeline.log import EventLog
from schemas import AudioFormat, EventLogSettings, Settings
from voxline.client import SessionInfo, VoxlineClient
from voxline.redis_server import redis_url_or_server

KINDS = ("voice", "text", "text-only")
#: the event types that carry audio, and the field holding it
AUDIO_EVENTS = ("input.audio", "response.audio.chunk")
#: how long past its window a kind of session may go on to complete its first turn
FIRST_TURN_GRACE_S = 60.0


class RecordingClient(VoxlineClient):
    """The capacity runner's client, noting every session it opens (to read them back)."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, timeout=120)
        self.sessions: list[str] = []

    async def create_session(self, **settings: Any) -> SessionInfo:
        info = await super().create_session(**settings)
        self.sessions.append(info.session_id)
        return info


@dataclass
class Footprint:
    """What one kind's sessions left in the log."""

    kind: str
    seconds: float
    sessions: list[str]
    turns_completed: int
    events: Counter[str] = field(default_factory=Counter)
    turns: set[str] = field(default_factory=set)
    payload_bytes: int = 0
    audio_bytes: Counter[str] = field(default_factory=Counter)
    audio_seconds: Counter[str] = field(default_factory=Counter)
    stream_memory: int = 0
    feed_entries: int = 0

    def figures(self) -> dict[str, Any]:
        turns = max(len(self.turns), 1)
        total = sum(self.events.values())
        hour = 3600 / self.seconds
        return {
            "seconds": round(self.seconds, 1),
            "sessions": len(self.sessions),
            "turns": len(self.turns),
            "turns_completed": self.turns_completed,
            "turn_cycle_s": round(self.seconds / turns, 2),
            "events": total,
            "events_by_type": dict(self.events.most_common()),
            "events_per_turn": round(total / turns, 1),
            "events_per_turn_by_type": {t: round(n / turns, 2)
                                        for t, n in self.events.most_common()},
            "events_per_s": round(total / self.seconds, 2),
            "payload_bytes_per_turn": round(self.payload_bytes / turns),
            "audio_share_of_payload": round(sum(self.audio_bytes.values())
                                            / max(self.payload_bytes, 1), 3),
            "audio_bytes_per_turn": {t: round(n / turns) for t, n in self.audio_bytes.items()},
            "audio_seconds_per_turn": {t: round(s / turns, 2)
                                       for t, s in self.audio_seconds.items()},
            "stream_memory_bytes_per_turn": round(self.stream_memory / turns),
            "stream_memory_bytes_per_session_hour": round(self.stream_memory * hour),
            "feed_entries_per_turn": round(self.feed_entries / turns, 2),
            "feed_entries_per_session_hour": round(self.feed_entries * hour),
            "events_per_session_hour": round(total * hour),
            "turns_per_session_hour": round(len(self.turns) * hour),
        }


async def run_kind(url: str, kind: str, seconds: float, seed: int,
                   think_s: tuple[float, float], output_format: str,
                   ) -> tuple[list[str], int, float]:
    """One simulated user for ``seconds``: (its sessions, turns completed, time it ran)."""
    client = RecordingClient(url)
    async with client:
        if kind == "voice":
            scripts = await spoken_scripts(client)
        else:
            typed = [Utterance(text=q) for q in QUESTIONS]
            scripts = [typed[i:] + typed[:i] for i in range(len(typed))]
        settings: dict[str, Any] = {"output_format": output_format}
        if kind == "text-only":
            settings["realtime_tts"] = False
        run = Run(client, scripts, seed, TURNS_PER_SESSION, think_s, settings)
        step = StepStats(1)
        start = time.monotonic()
        await run.user(step, start + seconds, seed)
        # a loaded machine may take the whole window to open the session (smoke runs last
        # a second, all at once): talk on until a turn is done, in ever longer windows
        window = seconds
        while not step.completed and time.monotonic() < start + seconds + FIRST_TURN_GRACE_S:
            window *= 2
            await run.user(step, time.monotonic() + window, seed)
        elapsed = time.monotonic() - start
        if step.failed or step.refusals:
            raise SystemExit(f"{kind}: turns failed {dict(step.failed)}, "
                             f"refused {step.refusals}")
        return client.sessions, step.completed, elapsed


async def measure(log: EventLog, kind: str, sessions: list[str], turns_completed: int,
                  seconds: float) -> Footprint:
    """Read the sessions back from the log: events, bytes, memory."""
    redis = log.redis
    found = Footprint(kind, seconds, sessions, turns_completed)
    for session in sessions:
        key = log.key(session)
        raw: Any = await redis.xrange(key)
        for _id, fields in raw:
            found.payload_bytes += sum(len(k) + len(v) for k, v in fields.items())
        for event in await log.read_all(session):
            found.events[event.type] += 1
            if event.turn_id:
                found.turns.add(event.turn_id)
            if event.type in AUDIO_EVENTS:
                data: Any = event.data
                found.audio_bytes[event.type] += len(data.audio)
                if data.format is AudioFormat.PCM16:
                    found.audio_seconds[event.type] += len(data.audio) / 2 / data.sample_rate
        found.stream_memory += int(await redis.memory_usage(key, samples=0) or 0)
    mine = set(sessions)
    for feed in log.feed_keys:
        entries: Any = await redis.xrange(feed)
        found.feed_entries += sum(1 for _id, f in entries
                                  if f.get(b"session", b"").decode() in mine)
    return found


async def feed_entry_bytes(log: EventLog, entries: int = 5000) -> float:
    """The memory of one feed entry in a long feed (a feed is capped at ``maxlen`` entries,
    so it is a full one that counts): entries like the real ones, in a scratch stream."""
    redis = log.redis
    used = [f for f in log.feed_keys if await redis.xlen(f)]
    if not used:
        return 0.0
    feed = used[0]
    first: Any = await redis.xrange(feed, count=1)
    [(_id, fields)] = first
    scratch = f"{feed}:scratch"
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(entries):
                pipe.xadd(scratch, {**fields, b"session": f"{n:032x}".encode()})
            await pipe.execute()
        return int(await redis.memory_usage(scratch, samples=0) or 0) / entries
    finally:
        await redis.delete(scratch)


@dataclass(frozen=True)
class Engines:
    stt: Transcriber
    llm: LanguageModel
    tts: Synthesizer


async def real_engines(settings: Settings) -> Engines:
    """The CPU profile's engines (the settings' defaults), loaded here."""
    from pipeline.engines import create_engine

    stt = create_engine("stt", settings.stt.engine, settings.stt.engine_options())
    llm = create_engine("llm", settings.llm.engine, settings.llm.engine_options())
    tts = create_engine("tts", settings.tts.engine, settings.tts.engine_options())
    assert isinstance(stt, Transcriber) and isinstance(llm, LanguageModel)
    assert isinstance(tts, Synthesizer)
    engines = Engines(stt=stt, llm=llm, tts=tts)
    for engine in (engines.stt, engines.llm, engines.tts):
        await engine.load()
    return engines


def scripted_engines() -> Engines:
    from loadtests._gateway import CHUNK_BYTES, SPEECH_RATE, TOKENS
    from loadtests._scripted import ScriptedLLM, ScriptedSTT, ScriptedTTS

    return Engines(stt=ScriptedSTT("What is the capital of France?"),
                   llm=ScriptedLLM(TOKENS, delay=0.001),
                   tts=ScriptedTTS(sample_rate=SPEECH_RATE, chunks_per_piece=2,
                                   chunk_bytes=CHUNK_BYTES))


async def run(redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    engines = scripted_engines() if args.smoke else await real_engines(settings)
    vad: Any = None
    if args.smoke:
        from loadtests._scripted import EnergyVAD

        vad = EnergyVAD()
    prefix = f"voxfoot:{uuid.uuid4().hex[:8]}"
    log_settings = EventLogSettings(key_prefix=prefix)
    low, high = (float(x) for x in args.think_s.split(","))
    think = (low, high)
    results: dict[str, Any] = {}
    try:
        async with serve_api(redis_url, log_settings, llm=engines.llm, tts=engines.tts,
                             stt=engines.stt, vad=vad) as harness:
            for n, kind in enumerate(args.kinds.split(",")):
                sessions, completed, elapsed = await run_kind(
                    harness.url, kind, args.seconds, args.seed + n, think, args.output_format)
                found = await measure(harness.services.log, kind, sessions, completed,
                                      elapsed)
                results[kind] = found.figures()
                print_kind(kind, results[kind])
            entry = await feed_entry_bytes(harness.services.log, 200 if args.smoke else 5000)
    finally:
        forget_keys(redis_url, prefix)
    return {
        "engines": "scripted (smoke)" if args.smoke else
                   f"{settings.stt.engine}/{settings.llm.engine}/{settings.tts.engine} "
                   "(the CPU profile's packaged models)",
        "redis": "cluster" if redis_url.startswith("redis+cluster://") else "standalone",
        "user": {"turns_per_session": TURNS_PER_SESSION, "think_s": list(think),
                 "seconds_per_kind": args.seconds, "output_format": args.output_format},
        "kinds": results,
        "feed_entry_bytes": round(entry, 1),
    }


def print_kind(kind: str, f: dict[str, Any]) -> None:
    print(f"{kind}: {f['turns']} turns in {f['sessions']} sessions over {f['seconds']} s "
          f"(a turn every {f['turn_cycle_s']} s)")
    print(f"  events: {f['events_per_turn']} per turn, {f['events_per_s']} per second; "
          f"by type per turn: {f['events_per_turn_by_type']}")
    print(f"  bytes per turn: payload {f['payload_bytes_per_turn']:,} "
          f"({f['audio_share_of_payload']:.0%} audio: {f['audio_seconds_per_turn']} s), "
          "stream memory "
          f"{f['stream_memory_bytes_per_turn']:,}; feed entries {f['feed_entries_per_turn']}")
    print(f"  per session-hour: {f['stream_memory_bytes_per_session_hour'] / 1e6:,.1f} MB of "
          f"stream, {f['events_per_session_hour']:,} events, {f['turns_per_session_hour']} "
          "turns")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0,
                        help="how long the user talks, per kind of session")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--think-s", default=",".join(f"{s:g}" for s in THINK_S),
                        help="min,max seconds between turns (the capacity runner's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output-format", default=AudioFormat.PCM16.value,
                        choices=[f.value for f in AudioFormat],
                        help="the sessions' reply audio as stored in the log")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if any(kind not in KINDS for kind in args.kinds.split(",")):
        parser.error(f"--kinds: any of {', '.join(KINDS)}")
    if args.seconds <= 0:
        parser.error("--seconds must be more than 0")
    if args.smoke:
        smoke_reports()
        args.seconds, args.think_s = 1.0, "0.1,0.2"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with redis_url_or_server(os.environ.get("VOXLINE_REDIS_URL")) as redis_url:
        figures = asyncio.run(run(redis_url, args))
    print(f"a feed entry: {figures['feed_entry_bytes']} bytes in a long feed")
    print(f"report: {write_report('log_footprint', figures)}")
    if not all(kind["turns"] for kind in figures["kinds"].values()):
        raise SystemExit("a kind of session completed no turn")


if __name__ == "__main__":
    main()
