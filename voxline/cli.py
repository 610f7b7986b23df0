"""The ``voxline`` command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table

if TYPE_CHECKING:
    from schemas import Settings

app = typer.Typer(help="Voxline: a real-time voice AI server.", no_args_is_help=True)
models_app = typer.Typer(help="Packaged models: list, prepare (join, verify) and licences.")
app.add_typer(models_app, name="models")
console = Console()


@models_app.callback(invoke_without_command=True)
def models_default(ctx: typer.Context) -> None:
    """Without a sub-command: list the packaged models."""
    if ctx.invoked_subcommand is None:
        models_list()


@models_app.command("list")
def models_list() -> None:
    """Show every packaged model: where it lives, whether it is ready, its licence."""
    from pipeline.engines import list_models

    table = Table(title="Packaged models")
    for column in ("name", "stage", "engine", "ready", "licence", "size", "path / what to do"):
        table.add_column(column)
    for row in list_models():
        if not row.installed:
            state, where = "[red]missing", f"pip install {' '.join(row.packages)}"
        elif not row.prepared:
            state, where = "[yellow]not prepared", "voxline models prepare"
        else:
            state, where = "[green]ready", row.path or ""
        table.add_row(
            row.name, row.stage, row.engine, state, row.licence, f"{row.size_mb} MB", where
        )
    console.print(table)


@models_app.command("prepare")
def models_prepare(
    names: Annotated[
        list[str] | None, typer.Argument(help="models to prepare (default: all installed)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Join split weights, verify checksums and cache the results (idempotent)."""
    from pipeline.engines import list_models
    from pipeline.engines import prepare_model as prepare

    rows = list_models()
    wanted = names or [row.name for row in rows if row.installed]
    failed = False
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        disable=quiet,
        transient=True,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(name: str, step: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total or None)
            progress.update(tasks[name], description=f"{name}: {step}", completed=done,
                            total=total or None)

        for name in wanted:
            try:
                path = prepare(name, progress=report)
            except Exception as exc:  # every failure is reported, the rest still prepared
                failed = True
                console.print(f"[red]✗[/] {name}: {exc}")
                continue
            if not quiet:
                console.print(f"[green]✓[/] {name}: {path}")
    if failed:
        raise typer.Exit(1)


def _say(text: str, end: str = "\n") -> None:
    console.print(text, end=end, highlight=False, markup=False, soft_wrap=True)


def serve_summary(settings: Settings, url: str, redis_url: str) -> str:
    """What ``serve`` prints once ready: every entry point, each named for what it is."""
    ws = url.replace("http", "ws", 1)
    lines = [
        ("browser page", f"{url}/"),
        ("API docs", f"{url}/docs (Swagger UI), {url}/redoc"),
        ("protocol docs", f"{url}/docs/protocol (the WebSocket protocol, AsyncAPI)"),
        ("sessions", f"POST {url}/v1/sessions"),
        ("native socket", f"{ws}/v1/sessions/{{id}}/ws"),
        ("OpenAI realtime", f"{ws}/v1/realtime"),
        ("OpenAI API", f"{url}/v1 (chat/completions, audio/speech, audio/transcriptions, "
                       "models)"),
        ("chat (SSE)", f"POST {url}/v1/chat/stream"),
    ]
    if settings.metrics_port is not None:
        lines.append(("metrics", f"http://{settings.host}:{settings.metrics_port}/metrics"))
    lines.append(("redis", redis_url))
    width = max(len(name) for name, _ in lines)
    body = "\n".join(f"  {name.ljust(width)}  {where}" for name, where in lines)
    return f"\n{body}\nServing; press Ctrl-C to stop everything."


Profile = Annotated[str, typer.Option(help="resources: cpu (one machine) or gpu")]


