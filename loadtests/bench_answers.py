"""Answer quality of the packaged CPU model: a sheet of short factual questions, scored.

Each question of ``loadtests/data/answer_sheet.json`` goes to the LLM engine exactly as a
live turn sends it (the session's default system prompt and sampling, a fresh dialogue),
the reply goes through the sentence buffer as the TTS would get it, and the *spoken* text
is scored: right when it contains one of the expected answers as whole words (case and
punctuation ignored). Beside the score it counts replies that would speak markup (tags,
asterisks, backticks, hashes) or a speaker label ("User:", "You:" ...), and reply length.

    python -m loadtests.bench_answers [--label after] [--limit 36] [--seed 1]
        [--options '{"max_temperature": 0}'] [--system-prompt "..."] [--smoke]

Writes ``reports/bench_answers_<label>.json``. Sampling keeps its default temperature with
a fixed seed per question, so two runs on the same code give the same replies. Goal (issue
15): score ≥ 80 % with no markup spoken. Bounded by the sheet (36 questions) and
``max_tokens``; about a minute on two idle cores. ``--smoke`` asks three questions of a
scripted LLM (its score means nothing): it checks the asking, cutting and scoring run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from loadtests._report import add_smoke_flag, smoke_reports, write_report

SHEET = Path(__file__).resolve().parent / "data" / "answer_sheet.json"
#: What a voice must never say: tags, emphasis, code marks, headings, table bars.
MARKUP = re.compile(r"</?[A-Za-z][^>]{0,20}>|[*`#|_~]|\[|\]")
#: A speaker label anywhere in the reply: the model wrote the next turn itself.
LABEL = re.compile(r"\b(?:User|You|Assistant|System|Human|AI|Q|A)\s*:", re.IGNORECASE)


def load_sheet(path: Path = SHEET) -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["questions"]
    return questions


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def is_right(spoken: str, expected: list[str]) -> bool:
    """The spoken reply contains one of ``expected`` as whole words."""
    said = _words(spoken)
    return any(_words(answer) in said for answer in expected)


async def ask(
    llm: Any, question: str, seed: int, system_prompt: str | None = None
) -> tuple[str, float, list[tuple[float, str]]]:
    from schemas import ChatMessage, GenerationRequest, SessionSettings

    settings = SessionSettings()
    if system_prompt is not None:
        settings = settings.model_copy(update={"system_prompt": system_prompt})
    request = GenerationRequest(
        request_id=f"answers-{seed}",
        messages=[
            ChatMessage(role="system", content=settings.system_prompt),
            ChatMessage(role="user", content=question),
        ],
        sampling=settings.sampling.model_copy(update={"seed": seed}),
    )
    started = time.perf_counter()
    timed = [(time.perf_counter() - started, delta) async for delta in llm.generate(request)]
    return "".join(d for _, d in timed), time.perf_counter() - started, timed


def first_piece_s(timed: list[tuple[float, str]], config: Any) -> float | None:
    """When the sentence buffer with ``config`` cut the first piece (stream time, s)."""
    from pipeline.reply import SentenceBuffer

    buffer = SentenceBuffer(config)
    for at, delta in timed:
        if buffer.push(delta):
            return at
    return timed[-1][0] if timed and buffer.flush() else None


async def run(
    limit: int, seed: int, options: dict[str, Any], system_prompt: str | None,
    llm: Any = None,
) -> dict[str, Any]:
    """The sheet's first ``limit`` questions to ``llm`` (default: llama-cpp with ``options``)."""
    from pipeline.engines import create_engine
    from pipeline.reply import ReplyConfig, SentenceBufferConfig, split_text

    voice_first_piece = ReplyConfig().sentences  # the live turn's first-piece rule
    llm = llm or create_engine("llm", "llama-cpp", options)
    await llm.load()
    rows: list[dict[str, Any]] = []
    try:
        await ask(llm, "Hello?", seed)  # warm-up: caches, threads
        for item in load_sheet()[:limit]:
            reply, seconds, timed = await ask(llm, item["q"], seed, system_prompt)
            spoken = " ".join(split_text(reply, SentenceBufferConfig(language="en")))
            rows.append({
                "question": item["q"],
                "expected": item["expected"],
                "reply": reply,
                "spoken": spoken,
                "right": is_right(spoken, item["expected"]),
                "markup_spoken": bool(MARKUP.search(spoken)),
                "label_spoken": bool(LABEL.search(spoken)),
                "words": len(spoken.split()),
                "seconds": round(seconds, 3),
                # the old first-piece rule (a clause after 5 words) and the voice one
                "first_piece_s": {
                    "clause5": first_piece_s(timed, SentenceBufferConfig()),
                    "voice": first_piece_s(timed, voice_first_piece),
                },
            })
            mark = "ok " if rows[-1]["right"] else "-- "
            print(f"{mark}{item['q']!r} -> {spoken!r}", flush=True)
    finally:
        await llm.close()
    n = len(rows)
    return {
        "questions": n,
        "right": sum(r["right"] for r in rows),
        "score": sum(r["right"] for r in rows) / n if n else 0.0,
        "markup_spoken": sum(r["markup_spoken"] for r in rows),
        "label_spoken": sum(r["label_spoken"] for r in rows),
        "median_words": statistics.median(r["words"] for r in rows) if rows else 0,
        "median_seconds": statistics.median(r["seconds"] for r in rows) if rows else 0,
        "first_piece_p50_s": {
            rule: statistics.median(
                r["first_piece_s"][rule] for r in rows if r["first_piece_s"][rule] is not None
            ) if rows else None
            for rule in ("clause5", "voice")
        },
        "seed": seed,
        "engine_options": options,
        "system_prompt": system_prompt,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="current", help="report name suffix (before/after)")
    parser.add_argument("--limit", type=int, default=100, help="first N questions of the sheet")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--options", default="{}",
                        help="llama-cpp engine options as JSON (to compare settings)")
    parser.add_argument("--system-prompt", help="instead of the session's default")
    add_smoke_flag(parser)
    args = parser.parse_args()
    llm = None
    if args.smoke:
        from loadtests._scripted import ScriptedLLM, tokenize
        from pipeline.engines import engine_class

        engine_class("llm", "llama-cpp")  # the real engine still resolves (not loaded)
        smoke_reports()
        args.limit, args.label = 3, "smoke"
        llm = ScriptedLLM(tokenize("The capital of France is Paris. It lies on the Seine."))
    figures = asyncio.run(
        run(max(1, args.limit), args.seed, json.loads(args.options), args.system_prompt, llm)
    )
    path = write_report(f"bench_answers_{args.label}", figures)
    print(
        f"score {figures['right']}/{figures['questions']} = {figures['score']:.0%}; "
        f"markup spoken in {figures['markup_spoken']}, a speaker label in "
        f"{figures['label_spoken']}; median {figures['median_words']} words, "
        f"{figures['median_seconds']:.2f} s per reply; first piece cut p50 "
        f"{figures['first_piece_p50_s']} -> {path}"
    )


if __name__ == "__main__":
    main()
