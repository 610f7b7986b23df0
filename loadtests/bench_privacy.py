"""What privacy costs: encryption at rest per event, redaction per turn, erasure per session.

Prints a table and writes ``reports/bench_privacy_<label>.json``:

* **append** (a Redis of its own): the same events (a reply's text deltas, sentences and
  audio chunks in the proportions of a spoken turn) appended one at a time, encryption
  off and on, alternating in rounds so both see the same machine: this process's CPU per
  event (``time.process_time``) and the wall time. Goal: on ≤ off × 1.10;
* **typed turn** (the API on scripted engines, the same Redis): ``input.text`` → first
  audio chunk, from the log's timestamps, off and on, alternating. Goal: on p50 ≤ off p50
  + 5 ms. (Scripted engines: what differs is the log, which is what encryption touches;
  the voice path adds STT and VAD on both sides alike);
* **redaction** per turn: every sentence of the turn corpus and the answer sheet, and
  numbers read aloud, through :func:`pipeline.privacy.redact` (µs per call);
* **erasure** of a session of ``--turns`` spoken-size turns on a 3-primary Redis Cluster
  with replicas of its own: the time ``erase_session`` takes. Goal ≤ 1 s for 1,000 turns.

    python -m loadtests.bench_privacy [--events 3000] [--turns 1000] [--label run] [--smoke]

``--smoke`` runs each part on tiny sizes (its figures mean little).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import time
from typing import Any

from loadtests._report import add_smoke_flag, percentiles, smoke_reports, write_report

#: one spoken turn's events, in proportion: deltas, sentences, audio chunks (9.6 kB each)
TURN_SHAPE = (("delta", 30), ("sentence", 4), ("audio", 12))


def turn_events(session_id: str, turn: int) -> list[Any]:
    from schemas import (
        AudioChunkData,
        ResponseAudioChunk,
        ResponseSentence,
        ResponseTextDelta,
        SentenceData,
        TextDeltaData,
    )

    made: list[Any] = []
    turn_id = f"t{turn}"
    for kind, count in TURN_SHAPE:
        for n in range(count):
            if kind == "delta":
                made.append(ResponseTextDelta(session_id=session_id, turn_id=turn_id,
                                              data=TextDeltaData(delta=f"word{n} ")))
            elif kind == "sentence":
                made.append(ResponseSentence(session_id=session_id, turn_id=turn_id,
                                             data=SentenceData(index=n, text="A sentence.")))
            else:
                made.append(ResponseAudioChunk(session_id=session_id, turn_id=turn_id,
                                               data=AudioChunkData(
                                                   sample_rate=24000, audio=b"\x01\x02" * 4800,
                                                   sentence_index=0, chunk_index=n)))
    return made


def log_settings(prefix: str, encrypt: bool) -> Any:
    from pydantic import SecretStr

    from schemas import EventLogSettings

    master = SecretStr(base64.b64encode(os.urandom(32)).decode()) if encrypt else None
    return EventLogSettings(key_prefix=prefix, encrypt=encrypt, master_key=master)


async def append_cost(url: str, events: int, rounds: int) -> dict[str, Any]:
    from pipeline.log import EventLog, create_redis

    redis = create_redis(url)
    cpu: dict[bool, list[float]] = {False: [], True: []}
    wall: dict[bool, list[float]] = {False: [], True: []}
    try:
        for n in range(rounds + 1):  # round 0 warms up (scripts loaded, keys made): not kept
            for encrypt in (False, True) if n % 2 == 0 else (True, False):
                log = EventLog(redis, log_settings(f"bench-privacy:{n}:{encrypt}", encrypt))
                batch = [e for turn in range(events // 46 + 1)
                         for e in turn_events(f"sess_{n}_{encrypt}", turn)][:events]
                started_cpu, started = time.process_time(), time.perf_counter()
                for event in batch:
                    await log.append(event)
                if n:
                    cpu[encrypt].append((time.process_time() - started_cpu) / len(batch) * 1e6)
                    wall[encrypt].append((time.perf_counter() - started) / len(batch) * 1e6)
    finally:
        keys = [key async for key in redis.scan_iter(match="bench-privacy:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
    off, on = statistics.median(cpu[False]), statistics.median(cpu[True])
    return {"events_per_round": events, "rounds": rounds,
            "cpu_us_per_event": {"off": round(off, 1), "on": round(on, 1)},
            "wall_us_per_event": {"off": round(statistics.median(wall[False]), 1),
                                  "on": round(statistics.median(wall[True]), 1)},
            "on_over_off": round(on / off, 3)}


async def typed_turns(url: str, turns: int) -> dict[str, Any]:
    from loadtests._gateway import serve_api
    from loadtests._scripted import ScriptedLLM, ScriptedTTS

    ttfa: dict[bool, list[float]] = {False: [], True: []}
    for encrypt in (False, True):
        settings = log_settings(f"bench-privacy-api:{encrypt}", encrypt)
        llm = ScriptedLLM(["One. ", "Two three four five six seven. ", "Eight."])
        async with serve_api(url, settings, llm=llm, tts=ScriptedTTS()) as harness:
            for _ in range(turns):
                session = await harness.client.create_session()
                async with harness.client.connect(session) as conn:
                    await conn.send_text("Hello there.")
                    events = [e async for e in conn.until_done()]
                said = next(e.ts for e in events if e.type == "input.text")
                heard = next(e.ts for e in events if e.type == "response.audio.chunk")
                ttfa[encrypt].append(float(heard - said))
    return {"turns": turns, "ttfa_ms": {
        "off": percentiles(ttfa[False]), "on": percentiles(ttfa[True])}}


def redaction_cost(repeats: int) -> dict[str, Any]:
    from loadtests._turn_corpus import CORPUS
    from loadtests.bench_answers import load_sheet
    from pipeline.privacy import ENTITIES, redact

    texts = [line.text for line in CORPUS] + [item["q"] for item in load_sheet()] + [
        "my card is four one one one one one one one one one one one one one one one",
        "call me on four one five five five five zero one three two"]
    started = time.perf_counter()
    for _ in range(repeats):
        for text in texts:
            redact(text, ENTITIES)
    per_call = (time.perf_counter() - started) / (repeats * len(texts)) * 1e6
    return {"texts": len(texts), "us_per_turn": round(per_call, 1)}


async def erasure_time(turns: int) -> dict[str, Any]:
    from pipeline.log import EventLog, create_redis
    from pipeline.session import erase_session
    from voxline.redis_cluster import redis_cluster

    with redis_cluster() as cluster:
        redis = create_redis(cluster.url)
        try:
            log = EventLog(redis, log_settings("bench-privacy-erase", False))
            for turn in range(turns):
                await log.append_batch(turn_events("sess_erase", turn))
            events = await redis.xlen(log.keys.session("sess_erase"))
            started = time.perf_counter()
            receipt = await erase_session(log, "sess_erase", by="bench")
            seconds = time.perf_counter() - started
        finally:
            await redis.aclose()
    return {"turns": turns, "events": int(events), "erase_s": round(seconds, 3),
            "removed": receipt.removed}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from voxline.redis_server import redis_url_or_server

    figures: dict[str, Any] = {}
    with redis_url_or_server(None) as url:  # a server of its own: nothing of a user's
        figures["append"] = await append_cost(url, args.events, args.rounds)
        figures["typed_turn"] = await typed_turns(url, args.typed)
    figures["redaction"] = redaction_cost(args.repeats)
    figures["erasure"] = await erasure_time(args.turns)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000, help="events appended a round")
    parser.add_argument("--rounds", type=int, default=8, help="rounds, off and on each")
    parser.add_argument("--typed", type=int, default=20, help="typed turns, off and on each")
    parser.add_argument("--repeats", type=int, default=200, help="redaction passes")
    parser.add_argument("--turns", type=int, default=1000, help="turns of the erased session")
    parser.add_argument("--label", default="run")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.events, args.rounds, args.typed, args.repeats, args.turns = 200, 2, 2, 2, 20
        args.label = "smoke"
    figures = asyncio.run(bench(args))
    append, typed = figures["append"], figures["typed_turn"]["ttfa_ms"]
    print(f"append, CPU per event (µs): off {append['cpu_us_per_event']['off']}, "
          f"on {append['cpu_us_per_event']['on']} (×{append['on_over_off']}; goal ≤ 1.10)")
    print(f"typed turn, input → first audio p50 (ms): off {typed['off']['p50']:.0f}, "
          f"on {typed['on']['p50']:.0f} (goal ≤ off + 5)")
    print(f"redaction: {figures['redaction']['us_per_turn']} µs a turn")
    erasure = figures["erasure"]
    print(f"erasure of {erasure['turns']} turns ({erasure['events']} events) on a 3-shard "
          f"cluster: {erasure['erase_s']} s (goal ≤ 1 s for 1,000)")
    print(f"wrote {write_report(f'bench_privacy_{args.label}', figures)}")


if __name__ == "__main__":
    main()
