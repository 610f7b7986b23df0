"""``voxline evaluate``'s report: a JSON file, its HTML twin with bar charts, and the
thresholds that gate a deployment (``--fail-if``).

A threshold is ``[CANDIDATE.]METRIC>VALUE`` (or ``<``): without a candidate it holds for
every one. A metric a candidate has no figure for (no utterance transcribed, no turn) does
not cross it, and is said. The charts are plain SVG written here: the report opens in any
browser, offline, with no plotting library installed.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import ConfigurationError

__all__ = ["METRICS", "Threshold", "crossed", "html_report", "parse_threshold", "write_report"]

Getter = Callable[[dict[str, Any]], Any]


def _at(*path: str) -> Getter:
    def get(candidate: dict[str, Any]) -> Any:
        value: Any = candidate
        for step in path:
            value = value.get(step) if isinstance(value, dict) else None
        return value
    return get


#: metric → where a candidate's figure is (lower is better for most; turns, backchannels and
#: barge-ins say what happened, and a threshold on them says which way is worse)
METRICS: dict[str, Getter] = {
    "wer_vs_logged": _at("transcripts", "wer_vs_logged"),
    "wer_vs_reference": _at("transcripts", "wer_vs_reference"),
    "changed_rate": _at("transcripts", "changed_rate"),
    "stt_p50_ms": _at("transcripts", "stt_ms", "p50"),
    "stt_p95_ms": _at("transcripts", "stt_ms", "p95"),
    "answer_similarity": _at("answers", "similarity"),
    "answers_changed_rate": _at("answers", "changed_rate"),
    "calls_changed": _at("answers", "calls_changed"),
    "answer_p95_ms": _at("answers", "answer_ms", "p95"),
    "tts_first_chunk_p50_ms": _at("speech", "first_chunk_ms", "p50"),
    "tts_real_time_factor": _at("speech", "real_time_factor"),
    "heard_back_wer": _at("speech", "heard_back_wer"),
    "voice_to_voice_p50_ms": _at("voice_to_voice_estimate", "p50"),
    "voice_to_voice_p95_ms": _at("voice_to_voice_estimate", "p95"),
    "turns": _at("turn_taking", "turns"),
    "continued_rate": _at("turn_taking", "continued_rate"),
    "missed_rate": _at("turn_taking", "missed_rate"),
    "backchannels": _at("turn_taking", "backchannels"),
    "barge_ins": _at("turn_taking", "barge_ins"),
    "overlaps_changed": _at("turn_taking", "overlaps_changed"),
    "silence_waited_p50_ms": _at("turn_taking", "silence_waited_ms", "p50"),
    "silence_waited_p95_ms": _at("turn_taking", "silence_waited_ms", "p95"),
}
_THRESHOLD = re.compile(r"^(?:(?P<who>[A-Za-z0-9_.-]+?)\.)?(?P<metric>[a-z0-9_]+)\s*"
                        r"(?P<op>[<>])\s*(?P<value>-?[0-9.]+)$")


@dataclass(frozen=True)
class Threshold:
    metric: str
    above: bool  # ">": crossed when the figure is above value
    value: float
    candidate: str | None = None

    def __str__(self) -> str:
        who = f"{self.candidate}." if self.candidate else ""
        return f"{who}{self.metric}{'>' if self.above else '<'}{self.value:g}"


def parse_threshold(text: str) -> Threshold:
    found = _THRESHOLD.match(text.strip())
    if found is None or found["metric"] not in METRICS:
        raise ConfigurationError(
            f"{text!r} is not [CANDIDATE.]METRIC>VALUE or <VALUE with a metric of "
            f"{', '.join(METRICS)}", setting="--fail-if")
    try:
        value = float(found["value"])
    except ValueError:
        raise ConfigurationError(f"{text!r}: {found['value']!r} is not a number",
                                 setting="--fail-if") from None
    return Threshold(found["metric"], found["op"] == ">", value, found["who"])


def crossed(report: dict[str, Any], thresholds: list[Threshold]) -> tuple[list[str], list[str]]:
    """(the thresholds crossed, the figures missing), as lines to print."""
    hits, missing = [], []
    candidates: dict[str, Any] = report["candidates"]
    for threshold in thresholds:
        names = [threshold.candidate] if threshold.candidate else list(candidates)
        for name in names:
            if name not in candidates:
                raise ConfigurationError(f"--fail-if {threshold}: no candidate {name!r}",
                                         setting="--fail-if")
            figure = METRICS[threshold.metric](candidates[name])
            if figure is None:
                missing.append(f"{name}: no {threshold.metric} to check {threshold} against")
            elif (figure > threshold.value) if threshold.above else (figure < threshold.value):
                hits.append(f"{name}: {threshold.metric} {figure:g} crosses {threshold}")
    return hits, missing


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``out/evaluation.json`` and ``out/evaluation.html``."""
    out.mkdir(parents=True, exist_ok=True)
    data = out / "evaluation.json"
    data.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    page = out / "evaluation.html"
    page.write_text(html_report(report), encoding="utf-8")
    return data, page


