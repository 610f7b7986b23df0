"""The event log on a Redis Cluster: events/s and append-to-delivery p99 by shards and Gateways.

Starts its own Redis Clusters on loopback (1, 2 and 3 primaries, ``--replicas`` each) and,
on each, ramps a load step by step until a step fails, where a step passes when its
append-to-delivery p99 is at most ``--p99-ms`` (50) and it delivered what was offered:

* **log** (no HTTP): writer processes append text deltas through ``EventLog`` at a set
  rate, reader processes tail every session through ``LogFanout`` (the Gateway's shared
  reader); what the log itself sustains.
* **gateway** (end to end), with 1 and 2 Gateway replicas: the real API on uvicorn
  (``loadtests/_gateway.py``, child processes sharing one log) on scripted engines with a
  chat model's service times (``--first-token-ms`` 200, ``--token-ms`` 25: 40 tokens/s,
  ``--tokens`` 40; text replies, or spoken with ``--speech``), sessions with their
  WebSocket open, text turns offered at a rising rate; each frame timed from its append
  (its stream id's millisecond) to its arrival at the client.
* **live sessions** (on the largest cluster, 2 Gateways): sockets held in steps
  (``--live-steps``, up to 5,000), each session typing one turn a minute; the most held
  at the p99 bound.
* **WAIT 1**: ``loadtests/bench_replica_acks.py``'s measure, on the same cluster.

Append-to-delivery is timed from the event's stream id, whose millisecond is stamped just
before the append is sent (so it includes the append's own round trip; the id is floored
to the millisecond, so figures read up to 1 ms high), to the moment the client (or the
log phase's tail) has it, on the same clock.

Each step records the CPU of every group of processes (Redis primaries and replicas,
Gateways, log writers/readers, this load generator, and what else the machine ran), so
each limit says which resource ran out. On a small machine the Python processes run out
long before Redis does, so each ramp also projects the events/s at which its busiest
primary would fill its core (a projection, labelled so), and the report gives the bound
the partition layout puts on the shard ratio (the busiest shard's share of the hash
tags). Goals: ≥ 2.5× events/s from 1 to 3 shards; ``WAIT 1`` ≤ 2 ms p50 per append;
≥ 5,000 live text sessions on 2 Gateways.

Writes ``reports/bench_log_scale.json`` and ``reports/bench_log_scale.png``::

    python -m loadtests.bench_log_scale [--shards 1,2,3] [--gateways 1,2] [--replicas 1]
        [--partitions 16] [--phases log,gateway,live,acks] [--step-s 5] [--max-steps 9]
        [--budget-s 900] [--log-rate 500] [--turn-rate 8] [--speech]
        [--live-steps 500,1000,2000,3000,4000,5000] [--smoke]

Loopback only; every server it talks to is one it started; bounded in steps, sessions and
time (``--budget-s``: a phase that would start past it is skipped and says so). The
defaults take about twelve minutes on an idle 2-core machine (each ramp ends at its limit
within 9 steps there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from loadtests._log_scale_direct import SESSIONS_PER_WRITER, LogAgents, session_ids
from loadtests._log_scale_direct import Window as LogWindow
from loadtests._log_scale_plot import plot, series
from loadtests._log_scale_ramp import Step, confirmed, cpu_over, outcome, ramp, rounded
from loadtests._open_files import raise_file_limit
from loadtests._process_cpu import CpuMeter, CpuWindow
from loadtests._report import add_smoke_flag, percentiles, reports_dir, smoke_reports, write_report
from pipeline.log.keys import LogKeys
from schemas import ConfigurationError, EventLogSettings
from voxline.redis_cluster import SLOTS, RedisClusterServers, start_redis_cluster

if TYPE_CHECKING:
    from loadtests._gateway import Pacing
    from loadtests._log_scale_sockets import SocketLoad

# The Gateway phases import the whole API (WebRTC's PyAV, Twilio, OpenTelemetry...) where
# they run: the log phase needs only the log, so it runs on a machine that holds only the
# log's dependencies (a lent 16-core machine with no registry: docs/operations.md).

PHASES = ("log", "gateway", "live", "acks")
#: other processes this busy (percent of one core) in a step make the figures indicative
NOISE_PCT = 25.0
#: what a step must deliver of what it offered
DELIVERED_SHARE = 0.95
#: how long after a step its turns may take to end (a reply is ~1.2 s)
GATEWAY_GRACE_S = 2.5


def cluster_groups(cluster: RedisClusterServers) -> dict[str, list[int]]:
    return {"redis primaries": [n.process.pid for n in cluster.primaries],
            "redis replicas": [n.process.pid for n in cluster.replicas]}


def layout(primaries: int, partitions: int, sessions: list[str] | None = None,
           ) -> dict[str, Any]:
    """How the log's partitions (hash tags) and a load's sessions fall on ``primaries``
    primaries holding even slot ranges (as :mod:`voxline.redis_cluster` forms them): the
    shard with the most carries the most, and bounds what adding shards can give."""
    from redis.crc import key_slot

    keys = LogKeys("", partitions)

    def shard(partition: int) -> int:
        slot = key_slot(keys.tag(partition).encode())
        return next(i for i in range(primaries) if slot < (i + 1) * SLOTS // primaries)

    by_partition = [shard(p) for p in range(partitions)]
    found: dict[str, Any] = {"partitions": [by_partition.count(i) for i in range(primaries)]}
    if sessions:
        per_session = [by_partition[keys.partition(s)] for s in sessions]
        found["sessions"] = [per_session.count(i) for i in range(primaries)]
    return found


# ---- the phases --------------------------------------------------------------------------


async def log_phase(cluster: RedisClusterServers, args: argparse.Namespace,
                    deadline: float) -> dict[str, Any]:
    """Writers and readers on the log alone, the rate rising until a step fails."""
    with LogAgents(cluster.url, writers=args.log_writers, readers=args.log_readers,
                   partitions=args.partitions, sessions_per_writer=args.log_sessions) as agents:
        groups = {**cluster_groups(cluster), **agents.pids, "load generator": [os.getpid()]}
        meter = CpuMeter(groups)

        async def measure(rate: float) -> Step:
            window = agents.window(rate, args.step_s, args.warm_s)
            answers, cpu = await asyncio.gather(
                asyncio.to_thread(agents.measure, window),
                cpu_over(meter, window.start, window.end))
            return _log_step(rate, window, answers, cpu, args.p99_ms)

        result = await ramp(args.log_rate, args.factor, args.max_steps, deadline, measure)
    sessions = [s for w in range(args.log_writers) for s in session_ids(w, args.log_sessions)]
    result["layout"] = layout(len(cluster.primaries), args.partitions, sessions)
    result["writers"], result["readers"] = args.log_writers, args.log_readers
    return result


def _log_step(rate: float, window: LogWindow, answers: dict[str, list[dict[str, Any]]],
              cpu: CpuWindow, p99_ms: float) -> Step:
    span = window.end - window.start
    latencies = [v for answer in answers["reader"] for v in answer["latencies"]]
    writers = answers["writer"]
    behind = sum(w["behind"] for w in writers)
    failed = sum(w["failed"] for w in writers)
    latency = percentiles(latencies)
    figures = {
        "offered": round(rate, 1),
        "events_per_s": round(len(latencies) / span, 1),
        "latency_ms": rounded(latency),
        "appended": sum(w["appended"] for w in writers),
        "append_ms": [rounded(w["append_ms"]) for w in writers],
        "behind": behind,
        "failed": failed,
        "writer_loop_late_ms": [rounded(w["loop_late_ms"]) for w in writers],  # a CPU waited for
        # what one Redis round trip carried: appends per pipeline sent, live reads per
        # event delivered (fewer round trips per event is most of the clients' CPU)
        "appends_per_round_trip": _ratio(sum(w["appended"] for w in writers),
                                         sum(w.get("round_trips", 0) for w in writers)),
        **{f"live_{name}_per_event": _ratio(sum(a.get(name, 0) for a in answers["reader"]),
                                            len(latencies)) for name in ("reads", "pushes")},
        "cpu": cpu.as_dict(),
    }
    why = []
    if not latency["p99"] <= p99_ms:
        why.append(f"p99 {latency['p99']:.1f} ms > {p99_ms:g} ms")
    if len(latencies) < DELIVERED_SHARE * rate * span:
        why.append(f"delivered {len(latencies) / span:.0f}/s of {rate:.0f}/s offered")
    if behind:
        late = max(w["loop_late_ms"]["max"] for w in writers)  # ~50 ms: every session busy
        why.append(f"writers could not offer {behind} appends (every session busy; a loop "
                   f"woke {late:.0f} ms late)")
    if failed:
        why.append(f"{failed} appends failed")
    errors = [a["error"] for a in answers["reader"] if a["error"] or a["tails_ended"]]
    if errors:
        why.append(f"tails ended: {errors[0]}")
    return Step(figures, not why, why)


def _pacing(args: argparse.Namespace) -> Pacing:
    from loadtests._gateway import Pacing

    return Pacing(tokens=args.tokens, first_token_ms=args.first_token_ms,
                  token_ms=args.token_ms, tts_chunk_ms=args.tts_chunk_ms)


@contextlib.contextmanager
def gateways_on(cluster: RedisClusterServers, count: int, args: argparse.Namespace,
                max_sessions: int) -> Any:
    """``count`` Gateway replicas (child processes) on one log: [(url, pid)]."""
    from loadtests._gateway import child_gateway

    prefix = f"voxbench:{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(child_gateway(
            cluster.url, max_turns=args.max_turns, max_sessions=max_sessions,
            pacing=_pacing(args), prefix=prefix, partitions=args.partitions))
            for _ in range(count)]


async def turn_step(load: SocketLoad, meter: CpuMeter, turn_rate: float, *, step_s: float,
                    warm_s: float, p99_ms: float, offered: float | int) -> Step:
    from loadtests._log_scale_sockets import Window as TurnWindow

    load_from = time.time() + 0.2
    window = TurnWindow(load_from, load_from + warm_s, load_from + step_s, turn_rate)
    closed_before = load.closed
    result, cpu = await asyncio.gather(load.measure(window, GATEWAY_GRACE_S),
                                       cpu_over(meter, window.start, window.end))
    latencies = result.pop("latencies")
    latency = percentiles(latencies)
    figures = {"offered": offered, **result, "latency_ms": rounded(latency),
               "cpu": cpu.as_dict()}
    why = []
    if not latency["p99"] <= p99_ms:
        why.append(f"p99 {latency['p99']:.1f} ms > {p99_ms:g} ms")
    if result["turn_errors"]:
        why.append(f"{result['turn_errors']} turns failed or refused")
    if result["turns_behind"]:
        why.append(f"{result['turns_behind']} turns not offered (every session busy)")
    if result["turns_done"] < DELIVERED_SHARE * result["turns_sent"]:
        why.append(f"{result['turns_done']} of {result['turns_sent']} turns done in time")
    if load.closed > closed_before:
        why.append(f"{load.closed - closed_before} sockets closed")
    return Step(figures, not why, why)


async def gateway_phase(cluster: RedisClusterServers, gateways: int,
                        args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    """Text turns through ``gateways`` replicas, the turn rate rising until a step fails."""
    from loadtests._log_scale_sockets import SocketLoad

    sessions = args.sessions_per_gateway * gateways
    with gateways_on(cluster, gateways, args, max_sessions=sessions + 100) as children:
        load = SocketLoad([url for url, _ in children], speech=args.speech)
        try:
            open_s = await load.open(sessions)
            meter = CpuMeter({**cluster_groups(cluster),
                              "gateways": [pid for _, pid in children],
                              "load generator": [os.getpid()]})

            async def measure(turn_rate: float) -> Step:
                return await turn_step(load, meter, turn_rate, step_s=args.step_s,
                                       warm_s=args.warm_s, p99_ms=args.p99_ms,
                                       offered=round(turn_rate, 2))

            result = await ramp(args.turn_rate, args.factor, args.max_steps, deadline, measure)
        finally:
            await load.aclose()
    result.update({"gateways": gateways, "sessions": sessions, "open_s": round(open_s, 2),
                   "layout": layout(len(cluster.primaries), args.partitions),
                   "open_failures": load.open_failures[:3]})
    return result


async def live_phase(cluster: RedisClusterServers, args: argparse.Namespace,
                     deadline: float) -> dict[str, Any]:
    """Sockets held in steps, each session typing ``--turns-per-minute`` turns a minute,
    on 2 Gateways: the most held at the p99 bound."""
    from loadtests._log_scale_sockets import SocketLoad

    raise_file_limit(max(args.live_steps) + 2048)
    steps: list[Step] = []
    stopped = "every step held"
    with gateways_on(cluster, args.live_gateways, args,
                     max_sessions=max(args.live_steps) + 100) as children:
        load = SocketLoad([url for url, _ in children])
        meter = CpuMeter({**cluster_groups(cluster),
                          "gateways": [pid for _, pid in children],
                          "load generator": [os.getpid()]})

        async def measure(sessions: float) -> Step:
            failures = len(load.open_failures)
            open_s = await load.open(int(sessions) - len(load.sessions))
            rate = len(load.sessions) * args.turns_per_minute / 60
            step = await turn_step(load, meter, rate, step_s=args.live_window_s,
                                   warm_s=args.warm_s, p99_ms=args.p99_ms,
                                   offered=len(load.sessions))
            step.figures["open_s"] = round(open_s, 2)
            if len(load.open_failures) > failures:
                step.why.append(f"{len(load.open_failures) - failures} sessions could not "
                                f"open: {load.open_failures[failures]}")
                return Step(step.figures, False, step.why)
            return step

        try:
            for target in args.live_steps:
                if time.monotonic() > deadline:
                    stopped = "the time budget ran out"
                    break
                step = await confirmed(measure, target, steps, f"{target} sessions: ")
                if not step.passed:
                    stopped = "a step failed twice: " + "; ".join(step.why)
                    break
        finally:
            await load.aclose()
    return {
        "gateways": args.live_gateways, "turns_per_minute": args.turns_per_minute,
        "held_at_p99": max((s.figures["offered"] for s in steps if s.passed), default=0),
        **outcome(steps), "stopped": stopped,
    }


async def acks_phase(cluster: RedisClusterServers, appends: int) -> dict[str, Any]:
    """``loadtests/bench_replica_acks.py``'s measure, on this cluster (it has replicas)."""
    from loadtests.bench_replica_acks import run

    return await run(cluster.url, appends)


