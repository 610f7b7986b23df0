"""Connections per Gateway replica: idle sockets held, and memory over a long session.

Prints and writes ``reports/bench_connections.json``:

* **idle sockets held per Gateway replica with /readyz 200** (goal ≥ 1,000): sockets are
  opened in steps, each on a session of its own, and left idle; after each step
  ``/readyz`` must answer 200, a bystander's text turn must complete (its time is
  reported), and the Gateway's Redis connections are counted (its TCP sockets to the
  Redis port, from ``/proc``). It stops at ``--max-sockets``, at the first failing step,
  or when the budget runs out.
* **Gateway RSS over a 300-turn session** (goal: flat within 10 %): one session, one
  socket, ``--turns`` text turns one after another; the Gateway's RSS is sampled every
  25 turns, growth is measured from the sample after a warm-up of 25 turns. It runs
  first, on a fresh Gateway: memory the sockets leave behind would hide growth.

    .venv/bin/python -m loadtests.bench_connections [--max-sockets 1200] [--step 200]
        [--turns 300] [--budget-s 300] [--url http://127.0.0.1:8000 --gateway-pid PID] [--smoke]

Without ``--url`` the Gateway is the API (``deployments.api.create_api``) on plain
uvicorn in a child process, on scripted engines (``loadtests/_gateway.py``: the
LLM streams 24 tokens at 1 ms, the TTS answers 2 chunks a piece), so the figures are the
Gateway's own costs, not a model's; Redis is ``VOXLINE_REDIS_URL`` or one started here.
With ``--url`` it drives a running app (the Serve app: ``voxline serve``); RSS and Redis
connections then need the Gateway replica's pid (``--gateway-pid``; found by itself
when one Serve Gateway replica runs on this machine), else they are left out.
Loopback only; bounded in sockets, turns and time; raises its soft file limit as needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from loadtests._gateway import child_gateway
from loadtests._open_files import raise_file_limit
from loadtests._report import add_smoke_flag, percentiles, smoke_reports, write_report
from voxline.client import VoxlineClient

SAMPLE_EVERY = 25


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def redis_connections(pid: int, redis_port: int) -> int:
    """TCP sockets of ``pid`` whose remote end is ``redis_port`` (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                remote, inode = fields[2], fields[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == redis_port:
                    count += 1
    return count


def find_gateway_pid() -> int | None:
    """The pid of the one Serve Gateway replica on this machine (``ray::ServeReplica:
    ...:Gateway``), if there is exactly one."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if b"ServeReplica:" in (cmd := (proc / "cmdline").read_bytes()) and \
                        b":Gateway" in cmd:
                    found.append(int(proc.name))
    return found[0] if len(found) == 1 else None


# ---- the measures ---------------------------------------------------------------------

async def text_turn(client: VoxlineClient, session: Any | None = None,
                    conn: Any | None = None) -> float:
    """One text turn; seconds from send to ``response.done``."""
    if conn is None:
        session = session or await client.create_session()
        async with client.connect(session) as fresh:
            return await text_turn(client, conn=fresh)
    start = time.perf_counter()
    await conn.send_text("Tell me something.")
    async for event in conn.until_done():
        if event.type == "error" and event.id is None:
            raise RuntimeError(f"turn failed: {event.data}")
    return time.perf_counter() - start


async def idle_sockets(client: VoxlineClient, *, max_sockets: int, step: int,
                       pid: int | None, redis_port: int, deadline: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    sockets: list[Any] = []
    steps: list[dict[str, Any]] = []
    held = 0
    stopped = "max_sockets reached"
    try:
        while len(sockets) < max_sockets:
            if time.monotonic() > deadline:
                stopped = "budget"
                break
            count = min(step, max_sockets - len(sockets))
            sessions = []
            for i in range(0, count, 50):
                sessions += await asyncio.gather(*(client.create_session()
                                                   for _ in range(min(50, count - i))))
            failed: list[str] = []
            for i in range(0, count, 25):
                opened = await asyncio.gather(*(
                    connect(f"{s.ws_url}?token={s.token}", compression=None, open_timeout=60)
                    for s in sessions[i:i + 25]), return_exceptions=True)
                sockets += [ws for ws in opened if not isinstance(ws, BaseException)]
                failed += [repr(ws) for ws in opened if isinstance(ws, BaseException)]
            await asyncio.sleep(1.0)  # each sender goes live after the resume window
            started = time.perf_counter()
            ready = await client.http.get("/readyz")
            readyz_ms = (time.perf_counter() - started) * 1000
            row: dict[str, Any] = {
                "sockets": len(sockets), "readyz": ready.status_code,
                "readyz_ms": round(readyz_ms, 1),
                "log_tail": ready.json().get("log_tail"),
            }
            try:
                row["bystander_turn_s"] = round(await asyncio.wait_for(text_turn(client), 60), 3)
            except Exception as exc:
                row["bystander_turn_error"] = repr(exc)
            if pid is not None:
                row["gateway_redis_connections_open"] = redis_connections(pid, redis_port)
                row["gateway_rss_mib"] = round(rss_mib(pid), 1)
            closed = sum(ws.close_code is not None for ws in sockets)
            row["closed_by_server"] = closed
            if failed:
                row["open_failed"] = len(failed)
                row["open_error"] = failed[0]
            steps.append(row)
            print(f"  {row}", flush=True)
            if ready.status_code != 200 or "bystander_turn_error" in row or closed or failed:
                stopped = "a step failed"
                break
            held = len(sockets)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {"held_with_readyz_200": held, "goal": 1000, "met": held >= 1000,
            "stopped": stopped, "steps": steps}


async def long_session(client: VoxlineClient, *, turns: int, pid: int | None,
                       deadline: float) -> dict[str, Any]:
    session = await client.create_session()
    samples: list[dict[str, Any]] = []
    times: list[float] = []
    async with client.connect(session) as conn:
        for turn in range(1, turns + 1):
            if time.monotonic() > deadline:
                break
            times.append(await text_turn(client, conn=conn))
            if pid is not None and turn % SAMPLE_EVERY == 0:
                samples.append({"turn": turn, "rss_mib": round(rss_mib(pid), 1)})
    result: dict[str, Any] = {"turns": len(times), "turn_s": percentiles(times),
                              "samples": samples}
    if len(samples) >= 2:
        base = samples[0]["rss_mib"]  # after the warm-up turns
        peak = max(s["rss_mib"] for s in samples)
        growth = (samples[-1]["rss_mib"] - base) / base * 100
        result.update({"rss_after_warmup_mib": base, "rss_last_mib": samples[-1]["rss_mib"],
                       "rss_peak_mib": peak, "growth_pct": round(growth, 2),
                       "peak_growth_pct": round((peak - base) / base * 100, 2),
                       "goal_pct": 10, "met": (peak - base) / base * 100 <= 10})
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from urllib.parse import urlsplit

    from voxline.redis_server import redis_url_or_server

    limit = raise_file_limit(4 * args.max_sockets + 1024)
    deadline = time.monotonic() + args.budget_s
    figures: dict[str, Any] = {"file_limit": limit}
    with redis_url_or_server(os.environ.get("VOXLINE_REDIS_URL")) as redis_url:
        redis_port = urlsplit(redis_url).port or 6379
        async with contextlib.AsyncExitStack() as stack:
            if args.url:
                url, pid = args.url, args.gateway_pid or find_gateway_pid()
                figures["gateway"] = f"running app at {url}"
            else:
                url, pid = stack.enter_context(child_gateway(redis_url))
                figures["gateway"] = "API on plain uvicorn, scripted engines, child process"
            client = await stack.enter_async_context(VoxlineClient(url, timeout=60))
            # the long session first: the sockets' memory, once freed, would hide growth
            print(f"one session, {args.turns} turns", flush=True)
            figures["long_session"] = await long_session(
                client, turns=args.turns, pid=pid, deadline=deadline)
            print(f"idle sockets, in steps of {args.step} up to {args.max_sockets}", flush=True)
            figures["idle_sockets"] = await idle_sockets(
                client, max_sockets=args.max_sockets, step=args.step, pid=pid,
                redis_port=redis_port, deadline=deadline + args.budget_s)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app (default: start the API here)")
    parser.add_argument("--gateway-pid", type=int, help="with --url: the Gateway's pid")
    parser.add_argument("--max-sockets", type=int, default=1200)
    parser.add_argument("--step", type=int, default=200)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--budget-s", type=float, default=300)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:  # two RSS samples, one step of sockets
        smoke_reports()
        args.url = None
        args.max_sockets, args.step, args.turns, args.budget_s = 10, 10, 2 * SAMPLE_EVERY, 60
    args.max_sockets = min(args.max_sockets, 5000)
    args.turns = min(args.turns, 1000)
    figures = asyncio.run(bench(args))
    path = write_report("bench_connections", figures)
    summary = {"idle_sockets_held": figures["idle_sockets"]["held_with_readyz_200"],
               "rss": {k: v for k, v in figures["long_session"].items()
                       if k not in ("samples", "turn_s")}}
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
