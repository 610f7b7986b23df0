"""The collections part of ``loadtests/bench_limits.py`` (``--part collections``).

* :func:`healthz_while_expensive`: the worst ``/healthz`` latency while each expensive
  document is sent (goal ≤ 200 ms): the PDF of 20 pages sharing 20,000 text operators, the
  PDF of nested form XObjects, the PDF with an array nested 3,000 deep, a 1 MB text
  document. A pinger asks ``/healthz`` every 20 ms from its own connection while one
  upload runs; each input's answer (status, code) and time are reported beside it.
* :func:`add_cost`: ``--documents`` tiny documents added one by one to one collection;
  the per-add cost of the last ones against the 50th (goal ≤ 2): the medians of adds
  41–60 and of the last 20, so one noisy add (or the one that merges the delta) does not
  swing it; each single add and the mean of each window are given too.

Both run against a URL (the app started by ``bench_limits.py``, or the API in a child
process); everything is bounded in count and time and cleaned up (collections deleted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from loadtests._hostile_docs import deep_array, operator_bomb, tiny_document, xobject_bomb

PING_EVERY_S = 0.02
MAX_PINGS = 3000  # 60 s of pings at most, whatever the input does
GOAL_MS = 200
GOAL_RATIO = 2.0


@contextlib.asynccontextmanager
async def _pinger(url: str) -> AsyncIterator[list[float]]:
    latencies: list[float] = []
    stop = asyncio.Event()

    async def ping() -> None:
        # a ping's delay counts from when it was due (the end of its pause), so a stall
        # of this process's own loop during a pause shows too
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await http.get("/healthz")
            for _ in range(MAX_PINGS):
                paused = time.perf_counter()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PING_EVERY_S)
                due = min(time.perf_counter(), paused + PING_EVERY_S)
                await http.get("/healthz")
                latencies.append((time.perf_counter() - due) * 1000)
                if stop.is_set():
                    return

    task = asyncio.create_task(ping())
    await asyncio.sleep(0.1)
    try:
        yield latencies
    finally:
        stop.set()
        await task


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1)


async def _collection(http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    created = await http.post("/v1/collections", json={"name": "bench_limits"})
    created.raise_for_status()
    body = created.json()
    return body["collection"]["collection_id"], {"X-Voxline-Token": body["token"]}


def _inputs(smoke: bool) -> dict[str, tuple[str, bytes]]:
    words = " ".join(f"keeper{n % 997} lighthouse log" for n in range(60_000))
    text = words[: 100_000 if smoke else 1_000_000]
    if smoke:  # the same kinds, small: the benchmark runs, not the measure
        return {"pdf_2_pages_300_operators": ("bomb.pdf", operator_bomb(2, 300)),
                "pdf_nested_form_xobjects_small": ("forms.pdf", xobject_bomb(2)),
                "pdf_array_nested_3000_deep": ("deep.pdf", deep_array()),
                "text_100k_chars": ("big.txt", text.encode())}
    return {
        "pdf_20_pages_20000_operators": ("bomb.pdf", operator_bomb()),
        "pdf_nested_form_xobjects": ("forms.pdf", xobject_bomb()),
        "pdf_array_nested_3000_deep": ("deep.pdf", deep_array()),
        f"text_{len(text) // 1000}k_chars": ("big.txt", text.encode()),
    }


async def healthz_while_expensive(url: str, *, smoke: bool = False,
                                  say: Callable[[str], None] = print) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with _pinger(url) as idle:  # the machine's own noise, nothing being sent
        await asyncio.sleep(1 if smoke else 5)
    say(f"collections: idle /healthz worst {max(idle):.1f} ms over {len(idle)} pings")
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        cid, auth = await _collection(http)
        try:
            for name, (filename, data) in _inputs(smoke).items():
                kind = "application/pdf" if filename.endswith(".pdf") else "text/plain"
                async with _pinger(url) as pings:
                    started = time.perf_counter()
                    answer = await http.post(f"/v1/collections/{cid}/files", headers=auth,
                                             files={"file": (filename, data, kind)})
                    took = time.perf_counter() - started
                code = answer.json().get("error", {}).get("code") if answer.is_error else None
                worst = round(max(pings), 1) if pings else None
                results[name] = {"bytes": len(data), "status": answer.status_code,
                                 "p99_healthz_ms": _p99(pings),
                                 "code": code, "answer_s": round(took, 2),
                                 "pings": len(pings), "worst_healthz_ms": worst,
                                 "median_healthz_ms": round(statistics.median(pings), 1)
                                 if pings else None}
                say(f"collections: {name} ({len(data)} B) -> {answer.status_code} {code} "
                    f"in {took:.2f} s; worst /healthz {worst} ms over {len(pings)} pings")
        finally:
            await http.delete(f"/v1/collections/{cid}", headers=auth)
    worst_all = max((r["worst_healthz_ms"] or 0) for r in results.values())
    return {"inputs": results, "worst_healthz_ms": worst_all, "goal_ms": GOAL_MS,
            "met": worst_all <= GOAL_MS, "idle_worst_healthz_ms": round(max(idle), 1),
            "idle_pings": len(idle), "loadavg_1m": os.getloadavg()[0]}


async def add_cost(url: str, documents: int = 2000, *, budget_s: float = 600,
                   say: Callable[[str], None] = print) -> dict[str, Any]:
    documents = max(80, documents)
    deadline = time.monotonic() + budget_s
    costs: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        cid, auth = await _collection(http)
        try:
            for n in range(documents):
                if time.monotonic() > deadline:
                    say(f"collections: budget spent after {n} adds")
                    break
                started = time.perf_counter()
                added = await http.post(f"/v1/collections/{cid}/documents", headers=auth,
                                        json={"text": tiny_document(n), "title": f"t{n}"})
                costs.append((time.perf_counter() - started) * 1000)
                added.raise_for_status()
                if (n + 1) % 250 == 0:
                    say(f"collections: add {n + 1}: {costs[-1]:.1f} ms "
                        f"(median of the last 20: {statistics.median(costs[-20:]):.1f} ms)")
            found = await _found(http, cid, auth, len(costs))
        finally:
            await http.delete(f"/v1/collections/{cid}", headers=auth)
    head, tail = costs[40:60], costs[-20:]
    result: dict[str, Any] = {
        "documents": len(costs), "add_50_ms": round(costs[49], 2),
        f"add_{len(costs)}_ms": round(costs[-1], 2),
        "median_41_60_ms": round(statistics.median(head), 2),
        f"median_{len(costs) - 19}_{len(costs)}_ms": round(statistics.median(tail), 2),
        "mean_41_60_ms": round(statistics.mean(head), 2),
        f"mean_{len(costs) - 19}_{len(costs)}_ms": round(statistics.mean(tail), 2),
        "max_ms": round(max(costs), 1), "searched_newest_found": found,
        "goal_ratio": GOAL_RATIO,
    }
    result["ratio_last_to_50"] = round(statistics.median(tail) / statistics.median(head), 2)
    result["met"] = result["ratio_last_to_50"] <= GOAL_RATIO
    say(f"collections: per-add cost, last 20 vs adds 41-60: {result['ratio_last_to_50']}x")
    return result


async def _found(http: httpx.AsyncClient, cid: str, auth: dict[str, str], added: int) -> bool:
    """The newest document is in the collection (its chunk reads back)."""
    docs = (await http.get(f"/v1/collections/{cid}/documents", headers=auth)).json()
    return len(docs) == added and any(d["title"] == f"t{added - 1}" for d in docs)


async def bench(url: str, *, smoke: bool, documents: int, budget_s: float,
                say: Callable[[str], None] = print) -> dict[str, Any]:
    healthz = await healthz_while_expensive(url, smoke=smoke, say=say)
    adds = await add_cost(url, 100 if smoke else documents, budget_s=budget_s, say=say)
    return {"healthz_while_expensive": healthz, "add_cost": adds}