@app.command()
def serve(
    profile: Profile = "cpu",
    demo: Annotated[bool, typer.Option(help="hold a demo voice turn once ready")] = True,
    host: Annotated[str | None, typer.Option(help="bind address (default VOXLINE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default VOXLINE_PORT)")] = None,
    speech_mode: Annotated[str, typer.Option(help="streaming or sequential")] = "streaming",
    out: Annotated[Path, typer.Option(help="where the demo reply is written")] = Path(
        "voxline-demo-reply.wav"
    ),
    verbose: Annotated[bool, typer.Option(help="show the replicas' logs")] = False,
) -> None:
    """Start Redis (if none), Ray and the app; optionally a demo turn; serve until Ctrl-C."""
    import asyncio
    import contextlib
    import os

    from schemas import ConfigurationError, Settings
    from voxline.demo import run_demo
    from voxline.runstate import ServerRecord, recorded
    from voxline.server import running_server
    from voxline.stopping import StopSignals

    # Ctrl-C and SIGTERM both drain and stop everything serve started (a shell starts
    # background jobs with SIGINT ignored; Ray's own SIGTERM handling would not drain)
    signals = StopSignals()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings().model_copy(update=overrides)
    try:
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(running_server(
                settings, profile=profile, speech_mode=speech_mode, say=_say,
                log_to_driver=verbose, signals=signals))
            _say(f"Voxline is ready at {server.url}")
            stack.enter_context(recorded(ServerRecord(
                url=server.url, redis_url=server.redis_url, key_prefix=settings.log.key_prefix,
                port=settings.port, pid=os.getpid())))
            if demo:
                asyncio.run(run_demo(server.url, out, _say))
            _say(serve_summary(settings, server.url, server.redis_url))
            signals.wait()
            _say(f"{signals.name}: draining, then stopping")
    except KeyboardInterrupt:
        pass
    except ConfigurationError as exc:  # a setting or a port, said plainly (what started stopped)
        _say(f"error: {exc.message}")
        raise typer.Exit(1) from None
    _say("stopped")


@app.command()
def demo(
    url: Annotated[str | None, typer.Option(help="a running server; default: start one")] = None,
    question: Annotated[str, typer.Option(help="what the demo asks, spoken by the TTS")] = (
        "What is the capital of France?"
    ),
    out: Annotated[Path, typer.Option(help="where the spoken reply is written")] = Path(
        "voxline-demo-reply.wav"
    ),
    profile: Profile = "cpu",
) -> None:
    """One voice turn end to end over the WebSocket: speech in, transcript, reply, speech out."""
    import asyncio

    from schemas import Settings
    from voxline.demo import run_demo
    from voxline.server import running_server

    if url is not None:
        asyncio.run(run_demo(url, out, _say, question))
        return
    from voxline.stopping import StopSignals

    with running_server(Settings(), profile=profile, say=_say, signals=StopSignals()) as server:
        asyncio.run(run_demo(server.url, out, _say, question))


@app.command()
def talk(
    text: Annotated[str | None, typer.Argument(help="what to say (or use --wav)")] = None,
    wav: Annotated[Path | None, typer.Option(help="a recording to send instead of text")] = None,
    url: Annotated[str | None, typer.Option(
        help="the server (default: the running 'voxline serve', else http://127.0.0.1:8000)"
    )] = None,
    out: Annotated[Path, typer.Option(help="where the spoken reply is written")] = Path(
        "voxline-reply.wav"
    ),
) -> None:
    """Say something to a running server (text, or a WAV file) and save the spoken reply."""
    import asyncio

    from schemas import Settings
    from voxline.runstate import find_server
    from voxline.talk import talk as run_talk

    if (text is None) == (wav is None):
        raise typer.BadParameter("give either TEXT or --wav FILE")
    if url is None:
        settings = Settings()
        found = find_server(settings.port)
        url = found.url if found is not None else f"http://{settings.host}:{settings.port}"
    try:
        asyncio.run(run_talk(url, text=text, wav=wav, out=out, say=_say))
    except Exception as exc:  # a clear line, not a traceback, for a user at a terminal
        _say(f"error: {exc}")
        raise typer.Exit(1) from None


RedisUrl = Annotated[str | None, typer.Option(
    help="the Redis holding the sessions (default: VOXLINE_REDIS_URL, else the one the "
    "running 'voxline serve' recorded)")]


