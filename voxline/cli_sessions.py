"""The ``voxline`` commands that read (or erase) logged sessions: stats, trace, replay
and its turn-taking evaluation, erase, and the audit of who read what. Each read is
recorded in the audit as the CLI's user (:mod:`voxline.inspect`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from voxline._cli_app import app, console, fail, plain_errors, say

if TYPE_CHECKING:  # the CLI imports the rest when a command runs
    from schemas import Settings

RedisUrl = Annotated[str | None, typer.Option(
    help="the Redis holding the sessions (default: VOXLINE_REDIS_URL, else the one the "
    "running 'voxline serve' recorded)")]
Since = Annotated[str | None, typer.Option(
    help="instead of ids: the sessions that began at or after this, an ISO 8601 time "
    "(UTC unless it says its offset) or a span back from now (90m, 12h, 7d)")]
Until = Annotated[str | None, typer.Option(
    help="with or without --since: the sessions that began before this (same forms)")]
Tag = Annotated[str | None, typer.Option(
    help="instead of ids, alone or with --since/--until: the sessions created with this "
    "tag (the session setting 'tags')")]


def sessions_or_range(sessions: list[str] | None, since: str | None, until: str | None,
                      settings: Settings, limit: int, tag: str | None = None) -> list[str]:
    """The sessions named, or those that began between ``since`` and ``until`` and carry
    ``tag`` (the most recent ``limit``); naming both is a usage error."""
    if since is None and until is None and tag is None:
        return list(sessions or [])
    if sessions:
        fail("name sessions or choose them (--since/--until/--tag), not both", code=2)
    import asyncio

    from voxline.session_select import parse_moment, sessions_between

    bounds = [None if text is None else parse_moment(text, option=option)
              for text, option in ((since, "--since"), (until, "--until"))]
    chosen = asyncio.run(sessions_between(settings, bounds[0], bounds[1], limit, tag))
    tagged = f" tagged {tag!r}" if tag is not None else ""
    within = " in that range" if since is not None or until is not None else ""
    say(f"{len(chosen)} session(s){tagged} began{within or ' (all the log holds)'}")
    return chosen


@app.command()
def stats(
    session: Annotated[str, typer.Argument(help="the session id")],
    redis_url: RedisUrl = None,
) -> None:
    """Print one session's timeline from its log: per turn, the stages' latencies (ms)."""
    import asyncio

    from voxline.inspect import inspect_settings, read_session, session_table

    with plain_errors():
        record = asyncio.run(read_session(session, inspect_settings(redis_url)))
    console.print(session_table(record))


@app.command()
def erase(
    session: Annotated[str, typer.Argument(help="the session id")],
    redis_url: RedisUrl = None,
    yes: Annotated[bool, typer.Option("--yes", help="erase without asking")] = False,
) -> None:
    """Erase a session everywhere (its events, audio, pointers, grants) and print the
    receipt: what was removed, where. Erasing again prints the same receipt."""
    import asyncio

    from voxline.inspect import erase_stored, inspect_settings

    if not yes and not typer.confirm(f"erase session {session} everywhere, for good?"):
        raise typer.Exit(1)
    with plain_errors():
        receipt = asyncio.run(erase_stored(session, inspect_settings(redis_url)))
    console.print_json(receipt.model_dump_json())


@app.command()
def trace(
    session: Annotated[str, typer.Argument(help="the session id")],
    turn: Annotated[str | None, typer.Argument(help="one turn's id (default: every turn)")] = None,
    otlp_json: Annotated[Path | None, typer.Option(
        "--otlp-json", help="write the spans as OTLP JSON to this file (for a collector's "
        "/v1/traces, Jaeger, Tempo) instead of drawing them")] = None,
    redis_url: RedisUrl = None,
) -> None:
    """Draw a logged turn's trace: its stages as spans, from the log's timestamps alone."""
    import asyncio
    import json

    from pipeline.tracing import otlp_json as to_otlp
    from voxline.inspect import inspect_settings, read_session
    from voxline.trace import session_traces, waterfall

    with plain_errors():
        record = asyncio.run(read_session(session, inspect_settings(redis_url)))
    traces = session_traces(record, turn)
    if not traces:
        fail(f"{'no turn ' + repr(turn) if turn else 'no turn'} in session {session}")
    if otlp_json is not None:
        otlp_json.write_text(json.dumps(to_otlp(traces), indent=1), encoding="utf-8")
        say(f"{sum(len(t.spans) for t in traces)} spans of {len(traces)} turn(s) "
             f"written to {otlp_json}")
        return
    for one in traces:
        console.print(waterfall(one))


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="a new (or empty) folder for the dataset")],
    sessions: Annotated[list[str] | None, typer.Argument(
        help="the session ids (or --since/--until/--tag)")] = None,
    redact: Annotated[list[str] | None, typer.Option(
        "--redact", help="redact this kind too in the dataset's text (email, phone, card, "
        "iban, digits; repeatable)")] = None,
    since: Since = None,
    until: Until = None,
    tag: Tag = None,
    max_sessions: Annotated[int, typer.Option(
        min=1, max=100_000, help="with a time range or a tag: the most recent this many")
    ] = 1000,
    redis_url: RedisUrl = None,
) -> None:
    """Export logged sessions as a dataset: each utterance a WAV file with its transcript
    and reply in metadata.jsonl (Hugging Face's audiofolder layout), every event of each
    session beside it. Erased sessions are skipped and said; the read is audited."""
    import asyncio

    from voxline.export import export_sessions, redaction_kinds
    from voxline.inspect import inspect_settings

    with plain_errors():
        kinds = redaction_kinds(redact or [])
        settings = inspect_settings(redis_url)
        chosen = sessions_or_range(sessions, since, until, settings, max_sessions, tag)
        if not chosen:
            fail("no sessions to export: name them, or a range or tag holding some", code=2)
        try:
            summary = asyncio.run(export_sessions(chosen, out, settings,
                                                  redact_kinds=kinds, say=say))
        except FileExistsError as exc:
            fail(str(exc), code=2)
    say(f"exported {summary.sessions} session(s), {summary.utterances} utterances "
        f"({summary.audio_seconds:.1f} s of speech) to {out}"
        + (f"; skipped {len(summary.skipped)}" if summary.skipped else ""))


@app.command()
def replay(
    sessions: Annotated[list[str] | None, typer.Argument(
        help="the session id (with --evaluate, one or more; with --dataset, which of its "
        "sessions, default all)")] = None,
    out: Annotated[
        Path | None, typer.Option(help="where the files go (default: ./SESSION)")
    ] = None,
    evaluate: Annotated[list[str] | None, typer.Option(
        "--evaluate", help="turn-taking settings to try on the sessions' logged input "
        "instead (KEY=VALUE[,KEY=VALUE] or a JSON object; repeatable), e.g. "
        "'turn_detection=silence,end_of_speech_ms=800': per setting, the turns, the "
        "silence waited, the turn ends more speech followed within 2 s, the ends it "
        "missed, and the backchannels and barge-ins over replies")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="with --evaluate: print the measures as JSON")] = False,
    dataset: Annotated[Path | None, typer.Option(
        help="with --evaluate: the sessions of a dataset 'voxline export' wrote, instead "
        "of the log")] = None,
    redis_url: RedisUrl = None,
) -> None:
    """Re-render a session from its log: the transcript and the audio heard, per turn.

    With --evaluate, replay the sessions' input through the VAD and the end-of-turn model
    with other settings and compare where turns would have ended (nothing is written);
    settings that judge pauses by their words (turn_judge text, turn_text_cues) load the
    server's transcriber and text model here too.
    """
    import asyncio

    from voxline.inspect import inspect_settings, read_session, replay_session

    if evaluate:
        if not sessions and dataset is None:
            fail("name the sessions to evaluate, or a --dataset", code=2)
        _evaluate(sessions or [], evaluate, redis_url, as_json, dataset)
        return
    if dataset is not None:
        fail("--dataset goes with --evaluate", code=2)
    if not sessions or len(sessions) != 1:
        fail("replay renders one session (several only with --evaluate)", code=2)
    [session] = sessions
    with plain_errors():
        record = asyncio.run(read_session(session, inspect_settings(redis_url)))
        result = replay_session(record, out or Path(session))
    for line in result.lines:
        say(line)
    table = Table(title=f"replay of {session} in {result.out_dir}")
    for column in ("#", "turn", "status", "audio", "file"):
        table.add_column(column)
    for turn in result.turns:
        audio = f"{turn.audio_s:.1f} s" if turn.audio is not None else "–"
        table.add_row(str(turn.number), turn.turn_id, turn.status, audio,
                      str(turn.audio or ""))
    console.print(table)
    say(f"transcript: {result.transcript}")


def _evaluate(sessions: list[str], patches: list[str], redis_url: str | None,
              as_json: bool, dataset: Path | None = None) -> None:
    import asyncio
    import json

    from voxline.evaluate import AS_LOGGED, dataset_events, evaluate_sessions
    from voxline.inspect import inspect_settings

    with plain_errors():
        events_of = None
        if dataset is not None:
            sessions, events_of = dataset_events(dataset, sessions)
        result = asyncio.run(evaluate_sessions(sessions, patches, inspect_settings(redis_url),
                                               events_of=events_of))
    for session, why in result.skipped.items():
        say(f"skipped {session}: {why}")
    if as_json:
        print(json.dumps({"sessions": result.sessions, "skipped": result.skipped,
                          "settings": result.measures}, indent=2))
        return
    table = Table(title=f"turn-taking on {len(result.sessions)} logged session(s)")
    for column in ("setting", "turns", "silence waited p50 / p95", "continued within 2 s",
                   "missed ends", "over replies: backchannels / barge-ins"):
        table.add_column(column)
    for name, row in result.measures.items():
        waited = row["silence_waited_ms"]
        table.add_row(name, str(row["turns"]),
                      f"{waited['p50']:.0f} / {waited['p95']:.0f} ms" if waited else "–",
                      _count(row["continued"], row["continued_rate"]),
                      _count(row["missed"], row["missed_rate"]),
                      f"{row['backchannels']} / {row['barge_ins']}"
                      + (f" ({row['overlaps_changed']} changed)" if name != AS_LOGGED else ""))
    console.print(table)


def _count(count: int, rate: float | None) -> str:
    return f"{count} ({rate:.0%})" if rate is not None else "–"


@app.command()
def audit(
    session: Annotated[str | None, typer.Argument(
        help="one session's entries (default: every session's)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="the newest this many")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print the entries as JSON")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """Who read which session's log, and when: every read through the API or this CLI
    (events, replay, audio, messages, stats, trace, erase), oldest first. Entries hold
    no content and outlive an erasure."""
    import asyncio
    import json

    from voxline.inspect import inspect_settings, read_audit, utc_clock

    with plain_errors():
        entries = asyncio.run(read_audit(session, inspect_settings(redis_url), limit=limit))
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    if not entries:
        say(f"no audit entries{' of ' + session if session else ''}")
        return
    count = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
    table = Table(title=f"audit of {session or 'every session'} ({count})")
    for column in ("when", "session", "action", "who"):
        table.add_column(column)
    for entry in entries:
        table.add_row(utc_clock(entry["at_ms"]), entry["session"], entry["action"], entry["who"])
    console.print(table)
