"""Tool calls on the packaged CPU model: does it call the right tool with valid arguments?

Six tools (weather, alarms, a shopping list, currency, music, a timer) and typed requests
(most needing one tool, some none) go to the LLM engine as chat completions send them,
greedy, under two choices:

* ``required``: the model must call one of the tools. Scored: arguments valid against
  the tool's schema (goal 100 %: a grammar constrains them) and the tool chosen right
  (goal ≥ 85 %);
* ``auto``: the model chooses. Scored: called when a tool was needed, no call when none
  was, arguments valid.

Beside the scores, each reply's time (p50, p95). Then the live part
(:mod:`loadtests._tools_live`, on a Redis of its own): ``--spoken`` requests spoken into
live sessions on the CPU engines (end of speech → call started, output → answer audio,
the filler of a slow tool), ``--crash`` seeded replica kills and ``--barge`` seeded
barge-ins during a side-effect tool (duplicated side effects, goal 0). Writes
``reports/bench_tools_<label>.json`` and a PNG of the scores beside it.

    python -m loadtests.bench_tools [--label after] [--limit 42] [--spoken 12] [--crash 20]
        [--filler 4] [--barge 10] [--smoke]

Bounded by the request lists and ``max_tokens``; about six minutes on two idle cores.
``--smoke`` asks two requests under each choice, speaks one, and runs two trials of each
kind (its figures mean little): it checks that every part runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from loadtests._report import add_smoke_flag, percentiles, smoke_reports, write_report

_OBJECT = "object"
TOOLS: list[dict[str, Any]] = [
    {"name": "get_weather", "description": "The weather now in a city.",
     "parameters": {"type": _OBJECT, "properties": {"city": {"type": "string"}},
                    "required": ["city"], "additionalProperties": False}},
    {"name": "set_alarm", "description": "Set an alarm clock for a time of day.",
     "parameters": {"type": _OBJECT, "properties": {
         "hour": {"type": "integer", "minimum": 0, "maximum": 23},
         "minute": {"type": "integer", "minimum": 0, "maximum": 59}},
         "required": ["hour", "minute"], "additionalProperties": False}},
    {"name": "add_to_shopping_list", "description": "Add an item to the shopping list.",
     "parameters": {"type": _OBJECT, "properties": {"item": {"type": "string"}},
                    "required": ["item"], "additionalProperties": False}},
    {"name": "convert_currency", "description": "Convert an amount of money.",
     "parameters": {"type": _OBJECT, "properties": {
         "amount": {"type": "number"}, "from_currency": {"type": "string"},
         "to_currency": {"type": "string"}},
         "required": ["amount", "from_currency", "to_currency"],
         "additionalProperties": False}},
    {"name": "play_music", "description": "Play a song, an artist or a genre.",
     "parameters": {"type": _OBJECT, "properties": {"query": {"type": "string"}},
                    "required": ["query"], "additionalProperties": False}},
    {"name": "start_timer", "description": "Start a countdown timer.",
     "parameters": {"type": _OBJECT, "properties": {
         "minutes": {"type": "integer", "minimum": 1, "maximum": 600}},
         "required": ["minutes"], "additionalProperties": False}},
]
#: (request, the tool it needs or None)
REQUESTS: list[tuple[str, str | None]] = [
    ("What is the weather in Paris?", "get_weather"),
    ("Is it raining in London right now?", "get_weather"),
    ("How hot is it in Cairo today?", "get_weather"),
    ("Tell me the weather in Tokyo.", "get_weather"),
    ("Do I need an umbrella in Seattle?", "get_weather"),
    ("Wake me up at seven in the morning.", "set_alarm"),
    ("Set an alarm for 6:30.", "set_alarm"),
    ("I need an alarm at half past eight.", "set_alarm"),
    ("Alarm for 22:15 please.", "set_alarm"),
    ("Put milk on my shopping list.", "add_to_shopping_list"),
    ("Add eggs to the shopping list.", "add_to_shopping_list"),
    ("Remind me to buy bread: add it to the list.", "add_to_shopping_list"),
    ("We are out of coffee, add it to the shopping list.", "add_to_shopping_list"),
    ("How much is 100 dollars in euros?", "convert_currency"),
    ("Convert 50 euros to yen.", "convert_currency"),
    ("What are 20 pounds in dollars?", "convert_currency"),
    ("Change 75 Swiss francs into euros.", "convert_currency"),
    ("Play some jazz.", "play_music"),
    ("Put on Bohemian Rhapsody.", "play_music"),
    ("I want to hear the Beatles.", "play_music"),
    ("Play relaxing piano music.", "play_music"),
    ("Start a timer for ten minutes.", "start_timer"),
    ("Set a 5 minute timer.", "start_timer"),
    ("Count down twenty minutes for the pasta.", "start_timer"),
    ("Timer, 3 minutes.", "start_timer"),
    ("What is the weather like in Berlin tomorrow?", "get_weather"),
    ("Set my alarm for noon.", "set_alarm"),
    ("Add two apples to my shopping list.", "add_to_shopping_list"),
    ("How many yen is one dollar?", "convert_currency"),
    ("Play the latest song by Adele.", "play_music"),
    ("Give me a timer of 45 minutes.", "start_timer"),
    ("Is it sunny in Madrid?", "get_weather"),
    ("What is the capital of France?", None),
    ("Who wrote Romeo and Juliet?", None),
    ("How many legs does a spider have?", None),
    ("Tell me a joke.", None),
    ("Thank you!", None),
    ("What is two plus two?", None),
    ("Hello, how are you?", None),
    ("What colour is the sky?", None),
    ("Good night.", None),
    ("What is the largest ocean?", None),
]
SYSTEM = "You are a helpful voice assistant. Answer briefly."


async def ask(llm: Any, text: str, mode: str) -> dict[str, Any]:
    """One request under ``mode``: the call made (or words), its validity, the time."""
    import jsonschema

    from schemas import (
        ChatMessage,
        EngineError,
        GenerationRequest,
        SamplingSettings,
        ToolCallDelta,
        ToolChoice,
        ToolFunction,
    )

    request = GenerationRequest(
        request_id="bench-tools", tools=tuple(ToolFunction(**tool) for tool in TOOLS),
        tool_choice=ToolChoice(mode=mode),  # type: ignore[arg-type]
        sampling=SamplingSettings(temperature=0.0, max_tokens=80),
        messages=(ChatMessage(role="system", content=SYSTEM),
                  ChatMessage(role="user", content=text)))
    started = time.perf_counter()
    words, calls = [], []
    try:
        async for item in llm.generate(request):
            (calls if isinstance(item, ToolCallDelta) else words).append(item)
    except EngineError as exc:  # a call cut by max_tokens: counted, not fatal
        return {"called": None, "valid": None, "incomplete": exc.message,
                "s": time.perf_counter() - started}
    seconds = time.perf_counter() - started
    if not calls:
        return {"called": None, "valid": None, "words": "".join(words), "s": seconds}
    call = calls[0]
    schema = next(t["parameters"] for t in TOOLS if t["name"] == call.name)
    try:
        jsonschema.validate(json.loads(call.arguments), schema)
        valid = True
    except (ValueError, jsonschema.ValidationError):
        valid = False
    return {"called": call.name, "arguments": call.arguments, "valid": valid, "s": seconds}


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def score(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The scores of one choice's results (each with its ``needed`` tool)."""
    needing = [r for r in results if r["needed"]]
    calls = [r for r in results if r["called"]]
    return {
        "requests": len(results),
        "calls": len(calls),
        "incomplete_calls": sum("incomplete" in r for r in results),
        "valid_arguments_pct": _pct(sum(bool(r["valid"]) for r in calls), len(calls)),
        "chosen_right_pct": _pct(sum(r["called"] == r["needed"] for r in needing),
                                 len(needing)),
        "called_when_needed_pct": _pct(sum(bool(r["called"]) for r in needing), len(needing)),
        "no_call_when_none_needed_pct": _pct(
            sum(not r["called"] for r in results if not r["needed"]),
            sum(not r["needed"] for r in results)),
        "seconds": percentiles([r["s"] for r in results]),
    }


