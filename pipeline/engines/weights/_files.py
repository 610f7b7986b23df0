"""Helpers for a catalogue entry's ``locate``: find a file inside an installed package,
join a model split across several wheels, write atomically.

A joined model is checked part by part against the sha256 its wheel's RECORD lists (pip
checked the wheel; this catches a file changed or truncated since), and its manifest lets
later calls return at once. Every file is written under a temporary name and renamed into
place, so two processes preparing the same model at once never see half a file.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.engines.weights._catalogue import PrepareContext
from schemas import ModelMissingError

__all__ = ["join_parts", "package_file", "required", "verify_joined"]

_CHUNK = 4 * 1024 * 1024


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


def required(path: Path | None) -> Path:
    """``path``, or FileNotFoundError when a join answered that nothing is prepared."""
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

