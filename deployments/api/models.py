"""``GET /v1/models`` and ``/v1/models/{id}``: what each stage has loaded, in OpenAI's shape.

OpenAI clients list models to fill a picker or to check a name before they call; the
answer is what the stages' engines say of themselves (``describe()``: the model where the
engine reports one, else the engine's name), one entry per stage that is present, so a
client sees what would actually answer. ``created`` is when this replica started (the
engines do not know when their weights were made). Voices for ``/v1/audio/speech`` are
the synthesizer's, listed on its entry as ``voices``, with ``voice_map``: the installed
voice each OpenAI voice name speaks with (``VOXLINE_API__VOICE_MAP``; a name the map
leaves out speaks with the default voice, the entry's ``id``).
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
    voices: list[str] | None = None
    voice_map: dict[str, str] | None = None


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


async def llm_model_id(services: Services) -> str:
    """The id ``/v1/models`` lists for the language model (completions answer with it)."""
    info = await llm_description(services)
    return model_id(info) if info is not None else "unknown"


async def _models(services: Services) -> list[Model]:
    infos = await asyncio.gather(*(_describe(services, stage) for stage in _STAGES))
    models = []
    for stage, info in zip(_STAGES, infos, strict=True):
        if info is None:
            continue
        model = Model(id=model_id(info), created=_STARTED, stage=stage,
                      engine=str(info.get("engine", "")))
        if stage == "tts":
            model.voices = [str(v) for v in info.get("voices") or ()]
            model.voice_map = {
                name: engine_voice(name, services.settings.api.voice_map) or model.id
                for name in sorted(OPENAI_VOICES)
            }
        models.append(model)
    return models


@router.get("", response_model=ModelList, responses=error_responses(401, 503))
async def list_models(services: Annotated[Services, Depends(get_services)]) -> ModelList:
    """Each present stage's model (``stage`` says which)."""
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
