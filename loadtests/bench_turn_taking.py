"""Turn-taking on a labelled corpus, through the running app over its socket: how often a
turn is cut off while the speaker only paused, and how long a finished turn waits.

The corpus is :mod:`loadtests._turn_corpus` (complete questions; turns with thinking pauses
of 300–1,500 ms; pauses after fillers; English and German; several voices, speeds and
noise floors; the same audio from ``--seed``). Each item is streamed into a session of its
own, once per configuration of the turn detection, with ``auto_response`` off (no reply
competes for the cores; the endpointer and the end-of-turn model run as they do for any
turn). Every ``input.speech_stopped`` says where in the input the turn ended
(``audio_ms + silence_ms``, the stream position at which it was decided), so:

* **false cut-off**: an item whose turn was ended before the speaker's last word ended
  (the speech after it became a turn of its own);
* **end-of-turn latency**: from the true end of speech to where the turn was ended,
  p50/p95, in stream time: the silence waited plus the detector's lag. The end-of-turn
  model's own compute (one call per pause, which holds the endpointer meanwhile) is
  measured in this process on the same audio and reported beside it; a live turn ends
  that much later on the clock.

Both in all and per language (the issue's goal is on the English items), with each cut-off
item's turn ends and the verdict behind each (why it was cut off).

Configurations: ``turn_detection=silence`` at several ``end_of_speech_ms`` (today's
behaviour, 500 by default: the curve of cut-offs against latency), and ``smart`` at
several ``turn_complete_ms``.

Then the barge-in half (:mod:`loadtests._barge_in`): backchannels, noises and real
interruptions (:mod:`loadtests._overlap_corpus`) streamed over a spoken reply, with
``interruptions`` ``immediate`` (today's rule) and ``confirmed``: false barge-ins, resume
latency, missed barge-ins and stop latency. Writes ``reports/bench_turn_taking.json``.

    .venv/bin/python -m loadtests.bench_turn_taking [--url http://127.0.0.1:8000]
        [--seed 0] [--limit N] [--part all|end-of-turn|barge-in] [--config NAME]
        [--barge-config immediate|confirmed] [--smoke]
    .venv/bin/python -m loadtests.bench_turn_taking --part pauses [--seed 0] [--limit N]

Without ``--url`` it starts the app (Redis if VOXLINE_REDIS_URL is unset, Ray, Serve).

``--part pauses`` starts no app: every pause of the corpus is judged in this process by
the VAD, the end-of-turn model and a quick transcription, as a live session judges it
(:mod:`loadtests._turn_pauses`), and ``reports/bench_turn_pauses.json`` says what the model
and the text cues say inside turns and at their ends: why turns are cut off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from loadtests._barge_in import BARGE_CONFIGS, bench_overlaps
from loadtests._overlap_corpus import OverlapItem, build_overlaps
from loadtests._report import add_smoke_flag, percentiles, smoke_reports, write_report
from loadtests._turn_corpus import RATE, TurnItem, build_corpus
from pipeline.session import TurnEnd, score_against_truth
from voxline.client import VoxlineClient

#: (name, session settings)
CONFIGS: tuple[tuple[str, dict[str, Any]], ...] = (
    *((f"silence {ms}", {"turn_detection": "silence", "end_of_speech_ms": ms})
      for ms in (300, 500, 800, 1200, 1600)),
    *((f"smart {ms}", {"turn_detection": "smart", "turn_complete_ms": ms,
                       "turn_judge": "audio"})
      for ms in (150, 250, 400)),
    ("smart 250 + text", {"turn_detection": "smart", "turn_complete_ms": 250,
                          "turn_judge": "audio", "turn_text_cues": True}),
    ("smart 250 words", {"turn_detection": "smart", "turn_complete_ms": 250,
                         "turn_judge": "text"}),
    ("default", {}),
    # the default's pause was 100 ms until 2026-11-29 (64 now): what the shorter one costs
    ("default, pause 100", {"preemptive_pause_ms": 100}),
)
#: items at most, and seconds at most per item (bounded loops)
MAX_ITEMS = 200
ITEM_TIMEOUT_S = 60.0
#: the quiet after the audio that says the session has nothing more to say, once a turn
#: has ended at or after the item's true end; until then, up to FINAL_WAIT_S (the
#: audio is sent unpaced, and a judge that transcribes every pause holds the endpointer
#: for a few hundred ms a pause, so the last turn can end seconds after the audio is in)
SETTLE_S = 1.0
FINAL_WAIT_S = 10.0
CHUNK_MS = 100
#: error codes the server sent, per item (reported; an item with one is still scored)
ERRORS: dict[str, list[str]] = {}


async def run_item(client: VoxlineClient, item: TurnItem, settings: dict[str, Any]
                   ) -> list[tuple[int, int, float | None]]:
    """Stream ``item`` into a new session; the turns it ended: (speech offset ms, decided
    at ms, end-of-turn probability)."""
    # the item's language: the text cues transcribe (and read) the turn in it
    session = await client.create_session(input_sample_rate=RATE, auto_response=False,
                                          language=item.language, **settings)
    ends: list[tuple[int, int, float | None]] = []
    errors: list[str] = ERRORS.setdefault(item.id, [])
    async with client.connect(session) as conn:
        async def send() -> None:
            step = RATE * 2 * CHUNK_MS // 1000
            for offset in range(0, len(item.pcm16), step):
                await conn.send_audio(item.pcm16[offset : offset + step])

        async def receive() -> None:
            async for event in conn.events():
                if event.type == "input.speech_stopped":
                    data = event.data
                    ends.append((data.audio_ms, data.audio_ms + (data.silence_ms or 0),  # type: ignore[union-attr]
                                 data.end_of_turn))  # type: ignore[union-attr]
                elif event.type == "error":  # e.g. a turn refused as overloaded: counted
                    errors.append(str(event.data.code))  # type: ignore[union-attr]

        receiver = asyncio.create_task(receive())
        try:
            await send()
            seen, waited = -1, 0.0
            while not receiver.done():  # settle: no new turn for a while after the last
                ended = any(decided >= item.end_ms for _, decided, _ in ends)
                if (ended and seen == len(ends)) or waited >= FINAL_WAIT_S:
                    break
                seen = len(ends)
                await asyncio.wait({receiver}, timeout=SETTLE_S)
                waited += SETTLE_S
            if receiver.done():
                receiver.result()
        finally:
            receiver.cancel()
    return ends


def score(items: list[TurnItem], results: list[list[tuple[int, int, float | None]]]
          ) -> dict[str, Any]:
    """False cut-offs and end-of-turn latencies of one configuration (each item's turn
    ends scored against its true end, as the replay evaluation scores logged sessions),
    in all and per language (the issue's goal is on the English items)."""
    scored = [(item, ends, *score_against_truth([TurnEnd(*end) for end in ends], item.end_ms))
              for item, ends in zip(items, results, strict=True)]
    by_kind: dict[str, list[bool]] = {}
    for item, _, cut, _ in scored:
        by_kind.setdefault(f"{item.kind}/{item.language}", []).append(cut)
    cut_off = [(item.id, ends) for item, ends, cut, _ in scored if cut]

    def rates(group: list[tuple[TurnItem, Any, bool, float | None]]) -> dict[str, Any]:
        latencies = [latency for *_, latency in group if latency is not None]
        return {
            "items": len(group),
            "false_cutoff_rate": round(sum(cut for _, _, cut, _ in group) / len(group), 4),
            "end_of_turn_ms": {k: round(v, 1) for k, v in percentiles(latencies).items()},
            "no_end": len(group) - len(latencies),
        }

    languages = sorted({item.language for item in items})
    return {
        **rates(scored),
        "false_cutoff_by_kind": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_kind.items())},
        "by_language": {lang: rates([row for row in scored if row[0].language == lang])
                        for lang in languages},
        "cut_off_items": [item_id for item_id, _ in cut_off[:20]],
        # why: each of those items' turn ends, [speech offset ms, decided at ms, verdict]
        # (no verdict: the pause was judged by no model, e.g. no words heard yet)
        "cut_off_turn_ends": {item_id: [list(end) for end in ends]
                              for item_id, ends in cut_off[:20]},
    }


