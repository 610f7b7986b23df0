"""Headline rows of the engine benchmarks (threads, the language model's parallel
sequences, the VAD, the transcriber's batches and window), for :mod:`loadtests.figures`,
with the two helpers every extractor reads a report with: each row reads its kept report,
and a figure the report lacks shows as "—"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Row = tuple[str, str, str]  # figure, value, goal

_STAGES = {"stt": "STT (tiny.en, the turn corpus)", "llm": "LLM (Gemma 3 270M, the capacity "
           "questions)", "tts": "TTS (Piper, the answers)"}
_VAD_CONFIGS = {"none": "feeding alone", "v6_per_stream": "one stream a call (silero-vad-v6)",
                "batched_ungated": "sessions batched, every frame to the model",
                "batched": "sessions batched, the silence gate on (the default)"}


def get(tree: Any, *path: str | int) -> Any:
    """``tree[path[0]][path[1]]...``, or None where a step is missing."""
    for step in path:
        if isinstance(tree, dict) and isinstance(step, str):
            tree = tree.get(step)
        elif isinstance(tree, list) and isinstance(step, int) and -len(tree) <= step < len(tree):
            tree = tree[step]
        else:
            return None
    return tree


def num(value: Any, unit: str = "", digits: int = 0) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    return f"{value:,.{digits}f}{unit}"


def spread(found: Any) -> str:
    """``"p50 / p95"`` of a percentiles dict (a dash for each one missing)."""
    return f"{num(get(found, 'p50'))} / {num(get(found, 'p95'))}"


def threads(figures: dict[str, Any]) -> Iterator[Row]:
    counts = [str(n) for n in figures.get("threads") or []]
    busy = figures.get("busy") or 0
    where = f", {busy} core(s) kept busy" if busy else ""
    for stage, name in _STAGES.items():
        runs = (figures.get("stages") or {}).get(stage) or {}
        value = " → ".join(
            f"{num((runs.get(n) or {}).get('wall_ms_mean'))} / "
            f"{num((runs.get(n) or {}).get('cpu_ms_mean'))}" for n in counts)
        yield (f"{name}: ms of wall / CPU a call at {' → '.join(counts)} thread(s){where}",
               value, "")


def llm_parallel(figures: dict[str, Any]) -> Iterator[Row]:
    raw = sorted(figures.get("raw") or [], key=lambda run: run.get("k", 0))
    if not raw:
        return
    ks = " / ".join(str(run.get("k")) for run in raw)
    tokens, count = figures.get("tokens"), figures.get("threads")
    yield (f"LLM: {tokens}-token replies decoded together by one llama.cpp context "
           f"({count} threads), tokens/s in all at k = {ks}",
           " / ".join(num(run.get("tokens_per_s_total"), digits=1) for run in raw), "")
    yield (f"LLM, the same: tokens/s of each reply at k = {ks}",
           " / ".join(num(run.get("tokens_per_s_per_sequence"), digits=1) for run in raw), "")
    yield (f"LLM, the same: greedy replies as decoded alone at k = {ks}",
           " / ".join(_of(run.get("sequences_same_as_alone"), run.get("k")) for run in raw),
           "")


def vad(figures: dict[str, Any]) -> Iterator[Row]:
    model = figures.get("model_us_per_frame") or {}
    for export, sizes in model.items():
        batches = " / ".join(str(size) for size in sizes)
        yield (f"VAD model call ({export}), µs a frame at {batches} frame(s) a call",
               " / ".join(num(us, digits=0) for us in sizes.values()), "")
    idle = figures.get("idle") or {}
    for config, name in _VAD_CONFIGS.items():
        runs = idle.get(config) or []
        if not runs:
            continue
        sessions = " / ".join(str(run.get("sessions")) for run in runs)
        yield (f"idle sessions sending silence, {name}: ms of CPU a session-second at "
               f"{sessions} sessions",
               " / ".join(num(run.get("cpu_ms_per_session_s_at_real_time"), digits=2)
                          for run in runs), "")


def stt_batch(figures: dict[str, Any]) -> Iterator[Row]:
    for model, found in figures.items():
        requests = found.get("requests") if isinstance(found, dict) else None
        if not isinstance(requests, dict):
            continue
        sizes = [size for size in requests if size.isdigit()]
        where = f"N = {' / '.join(sizes)}"
        for mode, name in (("on", "batched"), ("off", "one by one")):
            yield (f"STT ({model}): N turns asked together, all done after (s), {name}, "
                   f"{where}", " / ".join(num((requests[n].get(mode) or {}).get(
                       "last_done_s"), digits=3) for n in sizes), "")
        yield (f"STT ({model}): the same, CPU-s of the round, batched ÷ one by one, {where}",
               " / ".join(_ratio((requests[n].get("on") or {}).get("cpu_s_last_round"),
                                 (requests[n].get("off") or {}).get("cpu_s_last_round"))
                          for n in sizes), "")


def stt_window(figures: dict[str, Any]) -> Iterator[Row]:
    windows = figures.get("windows") or {}
    model, seconds = figures.get("model"), " / ".join(windows)
    yield (f"STT ({model}, {figures.get('language')}): word error rate at a window of "
           f"{seconds} s", " / ".join(num(get(w, "wer") * 100 if get(w, "wer") is not None
                                          else None, " %", 1) for w in windows.values()), "")
    yield (f"STT ({model}): ms of wall (p50) / CPU-s a call at {seconds} s",
           " / ".join(f"{num(get(w, 'wall_ms_p50'))} ms" for w in windows.values()) + "; "
           + " / ".join(num(get(w, "cpu_s_per_call"), digits=2) for w in windows.values()), "")
    yield (f"STT ({model}): the France question misheard at {seconds} s",
           " / ".join(_of(get(w, "france_misheard"), get(w, "france_renditions"))
                      for w in windows.values()), "")


def _ratio(ours: Any, theirs: Any) -> str:
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float) or not theirs:
        return "—"
    return f"{ours / theirs:.2f}"


def _of(part: Any, whole: Any) -> str:
    return "—" if part is None or whole is None else f"{part} of {whole}"


def judged(figures: dict[str, Any]) -> Iterator[Row]:
    """A report's ``goals`` as the benchmark judged them (``value``, ``met``)."""
    for name, goal in (figures.get("goals") or {}).items():
        if isinstance(goal, dict) and "value" in goal:
            value = goal["value"]
            met = {True: " (met)", False: " (not met)"}.get(goal.get("met"), "")
            yield (name.replace("_", " "), num(value, digits=2 if isinstance(value, float)
                                                 else 0) + met, "")


