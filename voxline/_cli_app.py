"""What every ``voxline`` command shares: the Typer app, the console, a plain line out,
and how an error the user can act on ends a command (one line, exit 1, no traceback)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console

app = typer.Typer(help="Voxline: a real-time voice AI server.", no_args_is_help=True)
console = Console()


def say(text: str, end: str = "\n") -> None:
    """One line as written: no markup, no highlighting, no wrapping of long ids."""
    console.print(text, end=end, highlight=False, markup=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with ``error: message`` and exit ``code``."""
    say(f"error: {message}")
    raise typer.Exit(code)


@contextmanager
def plain_errors() -> Iterator[None]:
    """A :class:`schemas.VoxlineError` inside (no Redis configured, an unknown or erased
    session, Redis down) ends the command with its message, not a traceback."""
    from schemas import VoxlineError

    try:
        yield
    except VoxlineError as exc:
        fail(exc.message)
