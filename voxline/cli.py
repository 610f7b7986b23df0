"""The ``voxline`` command line: serving, the demo, talking to a server and the packaged
models here; the commands that read logged sessions are :mod:`voxline.cli_sessions`'s,
the local Redis set-ups :mod:`voxline.cli_redis`'s."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table

from voxline._cli_app import app, console, fail, say

if TYPE_CHECKING:
    from schemas import Settings

models_app = typer.Typer(help="Packaged models: list, prepare (join, verify) and licences.")
app.add_typer(models_app, name="models")


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


Profile = Annotated[str, typer.Option(
    help="resources: cpu (one machine, the models in the Gateway), cpu-replicas, "
         "cpu-autoscale, cpu-nodes or gpu")]


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
                settings, profile=profile, speech_mode=speech_mode, say=say,
                log_to_driver=verbose, signals=signals))
            say(f"Voxline is ready at {server.url}")
            stack.enter_context(recorded(ServerRecord(
                url=server.url, redis_url=server.redis_url, key_prefix=settings.log.key_prefix,
                port=settings.port, pid=os.getpid())))
            if demo:
                asyncio.run(run_demo(server.url, out, say))
            say(serve_summary(settings, server.url, server.redis_url))
            signals.wait()
            say(f"{signals.name}: draining, then stopping")
    except KeyboardInterrupt:
        pass
    except ConfigurationError as exc:  # a setting or a port, said plainly (what started stopped)
        fail(exc.message)
    say("stopped")


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
        asyncio.run(run_demo(url, out, say, question))
        return
    from voxline.stopping import StopSignals

    with running_server(Settings(), profile=profile, say=say, signals=StopSignals()) as server:
        asyncio.run(run_demo(server.url, out, say, question))


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
        asyncio.run(run_talk(url, text=text, wav=wav, out=out, say=say))
    except Exception as exc:  # a clear line, not a traceback, for a user at a terminal
        fail(str(exc))


# the commands of these modules are registered on ``app`` as they are imported
from voxline import cli_evaluate, cli_redis, cli_sessions  # noqa: E402

__all__ = ["app", "cli_evaluate", "cli_redis", "cli_sessions", "console", "main",
           "serve_summary"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