@app.command()
def stats(
    session: Annotated[str, typer.Argument(help="the session id")],
    redis_url: RedisUrl = None,
) -> None:
    """Print one session's timeline from its log: per turn, the stages' latencies (ms)."""
    import asyncio

    from schemas import VoxlineError
    from voxline.inspect import inspect_settings, read_session, session_table

    try:
        record = asyncio.run(read_session(session, inspect_settings(redis_url)))
    except VoxlineError as exc:  # no Redis configured, unknown session, Redis down
        _say(f"error: {exc.message}")
        raise typer.Exit(1) from None
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

    from schemas import VoxlineError
    from voxline.inspect import erase_stored, inspect_settings

    if not yes and not typer.confirm(f"erase session {session} everywhere, for good?"):
        raise typer.Exit(1)
    try:
        receipt = asyncio.run(erase_stored(session, inspect_settings(redis_url)))
    except VoxlineError as exc:
        _say(f"error: {exc.message}")
        raise typer.Exit(1) from None
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
    from schemas import VoxlineError
    from voxline.inspect import inspect_settings, read_session
    from voxline.trace import session_traces, waterfall

    try:
        record = asyncio.run(read_session(session, inspect_settings(redis_url)))
    except VoxlineError as exc:
        _say(f"error: {exc.message}")
        raise typer.Exit(1) from None
    traces = session_traces(record, turn)
    if not traces:
        _say(f"error: {'no turn ' + repr(turn) if turn else 'no turn'} in session {session}")
        raise typer.Exit(1)
    if otlp_json is not None:
        otlp_json.write_text(json.dumps(to_otlp(traces), indent=1), encoding="utf-8")
        _say(f"{sum(len(t.spans) for t in traces)} spans of {len(traces)} turn(s) "
             f"written to {otlp_json}")
        return
    for one in traces:
        console.print(waterfall(one))


