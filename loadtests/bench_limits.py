"""Limits under load, against the running app: long sessions and overload.

Prints a table and writes ``reports/bench_limits.json``. Two parts here, each a function
another script may call with the URL of a running server, and a third from
``loadtests/bench_connections.py`` (idle sockets held per Gateway with
``/readyz`` 200, goal ≥ 1,000; Gateway RSS over a 300-turn session, goal flat within 10 %),
run with ``--part connections`` or ``all`` against the API on plain uvicorn in a child
process (that script's own setup; see its docstring):

* :func:`history_first_token`: one session, up to 40 typed turns in a row; per
  turn the first text delta (client: send → first ``response.text.delta`` received;
  server: ``input.text`` → first delta). The history handed to the LLM is trimmed in
  blocks (``VOXLINE_HISTORY__*``), so the prompt's prefix, and the LLM's prompt cache,
  hold from turn to turn. Goal: turn 40 within 1.5× of turn 2 (also given: the median
  of turns 36–40 against that of turns 2–6, which one noisy turn does not swing).
* :func:`bystander_under_overload`: a bystander's typed turns, send → first
  reply audio, alone and then while ``3 × capacity`` other clients keep asking for turns
  (``/v1/chat/stream`` with audio, each retrying after ``Retry-After`` when refused).
  Goal: the bystander's p95 under load ≤ 2× its idle p95, the excess refused with
  503/``overloaded`` (counted), not queued.

* :func:`size_turn_limit` (``--part size``): part two once per turn limit of
  ``--sizes`` (each in an app of its own, a child process), and the largest limit whose
  bystander p95 stays within 2× idle: the figure the CPU profile's default
  ``max_turns`` comes from (``deployments.app.PROFILE_ADMISSION``).

``--part collections`` (:mod:`loadtests._collection_limits`): the worst ``/healthz``
latency while each expensive document is sent (goal ≤ 200 ms) and the per-add cost of
document ``--documents`` against document 50 (goal ≤ 2), against ``--url`` or, without
it, the API on plain uvicorn in a child process (``bench_connections.py``'s, scripted
engines, default retrieval settings).

    .venv/bin/python -m loadtests.bench_limits [--url http://127.0.0.1:8000]
        [--turns 40] [--capacity N] [--budget-s 600] [--sizes 1,2,3]
        [--documents 2000] [--smoke]
        [--part history|overload|both|connections|collections|all|size]

Without ``--url`` it starts the app (CPU profile, Whisper tiny.en) and stops it at the
end; its turn limit is the profile's default unless ``--capacity`` sets
``VOXLINE_ADMISSION__MAX_TURNS``. The limit in effect is read from the server's
``/readyz`` (so with ``--url`` nothing needs saying). Bounded: at most 40 turns in part
one, 8 idle and 12 loaded bystander turns in part two, every wait within the budget.
``--smoke``: parts one and two and the collections part against the API on scripted engines
(``loadtests/_gateway.py``, a child process, turn limit 1), small (three turns in part one,
two idle and one loaded in part two, 100 documents and a 100k-character text), in seconds,
so a broken benchmark fails the suite the day it breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from loadtests._report import (
    add_smoke_flag,
    percentiles,
    reports_dir,
    smoke_reports,
    write_report,
)
from voxline.client import FINAL_TYPES, SessionSocket, VoxlineClient

ROOT = Path(__file__).resolve().parent.parent

MAX_HISTORY_TURNS = 40
IDLE_TURNS = 8
LOADED_TURNS = 12
GREEDY = {"temperature": 0.0, "max_tokens": 40, "seed": 7}
TOPICS = ("France", "Italy", "Spain", "Japan", "Canada", "Egypt", "Peru", "Norway",
          "Kenya", "Chile", "India", "Greece", "Brazil", "Poland", "Mexico", "Turkey")


def question(i: int) -> str:
    return f"What is the capital of {TOPICS[i % len(TOPICS)]}?"


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


# ---- part one: first token over a long session -----------------------------------------


async def _typed_turn(conn: SessionSocket, text: str, timeout_s: float) -> dict[str, Any]:
    """One typed turn on an open socket: client and server first-delta times (ms)."""
    sent = time.perf_counter()
    await conn.send_text(text)
    first: float | None = None
    input_ts = delta_ts = None
    status = "none"

    async def read() -> None:
        nonlocal first, input_ts, delta_ts, status
        async for event in conn.until_done(stop_on_error=False):
            if event.type == "input.text":
                input_ts = event.ts
            elif event.type == "response.text.delta" and first is None:
                first, delta_ts = time.perf_counter(), event.ts
            elif event.type == "error" and event.turn_id is None:
                status = "refused"  # past the turn limit: no turn began
                return
            if event.type in FINAL_TYPES:
                status = getattr(event.data, "status", "cancelled")

    await asyncio.wait_for(read(), timeout_s)
    return {
        "client_ms": None if first is None else round((first - sent) * 1000, 1),
        "server_ms": None if None in (input_ts, delta_ts) else delta_ts - input_ts,  # type: ignore[operator]
        "status": status,
    }


async def history_first_token(
    url: str, turns: int = MAX_HISTORY_TURNS, *, budget_s: float = 300,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Part one (see the module docstring): first-delta latency of turns 1..``turns``."""
    turns = max(2, min(turns, MAX_HISTORY_TURNS))
    deadline = Deadline(budget_s)
    per_turn: list[dict[str, Any]] = []
    async with VoxlineClient(url, timeout=120) as client:
        session = await client.create_session(realtime_tts=False, sampling=GREEDY)
        async with client.connect(session) as conn:
            for i in range(turns):
                if deadline.left() < 5:
                    say(f"history: budget spent after {i} turns")
                    break
                turn = await _typed_turn(conn, question(i), min(deadline.left(), 120))
                per_turn.append({"turn": i + 1, **turn})
                say(f"history: turn {i + 1:2d} first delta {turn['client_ms']} ms "
                    f"(server {turn['server_ms']} ms)")
    return {"turns": per_turn, **_history_summary(per_turn)}


