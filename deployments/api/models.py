"""``GET /v1/models`` and ``/v1/models/{id}``: the models each stage has loaded, in OpenAI's shape.

OpenAI clients list models to fill a picker or to check a name before they call; the
answer is what the stages' engines say of themselves (``describe()``: the model where the
engine reports one, else the engine's name), so a client sees what would actually answer.
A stage whose engine routes by language (the CPU profile's STT and TTS ``language-router``)
lists one entry per routed model (``whisper-tiny.en``, ``whisper-base``,
``en_US-joe-medium``, ``espeak``), each with the language tags sent to it (``routed``;
``*``: every other language), never the router: a router is not a model, and two stages'
routers would share one id. ``created`` is when this replica started (the engines do not
know when their weights were made). A synthesizer's entry lists its ``voices`` and its
``voice_map``: the voice each OpenAI voice name speaks with on that model
(``VOXLINE_API__VOICE_MAP``; a name the map leaves out, or maps to a voice of another
model, speaks with the model's default voice; ``null`` where that follows the language,
as espeak-ng's does, or the engine names no voices).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from deployments.api._errors import error_responses
from deployments.api._services import Services, get_services
from pipeline.turn import OPENAI_VOICES, engine_voice
from schemas import ErrorCode, SessionError

router = APIRouter(prefix="/v1/models", tags=["openai"])

_STARTED = int(time.time())
_STAGES = ("llm", "stt", "tts", "vad")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "voxline"
    stage: str
    engine: str
    routed: list[str] | None = None
    voices: list[str] | None = None
    voice_map: dict[str, str | None] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


def model_id(info: dict[str, Any]) -> str:
    return str(info.get("model") or info.get("engine") or "unknown")


async def _describe(services: Services, stage: str) -> dict[str, Any] | None:
    try:
        return await asyncio.wait_for(services.describe(stage), timeout=5)
    except Exception:  # a stage that cannot say what it is has nothing to offer now
        return None


async def llm_description(services: Services) -> dict[str, Any] | None:
    """What the language model says of itself (``None``: it cannot say now)."""
    return await _describe(services, "llm")


def _routed(info: dict[str, Any]) -> list[dict[str, Any]]:
    """One description per model: a router's routed engines, else the stage's own."""
    models = info.get("models")
    if isinstance(models, list) and models:
        return [m for m in models if isinstance(m, dict)]
    return [info]


def _voice_map(info: dict[str, Any], configured: dict[str, str]) -> dict[str, str | None]:
    """Each OpenAI voice name → the voice this model speaks it with (see the module)."""
    voices = [str(v) for v in info.get("voices") or ()]
    known = {v.lower() for v in voices}
    default = info.get("default_voice")
    default = str(default) if default else None
    mapping: dict[str, str | None] = {}
    for name in sorted(OPENAI_VOICES):
        wanted = engine_voice(name, configured)
        mapping[name] = wanted if wanted and (not voices or wanted.lower() in known) else default
    return mapping


async def _models(services: Services) -> list[Model]:
    infos = await asyncio.gather(*(_describe(services, stage) for stage in _STAGES))
    models: list[Model] = []
    seen: set[str] = set()
    for stage, stage_info in zip(_STAGES, infos, strict=True):
        if stage_info is None:
            continue
        for info in _routed(stage_info):
            ident = model_id(info)
            if ident in seen:  # two stages naming one model: the later one qualified
                ident = f"{stage}/{ident}"
            seen.add(ident)
            routed = info.get("routed")
            model = Model(id=ident, created=_STARTED, stage=stage,
                          engine=str(info.get("engine", "")),
                          routed=[str(t) for t in routed] if isinstance(routed, list) else None)
            if stage == "tts":
                model.voices = [str(v) for v in info.get("voices") or ()]
                model.voice_map = _voice_map(info, services.settings.api.voice_map)
            models.append(model)
    return models


@router.get("", response_model=ModelList, responses=error_responses(401, 503))
async def list_models(services: Annotated[Services, Depends(get_services)]) -> ModelList:
    """Each present stage's models, one per routed model (``stage`` says which)."""
    return ModelList(data=await _models(services))


@router.get("/{model_id:path}", response_model=Model, responses=error_responses(401, 404, 503))
async def get_model(
    model_id: str, services: Annotated[Services, Depends(get_services)]
) -> Model:
    for model in await _models(services):
        if model.id == model_id:
            return model
    raise SessionError(f"no model {model_id!r} is loaded; see /v1/models",
                       code=ErrorCode.NOT_FOUND)