def model_cost(items: list[TurnItem]) -> dict[str, Any] | None:
    """The end-of-turn model's call on each item's first pause, timed in this process."""
    try:
        from pipeline.engines.turn_detection.smart_turn import SmartTurnDetector

        detector = SmartTurnDetector()
        asyncio.run(detector.load())
    except Exception as exc:  # no model here: reported as such
        return {"error": str(exc)}
    times = []
    for item in items[:40]:
        end = item.speech_ms[0][1] * RATE // 1000 * 2
        audio = item.pcm16[: end + RATE // 5]
        start = time.perf_counter()
        detector.completion_now(audio)
        times.append((time.perf_counter() - start) * 1000)
    return {"calls": len(times), "ms": {k: round(v, 1) for k, v in percentiles(times).items()},
            "mean_ms": round(statistics.mean(times), 1)}


async def bench(url: str, items: list[TurnItem], configs: tuple[tuple[str, dict[str, Any]], ...],
                say: Any, overlaps: list[OverlapItem],
                barge_configs: tuple[tuple[str, dict[str, Any]], ...]) -> dict[str, Any]:
    """Both halves: the end-of-turn configurations, then the barge-in ones."""
    return {"configs": await bench_ends(url, items, configs, say),
            "barge_in": await bench_overlaps(url, overlaps, say, barge_configs)}


async def bench_ends(url: str, items: list[TurnItem],
                     configs: tuple[tuple[str, dict[str, Any]], ...], say: Any
                     ) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with VoxlineClient(url) as client:
        for name, settings in configs:
            started = time.perf_counter()
            results = []
            for item in items:
                results.append(await asyncio.wait_for(run_item(client, item, settings),
                                                       ITEM_TIMEOUT_S))
            figures[name] = {"settings": settings, **score(items, results),
                             "wall_s": round(time.perf_counter() - started, 1)}
            row = figures[name]
            say(f"{name:>12}: false cut-off {row['false_cutoff_rate']:.1%}, end of turn p50 "
                f"{row['end_of_turn_ms']['p50']:.0f} ms p95 {row['end_of_turn_ms']['p95']:.0f}"
                f" ms, no end {row['no_end']}")
            for lang, part in row["by_language"].items():
                say(f"{'':>12}  {lang}: false cut-off {part['false_cutoff_rate']:.1%} of "
                    f"{part['items']}, end of turn p50 {part['end_of_turn_ms']['p50']:.0f} ms")
    return figures


def judge_pauses(items: list[TurnItem], seed: int) -> None:
    """``--part pauses``: every pause judged in this process (see the module docstring)."""
    from loadtests._turn_pauses import pause_verdicts, summarize_pauses
    from pipeline.engines import create_engine

    async def judged() -> list[dict[str, Any]]:
        engines = [create_engine(stage, name, {}) for stage, name in
                   (("vad", "silero"), ("turn", "smart-turn"), ("stt", "language-router"),
                    ("turn_text", "llama-cpp"))]
        for engine in engines:
            await engine.load()
        try:
            return await pause_verdicts(items, *engines)
        finally:
            for engine in engines:
                await engine.close()

    rows = asyncio.run(judged())
    summary = summarize_pauses(rows)
    print(f"{summary['pauses_inside']} pauses inside turns, {summary['ends']} turn ends; "
          f"the words read unfinished at {summary['reads_unfinished_inside']} inside, "
          f"{summary['reads_unfinished_ends']} at ends")
    print(f"model's p in tenths, inside: {summary['p_tenths_inside']}")
    print(f"model's p in tenths, ends:   {summary['p_tenths_ends']}")
    print(f"how well each tells an end from a pause inside (ROC AUC): audio model "
          f"{summary['auc']}, text model {summary['auc_text']}")
    print("threshold  inside / ends called complete: audio model   text model")
    for row, words in zip(summary["rule"], summary["rule_text"], strict=True):
        print(f"{row['threshold']:9.2f}  {row['inside_called_complete']:27d} / "
              f"{row['ends_called_complete']:2d}  {words['inside_called_complete']:7d} / "
              f"{words['ends_called_complete']:2d}")
    report = {"seed": seed, "items": len(items), **summary, "pauses": rows}
    print(f"report: {write_report('bench_turn_pauses', report)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server on this machine; default: start one")
    parser.add_argument("--seed", type=int, default=0, help="the corpus's seed")
    parser.add_argument("--limit", type=int, help=f"items at most per half (≤ {MAX_ITEMS})")
    parser.add_argument("--part", choices=("all", "end-of-turn", "barge-in", "pauses"),
                        default="all")
    parser.add_argument("--config", action="append", default=[],
                        help="only the end-of-turn configurations of these names (repeatable)")
    parser.add_argument("--barge-config", action="append", default=[],
                        choices=[name for name, _ in BARGE_CONFIGS],
                        help="only the barge-in configurations of these names (repeatable)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    limit = min(args.limit or MAX_ITEMS, MAX_ITEMS)
    configs, barge_configs = CONFIGS, BARGE_CONFIGS
    if args.smoke:
        smoke_reports()
        # the scripted app has no end-of-turn model; one backchannel, one interruption
        limit, configs, barge_configs = 3, CONFIGS[1:2], BARGE_CONFIGS[1:]
    if args.config:
        configs = tuple(c for c in configs if c[0] in args.config)
        if not configs:
            parser.error(f"--config: one of {', '.join(name for name, _ in CONFIGS)}")
    if args.barge_config:
        barge_configs = tuple(c for c in barge_configs if c[0] in args.barge_config)
    if args.part == "pauses":
        judge_pauses(build_corpus(args.seed, limit=limit), args.seed)
        return
    if args.part == "barge-in":
        configs = ()
    if args.part == "end-of-turn":
        barge_configs = ()
    items = build_corpus(args.seed, limit=limit) if configs else []
    overlaps = build_overlaps(args.seed, limit=2 if args.smoke else limit) if barge_configs else []
    say = lambda text: print(text, flush=True)  # noqa: E731
    say(f"corpus: {len(items)} turns, {sum(i.duration_ms for i in items) / 1000:.0f} s of "
        f"audio; {len(overlaps)} sounds over a reply")
    if args.smoke:
        from loadtests._gateway import child_gateway
        from voxline.redis_server import redis_url_or_server

        with redis_url_or_server(os.environ.get("VOXLINE_REDIS_URL")) as redis_url, \
                child_gateway(redis_url) as (url, _pid):
            figures = asyncio.run(bench(url, items, configs, say, overlaps, barge_configs))
    elif args.url:
        figures = asyncio.run(bench(args.url.rstrip("/"), items, configs, say, overlaps,
                                    barge_configs))
    else:
        from schemas import Settings
        from voxline.redis_server import free_port
        from voxline.server import running_server

        # ports of its own: a server the user runs (8000, 9464) is never touched
        settings = Settings().model_copy(update={"host": "127.0.0.1", "port": free_port(),
                                                 "metrics_port": free_port()})
        with running_server(settings, say=say) as server:
            figures = asyncio.run(bench(server.url, items, configs, say, overlaps,
                                        barge_configs))
    report = {
        "seed": args.seed,
        "corpus": {"items": len(items),
                   "kinds": {k: sum(i.kind == k for i in items)
                             for k in ("complete", "paused", "filler")},
                   "audio_s": round(sum(i.duration_ms for i in items) / 1000, 1)},
        "overlaps": {"items": len(overlaps),
                     "kinds": {k: sum(o.kind == k for o in overlaps)
                               for k in ("backchannel", "noise", "interruption")}},
        **figures,
        "end_of_turn_model_call": None if args.smoke or not items else model_cost(items),
        "server_errors": {k: v for k, v in ERRORS.items() if v},
    }
    print(f"report: {write_report('bench_turn_taking', report)}")


if __name__ == "__main__":
    main()
