"""The ``voxline`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table

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
    from pipeline.models import list_models

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
    from pipeline.models import list_models, prepare

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


@app.command()
def demo(
    question: Annotated[str, typer.Option(help="what the demo asks, spoken by the TTS")] = (
        "What is the capital of France?"
    ),
    out: Annotated[Path, typer.Option(help="where the spoken reply is written")] = Path(
        "voxline-demo-reply.wav"
    ),
) -> None:
    """One voice turn end to end: speech in, transcript, streamed reply, speech out."""
    import asyncio

    from schemas import Settings
    from voxline.demo import run_demo
    from voxline.redis_server import redis_url_or_server

    settings = Settings()

    def say(text: str, end: str = "\n") -> None:
        console.print(text, end=end, highlight=False, markup=False)

    if not settings.redis_url:
        say("VOXLINE_REDIS_URL is not set: starting a Redis server of our own on 127.0.0.1")
    with redis_url_or_server(settings.redis_url) as url:
        asyncio.run(run_demo(url, settings, out, say, question))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