# ---- the run -----------------------------------------------------------------------------


def start_cluster(primaries: int, replicas: int, attempts: int = 3) -> RedisClusterServers:
    """A cluster, tried again when a node lost its port: the cluster's ports are drawn
    from a range that overlaps the kernel's ephemeral ports, and this benchmark's own
    thousands of loopback connections can take one between its check and the node's bind."""
    for attempt in range(1, attempts + 1):
        try:
            return start_redis_cluster(primaries=primaries, replicas_per_primary=replicas)
        except ConfigurationError as exc:
            if attempt == attempts or "Address already in use" not in str(exc):
                raise
            print(f"  a cluster node lost its port ({attempt}/{attempts}); again", flush=True)
    raise AssertionError("unreachable")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    raise_file_limit(8192)
    deadline = time.monotonic() + args.budget_s
    largest = max(args.shards)
    figures: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k != "smoke"},
        "load_average_at_start": list(os.getloadavg()),
        "runs": [], "skipped": [],
    }
    for shards in sorted(args.shards):
        if time.monotonic() > deadline:
            figures["skipped"].append(f"{shards} shards: the time budget ran out")
            continue
        cluster = start_cluster(shards, args.replicas)
        try:
            if "log" in args.phases:
                print(f"log alone, {shards} shard(s)", flush=True)
                run = await log_phase(cluster, args, deadline)
                figures["runs"].append({"mode": "log", "shards": shards, **run})
            if "gateway" in args.phases:
                for gateways in args.gateways:
                    if time.monotonic() > deadline:
                        figures["skipped"].append(f"{shards}x{gateways}: no time left")
                        continue
                    print(f"through {gateways} Gateway(s), {shards} shard(s)", flush=True)
                    run = await gateway_phase(cluster, gateways, args, deadline)
                    figures["runs"].append({"mode": "gateway", "shards": shards, **run})
            if shards == largest and "live" in args.phases:
                print(f"live sessions on {args.live_gateways} Gateways, {shards} shard(s)",
                      flush=True)
                figures["live_sessions"] = await live_phase(cluster, args, deadline)
                figures["live_sessions"]["shards"] = shards
            if shards == largest and "acks" in args.phases:
                if args.replicas < 1:
                    figures["skipped"].append("acks: the cluster has no replicas")
                else:
                    print(f"WAIT 1 per append, {shards} shard(s)", flush=True)
                    figures["replica_acks"] = await acks_phase(cluster, args.acks_appends)
        finally:
            cluster.stop()
    figures["goals"] = goals(figures, args)
    return figures