def _history_summary(per_turn: list[dict[str, Any]]) -> dict[str, Any]:
    client = {t["turn"]: t["client_ms"] for t in per_turn if t["client_ms"] is not None}

    def median(first: int, last: int) -> float | None:
        values = [client[t] for t in range(first, last + 1) if t in client]
        return statistics.median(values) if values else None

    last = max(client, default=0)
    summary: dict[str, Any] = {
        "turn_2_ms": client.get(2), f"turn_{last}_ms": client.get(last),
        "median_2_6_ms": median(2, 6), f"median_{last - 4}_{last}_ms": median(last - 4, last),
        "median_2_20_ms": median(2, 20), "median_21_40_ms": median(21, 40),
    }
    if client.get(2) and client.get(last):
        summary["ratio_last_to_2"] = round(client[last] / client[2], 2)
    head, tail = median(2, 6), median(last - 4, last)
    if head and tail:
        summary["ratio_tail_to_head_medians"] = round(tail / head, 2)
    return summary


# ---- part two: a bystander while capacity is exceeded ------------------------------------


async def _bystander_turns(
    client: VoxlineClient, n: int, deadline: Deadline, say: Callable[[str], None], label: str,
) -> dict[str, Any]:
    """``n`` admitted typed turns on one socket: send → first audio chunk (ms); a refused
    turn (``overloaded``) is retried after its hint and counted."""
    session = await client.create_session(sampling=GREEDY)
    first_audio: list[float] = []
    refused = 0
    async with client.connect(session) as conn:
        for i in range(n):
            while deadline.left() > 10:
                sent = time.perf_counter()
                await conn.send_text(question(i + 3))
                got: float | None = None
                retry_ms = 0
                async for event in conn.until_done():
                    if event.type == "response.audio.chunk" and got is None:
                        got = time.perf_counter()
                    if event.type == "error" and event.data.code == "overloaded":  # type: ignore[union-attr]
                        retry_ms = int(event.data.details.get("retry_after_ms", 1000))  # type: ignore[union-attr]
                        if event.turn_id is None:
                            break  # refused before the turn began
                if retry_ms:
                    refused += 1
                    await asyncio.sleep(retry_ms / 1000)
                    continue
                if got is not None:
                    first_audio.append((got - sent) * 1000)
                    say(f"{label}: bystander turn {i + 1} first audio "
                        f"{first_audio[-1]:.0f} ms")
                break
    return {"first_audio_ms": percentiles(first_audio), "samples": len(first_audio),
            "refused": refused, "values_ms": [round(v) for v in first_audio]}


