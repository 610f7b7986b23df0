"""What the serve tests know of the running app (the ``app`` fixture in conftest)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import Settings


@dataclass(frozen=True)
class App:
    url: str
    settings: Settings