def log_footprint(figures: dict[str, Any]) -> Iterator[Row]:
    for kind, found in (figures.get("kinds") or {}).items():
        per_hour = get(found, "stream_memory_bytes_per_session_hour")
        yield (f"{kind} session: events a turn, events/s, stream KB a turn, stream MB per "
               "session-hour",
               f"{num(get(found, 'events_per_turn'), digits=1)}, "
               f"{num(get(found, 'events_per_s'), digits=1)}, "
               f"{num(_scaled(get(found, 'stream_memory_bytes_per_turn'), 1e3), digits=1)}, "
               f"{num(_scaled(per_hour, 1e6), digits=1)}", "")


def worker_folds(figures: dict[str, Any]) -> Iterator[Row]:
    """The narration and re-transcription workers' CPU per turn late in a long call."""
    whole = (get(figures, "whole_log", "points") or [{}])[-1]
    folded = (get(figures, "folds", "points") or [{}])[-1]
    yield (f"background workers' CPU per turn at turn {whole.get('turn', '?')} of a call, "
           "ms in their process + in Redis: folded on from the last entry; the whole log",
           f"{num(folded.get('workers_cpu_ms_per_turn'), digits=1)} + "
           f"{num(folded.get('redis_cpu_ms_per_turn'), digits=1)}; "
           f"{num(whole.get('workers_cpu_ms_per_turn'), digits=1)} + "
           f"{num(whole.get('redis_cpu_ms_per_turn'), digits=1)}", "")


def _scaled(value: Any, by: float) -> Any:
    return value / by if isinstance(value, int | float) else None
