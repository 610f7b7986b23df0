"""faster-whisper's ``device`` option, without a GPU: CUDA is refused at load where
CTranslate2 sees none, and the device, GPU index and quantisation reach ``WhisperModel``
(a recording stand-in, so nothing needs a GPU or loads a model), and the batched path's
GPU branch on a CPU model. The engine on a real GPU: ``loadtests/bench_stt_batch.py
--device cuda``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, ClassVar

import ctranslate2
import faster_whisper
import numpy as np
import pytest

from pipeline.engines import create_engine
from pipeline.engines.stt._whisper_windows import host_encoding
from pipeline.engines.stt.faster_whisper import COMPUTE_TYPES, FasterWhisperTranscriber
from schemas import ConfigurationError, EngineError, ErrorCode


class RecordingModel:
    """Stands in for ``faster_whisper.WhisperModel``: keeps what it was built with."""

    built: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, path: str, **kwargs: Any) -> None:
        RecordingModel.built.append({"path": path, **kwargs})


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``WhisperModel`` replaced by :class:`RecordingModel`, and one GPU seen."""
    RecordingModel.built = []
    monkeypatch.setattr(faster_whisper, "WhisperModel", RecordingModel)
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    return RecordingModel.built


async def test_cuda_without_a_gpu_is_a_configuration_error() -> None:
    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("CTranslate2 sees a GPU here")
    engine = FasterWhisperTranscriber(model="whisper-tiny.en", device="cuda")
    with pytest.raises(EngineError) as info:
        await engine.load()
    assert info.value.code == ErrorCode.CONFIGURATION_ERROR
    assert "sees no GPU" in info.value.message
    assert "VOXLINE_STT__DEVICE=cpu" in info.value.message
    assert not info.value.recoverable
    assert not engine.ready


async def test_a_gpu_index_beyond_those_seen_is_refused(
    recorded: list[dict[str, Any]],
) -> None:
    engine = FasterWhisperTranscriber(model="whisper-tiny.en", device="cuda", device_index=1)
    with pytest.raises(EngineError) as info:
        await engine.load()
    assert info.value.code == ErrorCode.CONFIGURATION_ERROR
    assert "1 GPU(s), not cuda:1" in info.value.message
    assert recorded == []  # refused before any model was built


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"device": "cpu", "device_index": 0, "compute_type": "int8"}),
        ({"device": "cuda"}, {"device": "cuda", "device_index": 0, "compute_type": "float16"}),
        (
            {"device": "cuda", "compute_type": "int8_float16"},
            {"device": "cuda", "device_index": 0, "compute_type": "int8_float16"},
        ),
        (
            {"device": "cpu", "compute_type": "float32", "cpu_threads": 3},
            {"device": "cpu", "compute_type": "float32", "cpu_threads": 3},
        ),
    ],
)
async def test_device_and_quantisation_reach_ctranslate2(
    recorded: list[dict[str, Any]], options: dict[str, Any], expected: dict[str, Any],
) -> None:
    engine = create_engine("stt", "faster-whisper",
                           {"model": "whisper-tiny.en", "warmup": False, **options})
    assert isinstance(engine, FasterWhisperTranscriber)
    await engine.load()
    try:
        [built] = recorded
        assert (Path(built["path"]) / "model.bin").is_file()  # the catalogue's folder
        assert {k: built[k] for k in expected} == expected
        assert engine.compute_type == expected["compute_type"]
    finally:
        await engine.close()


@pytest.mark.parametrize(
    ("options", "threads"),
    [
        ({"model": "whisper-tiny.en"}, 1),  # tiny: one thread is faster and cheaper
        ({"model": "whisper-tiny.en", "cpu_threads": 2}, 2),  # the option wins
        ({"model": "whisper-base"}, min(4, os.cpu_count() or 1)),
    ],
)
async def test_ctranslate2_gets_one_thread_for_a_tiny_model_unless_told(
    recorded: list[dict[str, Any]], options: dict[str, Any], threads: int,
) -> None:
    engine = create_engine("stt", "faster-whisper", {"warmup": False, **options})
    assert isinstance(engine, FasterWhisperTranscriber)
    await engine.load()
    try:
        [built] = recorded
        assert built["cpu_threads"] == engine.threads == threads
    finally:
        await engine.close()


def test_the_default_quantisation_follows_the_device() -> None:
    assert FasterWhisperTranscriber().compute_type == COMPUTE_TYPES["cpu"] == "int8"
    assert FasterWhisperTranscriber(device="cuda").compute_type == "float16"
    assert FasterWhisperTranscriber(device="cuda", compute_type="int8").compute_type == "int8"


def test_an_unknown_device_is_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError):
        FasterWhisperTranscriber(device="tpu")
    with pytest.raises(ConfigurationError):
        FasterWhisperTranscriber(device="cuda", device_index=-1)


class OnAGpu:
    """A loaded CPU model that says it is on a GPU (``model.model.device``), to take the
    engine's GPU branch without one; everything else is the real model's."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.model = self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model.model if name == "encode" else self._model, name)

    @property
    def device(self) -> str:
        return "cuda"


@pytest.mark.models
def test_the_encoding_reaches_numpy_from_a_gpu_model() -> None:
    """On a GPU the encoder's output stays in device memory, which numpy cannot read (an
    H200 run of the batched path failed so); it is copied back, the same numbers."""
    engine = FasterWhisperTranscriber(model="whisper-tiny.en", cpu_threads=2, warmup=False)
    engine.load_sync()
    try:
        model = engine._require_model()
        audio = np.sin(np.arange(16000, dtype=np.float32) / 7).astype(np.float32) * 0.1
        window = faster_whisper.audio.pad_or_trim(model.feature_extractor(audio)[:, :-1])
        on_cpu = host_encoding(model, window)
        on_gpu = host_encoding(OnAGpu(model), window)
        assert on_cpu.shape == on_gpu.shape == (1, 1500, 384)
        assert np.array_equal(on_cpu, on_gpu)
    finally:
        asyncio.run(engine.close())
