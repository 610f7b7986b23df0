"""A metrics endpoint fed with turns of every kind, in a process of its own (the Prometheus
reader registers once per process): ``python -m tests.support.metrics_feeder PORT``.

Every half second, until killed or for at most ``ROUNDS`` rounds, it records a round
through :class:`pipeline.workers.TurnMetrics`, the code the Metrics deployment runs: a
voice turn (every stage, the first audio's parts with a preemptive head start), a typed
turn, a failed one, a cancelled one, an error, a discarded speculation, a session made
and closed. So every series a dashboard query or alert rule reads has values that grow.
"""

from __future__ import annotations

import random
import sys
import time

from pipeline.workers import STAGES, TurnMeasure, TurnMetrics, prometheus_endpoint

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


def main(port: int) -> None:
    metrics = TurnMetrics(prometheus_endpoint(port=port))
    rng = random.Random(port)
    for n in range(ROUNDS):
        metrics.record_session("created")
        metrics.record_turn(_turn(n, rng))
        metrics.record_turn(_turn(n, rng, source="text", mode="sequential"))
        metrics.record_turn(_turn(n, rng, status="failed"))
        metrics.record_turn(_turn(n, rng, status="cancelled", cancel_reason="barge_in"))
        metrics.record_error("overloaded")
        metrics.record_discarded_speculation("speech_resumed")
        metrics.record_session("closed")
        time.sleep(0.5)


if __name__ == "__main__":
    main(int(sys.argv[1]))
