"""Shared set-up of the GPU-engine tests (WhisperX, vLLM, Coqui TTS, the re-ranker).

These tests run each GPU engine's real library on the CPU, in that engine's own
virtualenv (``scripts/test-gpu-engines.sh``). In the core environment the libraries are
absent and every module here skips at collection (``pytest.importorskip``) without
importing torch.

The suite's ``filterwarnings = error`` stays in force for Voxline's own tests; torch,
transformers, pyannote and Coqui warn about their own internals at import and at run
time, which says nothing about our code, so those categories are ignored here only:
the libraries are imported once under a warnings filter at collection, and the tests in
this folder get ``ignore`` marks.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import warnings
from pathlib import Path

import pytest

_HERE = Path(__file__).parent
_LIBRARIES = ("torch", "whisperx", "vllm", "TTS", "sentence_transformers")
_IGNORED = ("DeprecationWarning", "FutureWarning", "UserWarning", "PendingDeprecationWarning")

# Nothing in these tests may reach a model hub, even by accident.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

for _name in _LIBRARIES:
    if importlib.util.find_spec(_name) is not None:
        # A library that fails to import is reported by its module's importorskip.
        with warnings.catch_warnings(), contextlib.suppress(Exception):
            warnings.simplefilter("ignore")
            importlib.import_module(_name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            for category in _IGNORED:
                item.add_marker(pytest.mark.filterwarnings(f"ignore::{category}"))