async def _loader(
    url: str, stop: asyncio.Event, counts: dict[str, int], seed: int,
) -> None:
    """One client that keeps asking for spoken chat turns; on 503 it waits Retry-After."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while not stop.is_set():
            counts["offered"] += 1
            body = {"message": question(rng.randrange(100)), "audio": True,
                    "settings": {"sampling": GREEDY}}
            try:
                async with http.stream("POST", "/v1/chat/stream", json=body) as response:
                    if response.status_code == 503:
                        counts["refused"] += 1
                        retry = float(response.headers.get("retry-after", "1"))
                        await response.aread()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), retry * (0.5 + rng.random()))
                        continue
                    overloaded = False
                    async for line in response.aiter_lines():
                        overloaded = overloaded or '"overloaded"' in line
                    counts["refused_in_turn" if overloaded else "admitted"] += 1
            except httpx.HTTPError:
                counts["failed"] += 1


async def bystander_under_overload(
    url: str, capacity: int, *, budget_s: float = 400, say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Part two (see the module docstring)."""
    deadline = Deadline(budget_s)
    async with VoxlineClient(url, timeout=120) as client:
        await _bystander_turns(client, 1, deadline, say, "warm-up")
        idle = await _bystander_turns(client, IDLE_TURNS, deadline, say, "idle")
        counts = {"offered": 0, "admitted": 0, "refused": 0, "refused_in_turn": 0, "failed": 0}
        stop = asyncio.Event()
        loaders = [asyncio.create_task(_loader(url, stop, counts, seed))
                   for seed in range(3 * capacity)]
        await asyncio.sleep(2)  # the load is on before the bystander asks
        try:
            loaded = await _bystander_turns(client, LOADED_TURNS, deadline, say, "loaded")
        finally:
            stop.set()
            await asyncio.wait(loaders, timeout=max(5, min(120, deadline.left())))
            for task in loaders:
                task.cancel()
    result: dict[str, Any] = {"capacity_turns": capacity, "loaders": 3 * capacity,
                              "idle": idle, "loaded": loaded, "load": counts}
    if idle["samples"] and loaded["samples"]:
        result["p95_ratio"] = round(loaded["first_audio_ms"]["p95"]
                                    / idle["first_audio_ms"]["p95"], 2)
        result["p50_ratio"] = round(loaded["first_audio_ms"]["p50"]
                                    / idle["first_audio_ms"]["p50"], 2)
    return result


# ---- the command --------------------------------------------------------------------------


async def _collections(args: argparse.Namespace) -> dict[str, Any]:
    """The collections part, against ``--url`` or the API in a child process."""
    from loadtests import _collection_limits

    documents = 100 if args.smoke else min(args.documents, 5000)
    if args.url:
        return await _collection_limits.bench(args.url.rstrip("/"), smoke=args.smoke,
                                              documents=documents, budget_s=args.budget_s)
    from loadtests._gateway import child_gateway
    from voxline.redis_server import redis_url_or_server

    with redis_url_or_server(os.environ.get("VOXLINE_REDIS_URL")) as redis_url, \
            child_gateway(redis_url) as (url, _):
        figures = await _collection_limits.bench(url, smoke=args.smoke, documents=documents,
                                                 budget_s=args.budget_s)
    figures["gateway"] = "API on plain uvicorn, scripted engines, child process"
    return figures