def html_report(report: dict[str, Any]) -> str:
    """The report as one HTML page: tables, bar charts as inline SVG, no script."""
    candidates: dict[str, Any] = report["candidates"]
    head = "".join(f"<th>{html.escape(name)}</th>" for name in candidates)
    # what the sessions did: their turn-taking replayed as logged, their logged overlaps
    as_logged = {"turn_taking": report.get("logged", {}).get("turn_taking")}
    rows = "".join(
        f"<tr><td>{metric}</td><td>{_cell(get(as_logged))}</td>"
        + "".join(f"<td>{_cell(get(c))}</td>" for c in candidates.values()) + "</tr>"
        for metric, get in METRICS.items()
        if any(get(c) is not None for c in candidates.values()))  # what no candidate tried
    charted = {metric: {name: METRICS[metric](c) for name, c in candidates.items()}
               for metric in ("wer_vs_logged", "wer_vs_reference", "answer_similarity",
                              "heard_back_wer", "continued_rate", "stt_p95_ms")}
    charts = "".join(_chart(metric, values) for metric, values in charted.items()
                     if any(v is not None for v in values.values()))
    logged = report.get("logged", {}).get("transcripts") or {}
    truth = (f"<p>The logged transcripts against {logged['with_reference']} reference(s): "
             f"word error rate {_cell(logged.get('wer_vs_reference'))}.</p>"
             if logged.get("with_reference") else "")
    examples = "".join(
        f"<h3>{html.escape(name)}</h3><ul>" + "".join(
            f"<li>logged: {html.escape(e['logged'])}<br>heard: {html.escape(e['heard'])}</li>"
            for e in (c.get("transcripts") or {}).get("examples", [])) + "</ul>"
        for name, c in candidates.items())
    answers = "".join(
        f"<h3>{html.escape(name)}</h3><ul>" + "".join(
            f"<li>logged: {html.escape(e['logged'])}<br>answered: {html.escape(e['answered'])}"
            f" (similarity {_cell(e['similarity'])})</li>"
            for e in (c.get("answers") or {}).get("examples", [])) + "</ul>"
        for name, c in candidates.items() if c.get("answers"))
    logged_ms = report.get("logged", {}).get("latency_ms") or {}
    offline = report.get("logged", {}).get("offline") or {}
    latency = "".join(
        f"<tr><td>{stage}</td><td>{_spread_cell(logged_ms.get(stage))}</td>"
        f"<td>{_spread_cell(RERUN[stage](offline) if stage in RERUN else None)}</td>"
        + "".join(f"<td>{_spread_cell(RERUN[stage](c) if stage in RERUN else None)}</td>"
                  for c in candidates.values()) + "</tr>"
        for stage in logged_ms)
    status = "" if report.get("complete", True) else \
        "<p><strong>Incomplete: the time budget ran out, or a candidate failed.</strong></p>"
    status += "".join(f"<p><strong>{html.escape(name)} failed:</strong> "
                      f"{html.escape(str(c['error']))}</p>"
                      for name, c in candidates.items() if c.get("error"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Voxline evaluation</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;
text-align:right}}td:first-child{{text-align:left}}</style></head><body>
<h1>Evaluation on {len(report.get('sessions', []))} logged session(s)</h1>{status}
<p>Skipped: {html.escape(', '.join(report.get('skipped', {})) or 'none')}.
Elapsed: {report.get('elapsed_s', '?')} s.</p>
<h2>Candidates</h2><table><tr><th>metric</th><th>as logged</th>{head}</tr>{rows}</table>
{truth}{charts}
<h2>Latency, ms (p50 / p95)</h2>
<p>As logged: each stage of the live turns (a preemptive reply hides most of its
transcription, language model and voice in the pause). Offline: the stages run again one at
a time on the whole utterance, by the logged configuration and by each candidate (the
transcriber; the language model's first item; the voice's first chunk). A candidate's
voice-to-voice is estimated turn by turn: each logged turn's, plus what each stage the
candidate changes took on that turn less what the logged configuration's took, both offline
(its silence waited: shifted by the replays' medians).</p>
<table><tr><th>stage</th><th>as logged</th><th>as logged, offline</th>{head}</tr>
{latency}</table>
<h2>Transcripts that changed (first five per candidate)</h2>{examples}
{f"<h2>Answers that changed (first five per candidate)</h2>{answers}" if answers else ""}
</body></html>
"""


#: a logged stage → where a candidate's own figure for it is, when it ran that stage again
RERUN: dict[str, Getter] = {
    "stt": _at("transcripts", "stt_ms"),
    "llm_first_token": _at("answers", "first_item_ms"),
    "tts_first_chunk": _at("speech", "first_chunk_ms"),
    "voice_to_voice": _at("voice_to_voice_estimate"),
}


def _spread_cell(ms: Any) -> str:
    return "—" if not ms else f"{_cell(ms.get('p50'))} / {_cell(ms.get('p95'))}"


def _cell(value: Any) -> str:
    return "—" if value is None else html.escape(f"{value:g}" if isinstance(value, float)
                                                 else str(value))


def _chart(metric: str, values: dict[str, Any]) -> str:
    """A horizontal bar per candidate, as SVG."""
    known = {name: float(v) for name, v in values.items() if isinstance(v, int | float)}
    top = max(known.values(), default=0.0) or 1.0
    bars = []
    for row, (name, value) in enumerate(values.items()):
        y = 8 + row * 26
        width = 0 if name not in known else 300 * known[name] / top
        bars.append(
            f'<text x="0" y="{y + 14}" font-size="12">{html.escape(name)}</text>'
            f'<rect x="160" y="{y}" width="{width:.1f}" height="18" fill="#4a7ab8"/>'
            f'<text x="{166 + width:.1f}" y="{y + 14}" font-size="12">{_cell(value)}</text>')
    height = 16 + 26 * len(values)
    return (f"<h2>{metric}</h2><svg xmlns='http://www.w3.org/2000/svg' width='560' "
            f"height='{height}' role='img' aria-label='{metric}'>{''.join(bars)}</svg>")