@app.command()
def replay(
    sessions: Annotated[list[str], typer.Argument(
        help="the session id (with --evaluate, one or more)")],
    out: Annotated[
        Path | None, typer.Option(help="where the files go (default: ./SESSION)")
    ] = None,
    evaluate: Annotated[list[str] | None, typer.Option(
        "--evaluate", help="turn-taking settings to try on the sessions' logged input "
        "instead (KEY=VALUE[,KEY=VALUE] or a JSON object; repeatable), e.g. "
        "'turn_detection=silence,end_of_speech_ms=800': per setting, the turns, the "
        "silence waited and the turn ends more speech followed within 2 s")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="with --evaluate: print the measures as JSON")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """Re-render a session from its log: the transcript and the audio heard, per turn.

    With --evaluate, replay the sessions' input through the VAD and the end-of-turn model
    with other settings and compare where turns would have ended (nothing is written);
    settings that judge pauses by their words (turn_judge text, turn_text_cues) load the
    server's transcriber and text model here too.
    """
    import asyncio

    from schemas import VoxlineError
    from voxline.inspect import inspect_settings, read_session, replay_session

    if evaluate:
        _evaluate(sessions, evaluate, redis_url, as_json)
        return
    if len(sessions) != 1:
        _say("error: replay renders one session (several only with --evaluate)")
        raise typer.Exit(2)
    [session] = sessions
    try:
        record = asyncio.run(read_session(session, inspect_settings(redis_url)))
        result = replay_session(record, out or Path(session))
    except VoxlineError as exc:
        _say(f"error: {exc.message}")
        raise typer.Exit(1) from None
    for line in result.lines:
        _say(line)
    table = Table(title=f"replay of {session} in {result.out_dir}")
    for column in ("#", "turn", "status", "audio", "file"):
        table.add_column(column)
    for turn in result.turns:
        audio = f"{turn.audio_s:.1f} s" if turn.audio is not None else "–"
        table.add_row(str(turn.number), turn.turn_id, turn.status, audio,
                      str(turn.audio or ""))
    console.print(table)
    _say(f"transcript: {result.transcript}")


def _evaluate(sessions: list[str], patches: list[str], redis_url: str | None,
              as_json: bool) -> None:
    import asyncio
    import json

    from schemas import VoxlineError
    from voxline.evaluate import evaluate_sessions
    from voxline.inspect import inspect_settings

    try:
        result = asyncio.run(evaluate_sessions(sessions, patches, inspect_settings(redis_url)))
    except VoxlineError as exc:
        _say(f"error: {exc.message}")
        raise typer.Exit(1) from None
    for session, why in result.skipped.items():
        _say(f"skipped {session}: {why}")
    if as_json:
        print(json.dumps({"sessions": result.sessions, "skipped": result.skipped,
                          "settings": result.measures}, indent=2))
        return
    table = Table(title=f"turn-taking on {len(result.sessions)} logged session(s)")
    for column in ("setting", "turns", "silence waited p50 / p95", "continued within 2 s"):
        table.add_column(column)
    for name, row in result.measures.items():
        waited = row["silence_waited_ms"]
        rate = row["continued_rate"]
        table.add_row(name, str(row["turns"]),
                      f"{waited['p50']:.0f} / {waited['p95']:.0f} ms" if waited else "–",
                      f"{row['continued']} ({rate:.0%})" if rate is not None else "–")
    console.print(table)


class _LocalServers(Protocol):
    """Redis processes started here for trying Voxline (a cluster, a Sentinel setup)."""

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


def _serve_until_stopped(start: Callable[[], _LocalServers],
                         describe: Callable[[Any], list[str]]) -> None:
    """Start local Redis processes, say what runs and the URL to use, and stop them on
    Ctrl-C or SIGTERM (a configuration error is said, and exits 1)."""
    from schemas import ConfigurationError
    from voxline.stopping import StopSignals

    signals = StopSignals()
    signals.install()
    servers = None
    try:
        servers = start()
        for line in describe(servers):
            _say(line)
        _say(f"\nVOXLINE_REDIS_URL={servers.url}\nPress Ctrl-C to stop them.")
        signals.wait()
    except ConfigurationError as exc:
        _say(f"error: {exc.message}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
    finally:
        if servers is not None:
            servers.stop()
    _say("stopped")


@app.command("redis-cluster")
def redis_cluster(
    primaries: Annotated[int, typer.Option(min=1, help="primaries (shards)")] = 3,
    replicas: Annotated[int, typer.Option(min=0, help="replicas per primary")] = 1,
) -> None:
    """Start a Redis Cluster on loopback ports (no persistence) until Ctrl-C or SIGTERM.

    Point Voxline at the URL it prints: VOXLINE_REDIS_URL=redis+cluster://...
    """
    from voxline.redis_cluster import RedisClusterServers, start_redis_cluster

    def describe(cluster: RedisClusterServers) -> list[str]:
        lines = [f"Redis Cluster ready: {primaries} primaries, {replicas} replica(s) each"]
        for role, nodes in (("primary", cluster.primaries), ("replica", cluster.replicas)):
            lines += [f"  {role}  127.0.0.1:{node.port}  (log {node.workdir / 'redis.log'})"
                      for node in nodes]
        return lines

    _serve_until_stopped(
        lambda: start_redis_cluster(primaries=primaries, replicas_per_primary=replicas),
        describe)


@app.command("redis-sentinel")
def redis_sentinel(
    replicas: Annotated[int, typer.Option(min=1, help="replicas of the primary")] = 1,
    sentinels: Annotated[int, typer.Option(min=1, help="sentinels (a majority must agree)")] = 3,
) -> None:
    """Start a Redis primary, its replica(s) and Sentinels on loopback ports (no
    persistence) until Ctrl-C or SIGTERM.

    Point Voxline at the URL it prints: VOXLINE_REDIS_URL=redis+sentinel://...
    """
    from voxline.redis_sentinel import RedisSentinelServers, start_redis_sentinel

    def describe(setup: RedisSentinelServers) -> list[str]:
        lines = [f"Redis Sentinel ready: 1 primary, {replicas} replica(s), {sentinels} "
                 f"sentinels watching it as {setup.master_name!r}"]
        roles = [("primary", setup.servers[:1]), ("replica", setup.servers[1:]),
                 ("sentinel", setup.sentinels)]
        for role, processes in roles:
            lines += [f"  {role:8} 127.0.0.1:{process.port}  (log {process.workdir / 'redis.log'})"
                      for process in processes]
        return lines

    _serve_until_stopped(
        lambda: start_redis_sentinel(replicas=replicas, sentinels=sentinels), describe)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