def plot(figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["valid_arguments_pct", "chosen_right_pct", "called_when_needed_pct",
             "no_call_when_none_needed_pct"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.38
    for offset, mode in ((-width / 2, "required"), (width / 2, "auto")):
        values = [figures[mode][n] or 0 for n in names]
        ax.bar([i + offset for i in range(len(names))], values, width, label=mode)
    ax.set_xticks(range(len(names)), [n.removesuffix("_pct").replace("_", " ")
                                      for n in names], fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.axhline(85, color="grey", linestyle=":", linewidth=1)
    ax.set_title(f"Tool calls, {figures['model']} ({figures['requests']} requests)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


async def run(limit: int) -> dict[str, Any]:
    from pipeline.engines.llm.llama_cpp import LlamaCppLanguageModel

    llm = LlamaCppLanguageModel(n_ctx=2048, n_threads=1, parallel_sequences=1)
    await llm.load()
    chosen = REQUESTS[: limit // 2] + REQUESTS[-(limit - limit // 2):] if limit < len(
        REQUESTS) else REQUESTS
    figures: dict[str, Any] = {"model": llm.name, "requests": len(chosen)}
    try:
        for mode in ("required", "auto"):
            asked = [r for r in chosen if r[1] or mode == "auto"]
            results = []
            for text, needed in asked:
                result = await ask(llm, text, mode)
                results.append({"request": text, "needed": needed, **result})
                made = result["called"] or ("CUT" if "incomplete" in result else "words")
                print(f"{mode:8} {text[:44]:44} -> {made}"
                      f"{'' if result['valid'] in (None, True) else ' (INVALID)'}")
            figures[mode] = score(results)
            figures[f"{mode}_results"] = results
    finally:
        await llm.close()
    return figures


def spoken_requests(count: int) -> list[tuple[str, str]]:
    """``count`` requests that need a tool, taking each tool's in turn."""
    by_tool: dict[str, list[str]] = {}
    for text, needed in REQUESTS:
        if needed:
            by_tool.setdefault(needed, []).append(text)
    rounds = zip(*by_tool.values(), strict=False)
    chosen = [(text, tool) for row in rounds for text, tool in zip(row, by_tool, strict=True)]
    return chosen[:count]


def live_scores(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The spoken requests' figures (``slow``: those that called the slow tool)."""
    called = [r for r in results if r["called"]]
    slow = [r for r in results if r["called"] == "get_weather"]  # the slow tool, called

    def ms(key: str, rows: list[dict[str, Any]]) -> dict[str, float] | None:
        values = [r[key] / 1000 for r in rows if r.get(key) is not None]
        return {k: round(v * 1000) for k, v in percentiles(values).items()} if values else None

    return {
        "requests": len(results),
        "called_pct": _pct(len(called), len(results)),
        "valid_arguments_pct": _pct(sum(bool(r["valid"]) for r in called), len(called)),
        "chosen_right_pct": _pct(sum(r["called"] == r["needed"] for r in results),
                                 len(results)),
        "speech_to_call_started_ms": ms("speech_to_call_ms", results),
        "output_to_answer_audio_ms": ms("output_to_answer_audio_ms", results),
        "slow_tool_speech_to_first_audio_ms": ms("speech_to_first_audio_ms", slow),
        "filler_within_1s": sum((r.get("speech_to_first_audio_ms") or 10**9) <= 1000
                                for r in slow),
        "slow_requests": len(slow),
    }


async def live(spoken_count: int, filler_count: int, crash_trials: int,
               barge_trials: int) -> dict[str, Any]:
    from loadtests import _tools_live
    from voxline.redis_server import redis_url_or_server

    figures: dict[str, Any] = {}
    with redis_url_or_server(None) as url:  # a server of its own: nothing of a user's
        results = await _tools_live.spoken(url, "bench-tools", TOOLS,
                                           spoken_requests(spoken_count), SYSTEM)
        figures["spoken"] = live_scores(results)
        figures["spoken_results"] = results
        weather = [(text, tool) for text, tool in REQUESTS if tool == "get_weather"]
        slow = await _tools_live.spoken(url, "bench-tools", TOOLS, weather[:filler_count],
                                        SYSTEM, {"type": "function", "name": "get_weather"})
        figures["filler"] = live_scores(slow)
        figures["filler_results"] = slow
        figures["crash"] = await _tools_live.crash(url, "bench-tools", crash_trials)
        figures["barge_in"] = await _tools_live.barge_in(url, "bench-tools", barge_trials)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="run")
    parser.add_argument("--limit", type=int, default=len(REQUESTS))
    parser.add_argument("--spoken", type=int, default=12, help="spoken requests")
    parser.add_argument("--filler", type=int, default=4, help="spoken requests of a slow tool")
    parser.add_argument("--crash", type=int, default=20, help="replica-kill trials")
    parser.add_argument("--barge", type=int, default=10, help="barge-in trials a policy")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.limit, args.label, args.spoken, args.crash, args.barge = 2, "smoke", 1, 2, 2
        args.filler = 1
    figures = asyncio.run(run(args.limit))
    figures.update(asyncio.run(live(args.spoken, args.filler, args.crash, args.barge)))
    for mode in ("required", "auto"):
        print(f"{mode}: " + json.dumps({k: v for k, v in figures[mode].items()
                                        if k != "seconds"}))
    for part in ("spoken", "filler", "crash", "barge_in"):
        print(f"{part}: " + json.dumps(figures[part]))
    path = write_report(f"bench_tools_{args.label}", figures)
    plot(figures, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")


if __name__ == "__main__":
    main()
