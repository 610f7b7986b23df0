"""A metrics endpoint fed with turns of every kind and a Gateway replica's own counts, in
a process of its own (the Prometheus reader registers once per process):
``python -m tests.support.metrics_feeder PORT REDIS_URL KEY_PREFIX``.

Every half second, until killed or for at most ``ROUNDS`` rounds, it records a round
through :class:`pipeline.workers.TurnMetrics`, the code the Metrics deployment runs: a
voice turn (every stage, the first audio's parts with a preemptive head start), a typed
turn, a failed one, a cancelled one, an error, a discarded speculation, a session made
and closed. Beside them, the way a Gateway replica and the Metrics deployment do it
through Redis: a replica's meters (admission, stage calls and a refusal, real appends to
the log under ``KEY_PREFIX``, a reader's lag) published on the board, and read back with
the feeds' consumer groups into the endpoint's collector. So every series a dashboard
query or alert rule reads has values that grow.
"""

from __future__ import annotations

import asyncio
import random
import sys

from pipeline.log import EventLog, FeedReader, create_redis
from pipeline.meters import GatewayMeters, ReplicaBoard, ReplicaCollector
from pipeline.workers import (
    STAGES,
    ReplicaMetrics,
    TurnMeasure,
    TurnMetrics,
    prometheus_endpoint,
)
from schemas import EventLogSettings, SessionCreated, SessionSettings

#: at most this many rounds (a minute): the test stops it long before
ROUNDS = 120

_PARTS = ("stt", "handoff", "llm_first_token", "first_piece", "tts_first_chunk")


def _turn(n: int, rng: random.Random, **fields: object) -> TurnMeasure:
    parts = {p: rng.uniform(20, 300) for p in _PARTS}
    ttfa = sum(parts.values())
    stages = {stage: rng.uniform(50, 400) for stage in STAGES}
    stages["time_to_first_audio"] = ttfa
    stages["voice_to_voice"] = stages["vad_tail"] + ttfa
    base: dict[str, object] = {
        "session_id": f"sess_{n}", "turn_id": f"turn_{n}", "source": "audio",
        "mode": "streaming", "status": "completed", "stages": stages,
        "parts": {**parts, "preemptive_head_start": rng.uniform(100, 400)},
    }
    return TurnMeasure(**{**base, **fields})  # type: ignore[arg-type]


async def main(port: int, redis_url: str, prefix: str) -> None:
    metrics = TurnMetrics(prometheus_endpoint(port=port))
    rng = random.Random(port)
    redis = create_redis(redis_url)
    meters = GatewayMeters("gateway-feeder")
    log = EventLog(redis, EventLogSettings(key_prefix=prefix), on_append=meters.append_timed)
    # a narration group that never reads: the feed's entries stay behind it
    await FeedReader(redis, log.feed_keys, "narration", "feeder").ensure_group("0")
    board = ReplicaBoard.for_interval(redis, prefix, 0.5)
    replicas = ReplicaMetrics(log, ReplicaCollector().register(), board)
    admission = {"sessions": {"in_use": 3, "limit": 8, "refused": 0},
                 "turns": {"in_use": 1, "limit": 2, "refused": 0}}
    for n in range(ROUNDS):
        metrics.record_session("created")
        metrics.record_turn(_turn(n, rng))
        metrics.record_turn(_turn(n, rng, source="text", mode="sequential"))
        metrics.record_turn(_turn(n, rng, status="failed"))
        metrics.record_turn(_turn(n, rng, status="cancelled", cancel_reason="barge_in"))
        metrics.record_error("overloaded")
        metrics.record_discarded_speculation("speech_resumed")
        metrics.record_session("closed")
        event = await log.append(SessionCreated(session_id=f"sess_{n}",
                                                data={"settings": SessionSettings()}))
        meters.delivered(event.ts)
        for stage in ("stt", "llm", "tts"):
            with meters.stages.call(stage):
                pass
        meters.stages.refused("llm")
        admission["turns"]["refused"] += 1
        await board.publish(meters.report(admission, readers=2, sessions=1))
        await replicas.refresh()
        await asyncio.sleep(0.5)
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