def judge(figures: dict[str, Any]) -> dict[str, Any]:
    goals: dict[str, Any] = {}
    collections = figures.get("collections")
    if collections:
        healthz = collections["healthz_while_expensive"]
        goals["worst_healthz_while_expensive_documents_within_200ms"] = {
            "value": healthz["worst_healthz_ms"], "met": healthz["met"]}
        adds = collections["add_cost"]
        goals["add_cost_last_within_2x_of_50th"] = {
            "value": adds["ratio_last_to_50"], "documents": adds["documents"],
            "met": adds["met"]}
    history = figures.get("history")
    if history and "ratio_last_to_2" in history:
        goals["turn_40_within_1.5x_of_turn_2"] = {
            "value": history["ratio_last_to_2"], "met": history["ratio_last_to_2"] <= 1.5,
            "medians_ratio": history.get("ratio_tail_to_head_medians")}
    overload = figures.get("overload")
    if overload and "p95_ratio" in overload:
        load = overload["load"]
        goals["bystander_p95_within_2x_idle"] = {
            "value": overload["p95_ratio"], "met": overload["p95_ratio"] <= 2.0,
            "excess_refused": load["refused"] + load["refused_in_turn"] > 0}
    connections = figures.get("connections")
    if connections:
        held = connections["idle_sockets"]["held_with_readyz_200"]
        goals["idle_sockets_per_gateway_at_least_1000"] = {"value": held, "met": held >= 1000}
        session = connections["long_session"]
        goals["gateway_rss_flat_within_10pct_over_300_turns"] = {
            "value": session.get("peak_growth_pct"), "met": session.get("met")}
    return goals