def goals(figures: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The issue's three goals against what was measured (absent: not measured)."""
    result: dict[str, Any] = {}
    low, high = min(args.shards), max(args.shards)
    ratios: dict[str, float | None] = {}
    projected_ratios: dict[str, float | None] = {}
    for name, runs in series(figures).items():
        if low in runs and high in runs and low != high:
            ratios[name] = _ratio(runs[high]["sustained_events_per_s"],
                                  runs[low]["sustained_events_per_s"])
            projected_ratios[name] = _ratio(
                runs[high]["projected_events_per_s_busiest_primary_full"],
                runs[low]["projected_events_per_s_busiest_primary_full"])
    if ratios:
        spread = layout(high, args.partitions)["partitions"]
        bound = round(max(layout(low, args.partitions)["partitions"]) / max(spread), 2)
        beyond = sorted(f"{name}{' (projected)' if kind else ''}"
                        for kind, found in enumerate((ratios, projected_ratios))
                        for name, r in found.items() if r is not None and r > 1.1 * bound)
        result[f"events_per_s_{low}_to_{high}_shards_at_least_2.5x"] = {
            "ratios": ratios,
            "met": any(r is not None and 2.5 <= r <= 1.1 * bound for r in ratios.values()),
            "projected_ratios_redis_alone": projected_ratios,
            # the busiest shard's share of the partitions bounds any ratio
            "layout_bound": {"partitions_per_shard": spread, "best_ratio": bound},
            **({"suspect": f"{', '.join(beyond)}: above the layout's bound, so a run was "
                           "disturbed (see others_max_pct_of_one_core)"}
               if beyond else {}),
        }
    others = [run["others_max_pct_of_one_core"] for run in figures["runs"]]
    if figures.get("live_sessions"):
        others.append(figures["live_sessions"]["others_max_pct_of_one_core"])
    if others:
        result["machine_noise"] = {
            "others_max_pct_of_one_core": max(others),
            "figures_indicative_only": max(others) > NOISE_PCT}
    acks = figures.get("replica_acks", {}).get("goals", {}).get("wait_1_costs_at_most_2ms_p50")
    if acks:
        result["wait_1_costs_at_most_2ms_p50"] = acks
    if live := figures.get("live_sessions"):
        result["live_text_sessions_at_least_5000"] = {
            "value": live["held_at_p99"], "met": live["held_at_p99"] >= 5000}
    return result


def _ratio(high: float | None, low: float | None) -> float | None:
    return round(high / low, 2) if high and low else None


def summary(figures: dict[str, Any]) -> dict[str, Any]:
    """The headline of each phase, for the console."""
    lines: dict[str, Any] = {}
    for name, runs in series(figures).items():
        for shards, run in sorted(runs.items()):
            limit = run["limit"]
            lines[f"{name}, {shards} shard{'s' if shards != 1 else ''}"] = {
                "events_per_s": run["sustained_events_per_s"],
                "p99_ms": run["p99_ms_at_sustained"],
                "projected_busiest_primary_full": run[
                    "projected_events_per_s_busiest_primary_full"],
                "ran_out": (limit or {}).get("cpu", {}).get("exhausted", run["stopped"]),
            }
    if live := figures.get("live_sessions"):
        lines["live sessions"] = {"held": live["held_at_p99"],
                                  "ran_out": (live["limit"] or {}).get("cpu", {}).get(
                                      "exhausted", live["stopped"])}
    lines["goals"] = figures["goals"]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])

    def numbers(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part]

    def names(text: str) -> list[str]:
        chosen = [part for part in text.split(",") if part]
        if unknown := set(chosen) - set(PHASES):
            raise argparse.ArgumentTypeError(f"unknown phases {sorted(unknown)}")
        return chosen

    parser.add_argument("--shards", type=numbers, default=[1, 2, 3],
                        help="Redis Cluster primaries to measure (default 1,2,3)")
    parser.add_argument("--gateways", type=numbers, default=[1, 2],
                        help="Gateway replicas to measure on each cluster (default 1,2)")
    parser.add_argument("--replicas", type=int, default=1, help="replicas per primary")
    parser.add_argument("--partitions", type=int, default=EventLogSettings().partitions,
                        help="the log's partitions (hash tags; default the product's)")
    parser.add_argument("--phases", type=names, default=list(PHASES),
                        help=f"which of {','.join(PHASES)} to run (default all)")
    parser.add_argument("--p99-ms", type=float, default=50.0,
                        help="a step holds when its append-to-delivery p99 is within this")
    parser.add_argument("--step-s", type=float, default=5.0, help="one step, warm-up included")
    parser.add_argument("--warm-s", type=float, default=1.5, help="a step's unmeasured start")
    parser.add_argument("--factor", type=float, default=1.5, help="the load's growth per step")
    parser.add_argument("--max-steps", type=int, default=9, help="steps per ramp at most")
    parser.add_argument("--budget-s", type=float, default=900.0,
                        help="phases that would start after this are skipped")
    parser.add_argument("--log-rate", type=float, default=500.0,
                        help="log phase: the first step's appends/s")
    parser.add_argument("--log-writers", type=int, default=2, help="log phase: processes")
    parser.add_argument("--log-readers", type=int, default=1, help="log phase: processes")
    parser.add_argument("--log-sessions", type=int, default=SESSIONS_PER_WRITER,
                        help="log phase: sessions per writer")
    parser.add_argument("--turn-rate", type=float, default=8.0,
                        help="gateway phase: the first step's turns/s (all sessions)")
    parser.add_argument("--sessions-per-gateway", type=int, default=150,
                        help="gateway phase: sessions (sockets) per Gateway replica")
    parser.add_argument("--tokens", type=int, default=40, help="tokens of one reply")
    parser.add_argument("--first-token-ms", type=float, default=200.0)
    parser.add_argument("--token-ms", type=float, default=25.0, help="25: 40 tokens/s")
    parser.add_argument("--speech", action="store_true",
                        help="spoken replies too (gateway phase; the TTS's chunks take "
                        "--tts-chunk-ms each)")
    parser.add_argument("--tts-chunk-ms", type=float, default=60.0,
                        help="one 0.2 s chunk of speech (a real-time factor of 0.3)")
    parser.add_argument("--max-turns", type=int, default=2048,
                        help="each Gateway's admission: replies at once")
    parser.add_argument("--live-steps", type=numbers, default=[500, 1000, 2000, 3000, 4000, 5000],
                        help="live phase: sessions held at each step (at most 20,000)")
    parser.add_argument("--live-gateways", type=int, default=2)
    parser.add_argument("--live-window-s", type=float, default=15.0,
                        help="live phase: each step's measured window, warm-up included")
    parser.add_argument("--turns-per-minute", type=float, default=1.0,
                        help="live phase: each session's turns a minute")
    parser.add_argument("--acks-appends", type=int, default=2000,
                        help="WAIT phase: appends per round (bench_replica_acks)")
    add_smoke_flag(parser)
    args = parser.parse_args(argv)
    if args.smoke:  # every phase once, tiny: the code runs, the figures mean nothing
        args.shards, args.gateways, args.replicas = [2], [1], 1  # two shards: every path
        args.step_s, args.warm_s, args.max_steps, args.budget_s = 1.5, 0.5, 1, 120
        args.log_rate, args.log_writers, args.log_sessions = 200, 1, 8
        args.turn_rate, args.sessions_per_gateway = 3, 4
        args.tokens, args.first_token_ms, args.token_ms = 8, 5, 5
        args.live_steps, args.live_window_s = [6], 2.0
        args.turns_per_minute, args.live_gateways, args.acks_appends = 120, 2, 50
    args.live_steps = sorted({min(n, 20_000) for n in args.live_steps if n > 0}) or [1]
    args.max_steps = min(args.max_steps, 20)
    return args


def main() -> None:
    args = parse_args()
    if args.smoke:
        smoke_reports()
    figures = asyncio.run(bench(args))
    path = write_report("bench_log_scale", figures)
    image = plot(figures, reports_dir() / "bench_log_scale.png")
    print(json.dumps(summary(figures), indent=2))
    print(f"report: {path}\nplot: {image}", flush=True)


if __name__ == "__main__":
    main()
