"""``voxline evaluate``: candidate configurations tried on logged conversations
(:mod:`voxline.evaluate_run`), with a JSON and HTML report and thresholds for CI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from voxline._cli_app import app, console, fail, plain_errors, say
from voxline.cli_sessions import RedisUrl, Since, Tag, Until, sessions_or_range

#: the exit status when a --fail-if threshold is crossed (1 and 2 are errors and usage)
CROSSED = 3
#: a candidate could not be measured (its process failed or ran past the budget)
CANDIDATE_FAILED = 4


@app.command()
def evaluate(
    sessions: Annotated[list[str] | None, typer.Argument(
        help="the session ids (with --dataset, which of its sessions; default all)")] = None,
    candidate: Annotated[list[str] | None, typer.Option(
        "--candidate", help="NAME=SPEC, SPEC a JSON object or KEY=VALUE,...: turn-taking "
        "settings and/or stt_model (repeatable), e.g. 'base={\"stt_model\": "
        "\"whisper-base\"}' or 'patient=end_of_speech_ms=1200'")] = None,
    dataset: Annotated[Path | None, typer.Option(
        help="a dataset 'voxline export' wrote, instead of the log (a 'reference' "
        "added to rows of its metadata.jsonl is a reference transcript)")] = None,
    references: Annotated[Path | None, typer.Option(
        help="reference transcripts: JSON Lines of session_id, turn_id and reference, for "
        "the word error rate against what was really said (wer_vs_reference)")] = None,
    out: Annotated[Path, typer.Option(
        help="where evaluation.json and evaluation.html go")] = Path("evaluation"),
    fail_if: Annotated[list[str] | None, typer.Option(
        "--fail-if", help="[CANDIDATE.]METRIC>VALUE or <VALUE (repeatable): exit 3 when "
        "crossed, e.g. 'wer_vs_logged>0.1'")] = None,
    max_sessions: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    budget_s: Annotated[float, typer.Option(min=1.0, help="seconds for the transcripts; "
                                            "sessions left after it are not started")] = 600.0,
    in_process: Annotated[bool, typer.Option(
        "--in-process", help="run the candidates in this process, one after another "
        "(quicker for a few sessions; without it each runs in a process of its own, "
        "stopped at the budget, so one candidate's failure leaves the others)")] = False,
    since: Since = None,
    until: Until = None,
    tag: Tag = None,
    redis_url: RedisUrl = None,
) -> None:
    """Replay logged sessions' input through candidate configurations, offline, and
    report per candidate against what was logged: transcripts (word error rate, what
    changed, time), turn-taking (turns, silence waited, likely cut-offs), and each
    stage's latency as logged. Nothing is written to any log."""
    import asyncio

    from pipeline.datasets import dataset_references, read_references
    from voxline.candidates import parse_candidate
    from voxline.evaluate import dataset_events
    from voxline.evaluate_report import crossed, parse_threshold, write_report
    from voxline.evaluate_run import run_evaluation
    from voxline.inspect import inspect_settings

    with plain_errors():
        tried = [parse_candidate(text) for text in candidate or []]
        if not tried:
            fail("name at least one --candidate", code=2)
        if len({c.name for c in tried}) != len(tried):
            fail("two candidates share a name", code=2)
        thresholds = [parse_threshold(text) for text in fail_if or []]
        events_of = None
        if dataset is not None:
            if since is not None or until is not None or tag is not None:
                fail("--since, --until and --tag choose from the log, not a --dataset",
                     code=2)
            sessions, events_of = dataset_events(dataset, sessions)
        settings = inspect_settings(redis_url)
        sessions = sessions_or_range(sessions, since, until, settings, max_sessions, tag)
        if not sessions:
            fail("name the sessions to evaluate, a range or tag holding some, or a --dataset",
                 code=2)
        truth = {**(dataset_references(dataset) if dataset is not None else {}),
                 **(read_references(references) if references is not None else {})}
        if truth:
            say(f"{len(truth)} reference transcript(s)")
        report = asyncio.run(run_evaluation(
            sessions, tried, settings, events_of=events_of, references=truth,
            max_sessions=max_sessions, budget_s=budget_s, in_process=in_process, say=say))
        hits, missing = crossed(report, thresholds)
    report["thresholds"] = {"checked": [str(t) for t in thresholds], "crossed": hits,
                            "missing": missing}
    data, page = write_report(report, out)
    _print(report)
    for line in missing:
        say(f"warning: {line}")
    say(f"report: {data} and {page}")
    for line in hits:
        say(f"crossed: {line}")
    failed = {name: c["error"] for name, c in report["candidates"].items() if c.get("error")}
    for name, why in failed.items():
        say(f"failed: {name}: {why}")
    if hits:
        raise typer.Exit(CROSSED)
    if failed:
        raise typer.Exit(CANDIDATE_FAILED)


def _print(report: dict[str, object]) -> None:
    from voxline.evaluate_report import METRICS

    candidates = report["candidates"]
    assert isinstance(candidates, dict)
    table = Table(title=f"evaluation on {len(report['sessions'])} session(s)"  # type: ignore[arg-type]
                  + ("" if report.get("complete") else " (incomplete: budget)"))
    table.add_column("metric")
    for name in candidates:
        table.add_column(name)
    for metric, get in METRICS.items():
        values = [get(c) for c in candidates.values()]
        if all(v is None for v in values):
            continue  # what no candidate tried
        table.add_row(metric, *("–" if v is None else f"{v:g}" for v in values))
    console.print(table)