async def turn_limit(url: str) -> int:
    """The server's turn limit in effect, from its ``/readyz`` admission state."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        body = (await http.get("/readyz")).json()
    limit = body.get("admission", {}).get("turns", {}).get("limit")
    if not isinstance(limit, int):
        raise SystemExit(f"{url}/readyz shows no turn limit ({limit!r}): part two offers 3× "
                         "the limit, so the server must have one")
    return limit


async def bench(url: str, args: argparse.Namespace, say: Callable[[str], None],
                deadline: Deadline) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if args.part in ("history", "both"):
        share = deadline.left() * (0.45 if args.part == "both" else 0.95)
        figures["history"] = await history_first_token(url, args.turns, budget_s=share, say=say)
    if args.part in ("overload", "both"):
        capacity = await turn_limit(url)
        say(f"overload: the server's turn limit is {capacity}; offering {3 * capacity} loaders")
        figures["overload"] = await bystander_under_overload(
            url, capacity, budget_s=deadline.left() - 5, say=say)
    return figures


def size_turn_limit(sizes: list[int], budget_s: float,
                    say: Callable[[str], None]) -> dict[str, Any]:
    """``--part size``: part two in a fresh app per turn limit; the largest limit whose
    bystander p95 is within 2× idle, with every smaller one within it too."""
    per_size: dict[str, Any] = {}
    chosen: int | None = None
    deadline = Deadline(budget_s)
    for size in sorted(sizes):
        if deadline.left() < 120:
            say(f"size: budget spent before limit {size}")
            break
        name = f"bench_limits_size_{size}"
        say(f"size: turn limit {size} (an app of its own) ...")
        subprocess.run(
            [sys.executable, "-m", "loadtests.bench_limits", "--part", "overload",
             "--capacity", str(size), "--report", name, "--budget-s",
             str(int(min(deadline.left(), 900)))], check=True, cwd=ROOT)
        report = json.loads((reports_dir() / f"{name}.json").read_text())
        overload = report.get("figures", report).get("overload", {})
        per_size[str(size)] = {k: overload.get(k) for k in ("p95_ratio", "p50_ratio", "load")}
        per_size[str(size)]["idle_p95_ms"] = overload.get("idle", {}).get(
            "first_audio_ms", {}).get("p95")
        ratio = overload.get("p95_ratio")
        say(f"size: limit {size}: bystander p95 {ratio}× idle")
        if ratio is None or ratio > 2.0:
            break
        chosen = size
    return {"sizes": per_size, "largest_limit_within_2x": chosen}


def say_report(name: str, figures: dict[str, Any]) -> None:
    print(f"report: {write_report(name, figures)}", flush=True)


def smoke(args: argparse.Namespace) -> None:
    """``--smoke`` (see the module docstring)."""
    from loadtests._gateway import child_gateway
    from voxline.redis_server import redis_url_or_server

    global IDLE_TURNS, LOADED_TURNS  # a smoke run's own sizes, in this process only
    IDLE_TURNS, LOADED_TURNS = 2, 1
    smoke_reports()
    args.part, args.turns = "both", 3
    with redis_url_or_server(os.environ.get("VOXLINE_REDIS_URL")) as redis_url, \
            child_gateway(redis_url, max_turns=1) as (url, _pid):
        figures = asyncio.run(bench(url, args, print, Deadline(120)))
        args.url = url
        figures["collections"] = asyncio.run(_collections(args))
    figures["goals"] = judge(figures)
    for name, goal in figures["goals"].items():
        print(f"{name}: {goal}", flush=True)
    say_report("bench_limits_smoke", figures)
    if not (figures["history"]["turns"] and figures["overload"]["loaded"]["samples"]):
        raise SystemExit("smoke: a part measured no turn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server on this machine; default: start one")
    parser.add_argument("--turns", type=int, default=MAX_HISTORY_TURNS)
    parser.add_argument("--capacity", type=int, default=None,
                        help="the turn limit of the app this starts (default: the profile's)")
    parser.add_argument("--budget-s", type=float, default=600)
    parser.add_argument("--part", default="both", choices=(
        "history", "overload", "both", "connections", "collections", "all", "size"))
    parser.add_argument("--sizes", default="1,2,3", help="turn limits --part size tries")
    parser.add_argument("--report", default="bench_limits", help="the JSON report's name")
    parser.add_argument("--documents", type=int, default=2000,
                        help="collections: tiny documents added one by one (at most 5000)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke(args)
        return
    if args.part == "size":
        sized = size_turn_limit([int(v) for v in args.sizes.split(",")], args.budget_s, print)
        print(f"largest turn limit with the bystander within 2× idle: "
              f"{sized['largest_limit_within_2x']}", flush=True)
        say_report(args.report, {"size": sized})
        return
    collections: dict[str, Any] | None = None
    if args.part in ("collections", "all"):
        collections = asyncio.run(_collections(args))
        if args.part == "collections":
            only = {"collections": collections}
            for name, goal in judge(only).items():
                print(f"{name}: {goal}", flush=True)
            say_report(args.report, {**only, "goals": judge(only)})
            return
    connections: dict[str, Any] | None = None
    if args.part in ("connections", "all"):
        from loadtests import bench_connections

        connections = asyncio.run(bench_connections.bench(argparse.Namespace(
            url=None, gateway_pid=None, max_sockets=1200, step=200, turns=300,
            budget_s=min(args.budget_s, 300))))
        if args.part == "connections":
            only = {"connections": connections}
            say_report("bench_limits", {**only, "goals": judge(only)})
            return
        args.part = "both"
    deadline = Deadline(args.budget_s)
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, flush=True)

    if args.url:
        figures = asyncio.run(bench(args.url.rstrip("/"), args, say, deadline))
    else:
        # the replicas import this checkout (not an installed copy) and read these settings
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        os.environ.setdefault("VOXLINE_STT__MODEL", "whisper-tiny.en")
        if args.capacity is not None:
            os.environ["VOXLINE_ADMISSION__MAX_TURNS"] = str(args.capacity)
        from schemas import Settings
        from voxline.redis_server import free_port
        from voxline.server import running_server

        settings = Settings().model_copy(update={"host": "127.0.0.1", "port": free_port(),
                                                 "metrics_port": None})
        with running_server(settings, say=say, ready_timeout_s=max(deadline.left(), 30)) as srv:
            say(f"app ready after {time.monotonic() - started:.0f} s")
            figures = asyncio.run(bench(srv.url, args, say, deadline))
    figures["settings"] = {"capacity_turns": figures.get("overload", {}).get("capacity_turns"),
                           "turn_limit_from": "--capacity" if args.capacity else "profile",
                           "history": {k: v for k, v in os.environ.items()
                                       if k.startswith("VOXLINE_HISTORY__")}}
    figures["elapsed_s"] = round(time.monotonic() - started, 1)
    figures["machine_load"] = {"cpus": os.cpu_count(), "loadavg_1m_end": os.getloadavg()[0]}
    if connections is not None:
        figures["connections"] = connections
    if collections is not None:
        figures["collections"] = collections
    figures["goals"] = judge(figures)
    for name, goal in figures["goals"].items():
        say(f"{name}: {goal}")
    say(f"report: {write_report(args.report, figures)}")


if __name__ == "__main__":
    main()
