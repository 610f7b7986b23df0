"""The engines one live session uses, chosen by whoever opens it (local or remote)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.engines import (
    LanguageModel,
    Synthesizer,
    TextTurnDetector,
    Transcriber,
    TurnDetector,
    VoiceActivityDetector,
)


@dataclass(frozen=True)
class SessionEngines:
    """The engines a live session uses; ``tts`` None means text-only replies, ``stt`` or
    ``vad`` None a session that takes no audio, ``turn`` None turns ended by silence alone,
    ``turn_text`` None no transcript's verdict (``turn_judge`` text)."""

    llm: LanguageModel
    tts: Synthesizer | None = None
    stt: Transcriber | None = None
    vad: VoiceActivityDetector | None = None
    turn: TurnDetector | None = None
    turn_text: TextTurnDetector | None = None
