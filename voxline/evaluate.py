"""``voxline replay --evaluate``: other turn-taking settings tried on logged sessions.

For each session read from the log, the input is put back together and replayed through
the server's VAD and end-of-turn model (:mod:`pipeline.session.evaluation`), once with the
session's own settings (``as logged``: what it did, replayed) and once per ``--evaluate``
patch over them. The measures per setting are over all the sessions: turns, the silence
waited (p50/p95) and continuations (turn ends that more speech followed within 2 s: the
likely cut-offs). Only the VAD and the end-of-turn model run; nothing is written to any
log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.engines import TurnDetector, VoiceActivityDetector, create_engine
from pipeline.log import fold
from pipeline.session import Replay, logged_input, merge_settings, replay_turn_ends, turn_measures
from schemas import ConfigurationError, ProtocolError, Settings
from voxline.inspect import read_session

__all__ = ["AS_LOGGED", "Evaluation", "evaluate_sessions", "parse_patch"]

AS_LOGGED = "as logged"
#: the settings an evaluation may change: those that decide where turns end
TURN_SETTINGS = frozenset({
    "turn_detection", "end_of_speech_ms", "turn_complete_ms", "turn_incomplete_ms",
    "turn_threshold", "preemptive_pause_ms", "preemptive_turns",
})


def parse_patch(text: str) -> dict[str, Any]:
    """``KEY=VALUE[,KEY=VALUE...]`` (values read as JSON where they are) or a JSON
    object, of :data:`TURN_SETTINGS`; anything else is a :class:`ConfigurationError`."""
    text = text.strip()
    patch: dict[str, Any] = {}
    if text.startswith("{"):
        try:
            patch = dict(json.loads(text))
        except (json.JSONDecodeError, TypeError, ValueError):
            raise ConfigurationError(f"{text!r} is not a JSON object",
                                     setting="--evaluate") from None
    else:
        for pair in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = pair.partition("=")
            if not sep:
                raise ConfigurationError(f"{pair!r} is not KEY=VALUE", setting="--evaluate")
            try:
                patch[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                patch[key.strip()] = value.strip()
    unknown = sorted(set(patch) - TURN_SETTINGS)
    if unknown or not patch:
        raise ConfigurationError(
            f"--evaluate takes turn-taking settings ({', '.join(sorted(TURN_SETTINGS))})"
            + (f", not {', '.join(unknown)}" if unknown else ""), setting="--evaluate")
    return patch


@dataclass
class Evaluation:
    """The sessions evaluated (and those skipped, with why), and per setting (its name:
    the patch as given, or :data:`AS_LOGGED`) each session's replay and the measures."""

    sessions: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    replays: dict[str, list[Replay]] = field(default_factory=dict)
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)


async def load_engines(settings: Settings) -> tuple[VoiceActivityDetector, TurnDetector | None]:
    """The server's VAD and end-of-turn model, as its settings name them, loaded."""
    vad = create_engine("vad", settings.vad.engine, settings.vad.engine_options())
    turn = None
    if settings.turn.engine != "none":
        turn = create_engine("turn", settings.turn.engine, settings.turn.engine_options())
    assert isinstance(vad, VoiceActivityDetector)
    assert turn is None or isinstance(turn, TurnDetector)
    await vad.load()
    if turn is not None:
        await turn.load()
    return vad, turn


async def evaluate_sessions(
    session_ids: Sequence[str], patches: Sequence[str], settings: Settings,
    *, continuation_ms: int = 2000,
) -> Evaluation:
    """Replay each session's input with its own settings and with each patch."""
    named: list[tuple[str, dict[str, Any]]] = [(AS_LOGGED, {})]
    named += [(text, parse_patch(text)) for text in patches]
    result = Evaluation(replays={name: [] for name, _ in named})
    vad, turn = await load_engines(settings)
    try:
        for session_id in session_ids:
            record = await read_session(session_id, settings)
            logged = logged_input(session_id, record.events)
            if logged is None:
                result.skipped[session_id] = "no audio in its log"
                continue
            own = fold(session_id, record.events).settings
            if own.turn_judge == "text":
                result.skipped[session_id] = ("its turns were judged by their words "
                                              "(turn_judge text): a replay runs no transcriber")
                continue
            result.sessions.append(session_id)
            for name, patch in named:
                try:
                    tried = merge_settings(own, patch)
                except ProtocolError as exc:
                    raise ConfigurationError(f"--evaluate {name!r}: {exc.message}",
                                             setting="--evaluate") from None
                if turn is None and tried.turn_detection == "smart":
                    raise ConfigurationError(
                        f"--evaluate {name!r} asks for smart turn detection, and no "
                        "end-of-turn model is configured", setting="VOXLINE_TURN__ENGINE")
                result.replays[name].append(await replay_turn_ends(logged, tried, vad, turn))
    finally:
        for engine in (vad, turn):
            if engine is not None:
                await engine.close()
    result.measures = {name: turn_measures(replays, continuation_ms=continuation_ms)
                       for name, replays in result.replays.items()}
    return result
