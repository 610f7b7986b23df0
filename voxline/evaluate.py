"""``voxline replay --evaluate``: other turn-taking settings tried on logged sessions.

For each session read from the log, the input is put back together and replayed through
the server's VAD and end-of-turn model (:mod:`pipeline.turntaking.evaluation`), once with the
session's own settings (``as logged``: what it did, replayed) and once per ``--evaluate``
patch over them. The measures per setting are over all the sessions: turns, the silence
waited (p50/p95), continuations (turn ends that more speech followed within 2 s: the
likely cut-offs), missed ends (turns the live session ended and the user waited after,
which the setting did not end before the user spoke again), and the speech over replies
(:mod:`pipeline.turntaking.overlaps`): backchannels and barge-ins, as logged or judged
again by the setting's ``interruptions`` and ``backchannel_max_ms`` (on the logged words,
or a candidate's transcriber's). Only the VAD and the end-of-turn models run; nothing is
written to any log. Settings that judge a pause by its words (``turn_judge`` text,
``turn_text_cues``) need its transcript too: the server's transcriber (and its text
end-of-turn model) are then loaded here, and each such pause is transcribed quickly, as a
live session transcribes it when no preemptive turn did.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipeline.datasets import read_dataset
from pipeline.engines import (
    Engine,
    TextTurnDetector,
    Transcriber,
    TurnDetector,
    VoiceActivityDetector,
    create_engine,
)
from pipeline.log import fold
from pipeline.session import (
    Replay,
    judged_by,
    logged_input,
    merge_settings,
    quick_transcriber,
    replay_turn_ends,
    turn_detection,
    turn_measures,
)
from pipeline.turntaking import (
    LoggedInput,
    Outcome,
    Overlap,
    backchannel_prompt,
    judge_overlap,
    logged_overlaps,
    overlap_measures,
    quantiles,
    transcribe_in,
)
from schemas import (
    ConfigurationError,
    EngineSettings,
    ErrorCode,
    Event,
    ProtocolError,
    SessionError,
    SessionSettings,
    Settings,
)
from voxline.inspect import read_session

__all__ = ["AS_LOGGED", "Evaluation", "dataset_events", "evaluate_sessions", "judged_overlaps",
           "loaded_engine", "parse_patch", "raw_patch", "spread"]

E = TypeVar("E", bound=Engine)

AS_LOGGED = "as logged"
#: the settings an evaluation may change: those that decide where turns end, and what
#: speech over a reply does
TURN_SETTINGS = frozenset({
    "turn_detection", "end_of_speech_ms", "turn_complete_ms", "turn_incomplete_ms",
    "turn_threshold", "preemptive_pause_ms", "preemptive_turns",
    "turn_judge", "turn_text_threshold", "turn_text_cues",
    "interruptions", "backchannel_max_ms",
})


def parse_patch(text: str) -> dict[str, Any]:
    """``KEY=VALUE[,KEY=VALUE...]`` (values read as JSON where they are) or a JSON
    object, of :data:`TURN_SETTINGS`; anything else is a :class:`ConfigurationError`."""
    patch = raw_patch(text)
    unknown = sorted(set(patch) - TURN_SETTINGS)
    if unknown or not patch:
        raise ConfigurationError(
            f"--evaluate takes turn-taking settings ({', '.join(sorted(TURN_SETTINGS))})"
            + (f", not {', '.join(unknown)}" if unknown else ""), setting="--evaluate")
    return patch


def raw_patch(text: str, setting: str = "--evaluate") -> dict[str, Any]:
    """``KEY=VALUE[,KEY=VALUE...]`` or a JSON object as a dict, keys unchecked."""
    text = text.strip()
    patch: dict[str, Any] = {}
    if text.startswith("{"):
        try:
            patch = dict(json.loads(text))
        except (json.JSONDecodeError, TypeError, ValueError):
            raise ConfigurationError(f"{text!r} is not a JSON object",
                                     setting=setting) from None
        return patch
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigurationError(f"{pair!r} is not KEY=VALUE", setting=setting)
        try:
            patch[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            patch[key.strip()] = value.strip()
    return patch


@dataclass
class Evaluation:
    """The sessions evaluated (and those skipped, with why), and per setting (its name:
    the patch as given, or :data:`AS_LOGGED`) each session's replay and the measures."""

    sessions: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    replays: dict[str, list[Replay]] = field(default_factory=dict)
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)


async def _loaded(stage: str, choice: EngineSettings) -> Engine | None:
    """The engine ``choice`` names for ``stage``, loaded (None: ``none``)."""
    if choice.engine == "none":
        return None
    engine = create_engine(stage, choice.engine, choice.engine_options())
    await engine.load()
    return engine


async def loaded_engine(stage: str, choice: EngineSettings, kind: type[E]) -> E:
    """The engine ``choice`` names for ``stage``, loaded; it must be a ``kind``."""
    engine = await _loaded(stage, choice)
    if not isinstance(engine, kind):
        raise ConfigurationError(f"the {stage} engine {choice.engine!r} is no "
                                 f"{kind.__name__}", setting=stage)
    return engine


async def load_engines(settings: Settings) -> tuple[VoiceActivityDetector, TurnDetector | None]:
    """The server's VAD and end-of-turn model, as its settings name them, loaded."""
    vad, turn = await _loaded("vad", settings.vad), await _loaded("turn", settings.turn)
    assert isinstance(vad, VoiceActivityDetector)
    assert turn is None or isinstance(turn, TurnDetector)
    return vad, turn


async def load_words(settings: Settings) -> tuple[Transcriber, TextTurnDetector | None]:
    """The server's transcriber and text end-of-turn model (None where it has none), as
    its settings name them, loaded: for settings that judge a pause by its words."""
    stt, text = await _loaded("stt", settings.stt), await _loaded("turn_text", settings.turn_text)
    assert isinstance(stt, Transcriber)
    assert text is None or isinstance(text, TextTurnDetector)
    return stt, text


def by_words(settings: SessionSettings, turn: TurnDetector | None, *,
             text_model: bool = True) -> bool:
    """Whether a replay with ``settings`` reads the pauses' words (smart detection, as a
    live session with the server's end-of-turn model decides it; without a ``text_model``
    only the text cues read them, as the live judge falls back to the sound)."""
    return turn_detection(settings, turn) == "smart" and (
        (text_model and judged_by(settings) == "text") or settings.turn_text_cues)


async def evaluate_sessions(
    session_ids: Sequence[str], patches: Sequence[str], settings: Settings,
    *, continuation_ms: int = 2000,
    events_of: Callable[[str], Awaitable[Sequence[Event]]] | None = None,
    with_logged: bool = True,
) -> Evaluation:
    """Replay each session's input with its own settings (unless not ``with_logged``) and
    with each patch; the sessions' events are read from the log (recorded in the audit),
    or from ``events_of`` (an exported dataset: :func:`dataset_events`)."""
    named: list[tuple[str, dict[str, Any]]] = [(AS_LOGGED, {})] if with_logged else []
    named += [(text, parse_patch(text)) for text in patches]
    result = Evaluation(replays={name: [] for name, _ in named})
    inputs: list[LoggedInput] = []
    overlaps: list[Overlap] = []
    judged: dict[str, list[Outcome]] = {name: [] for name, _ in named}
    vad, turn = await load_engines(settings)
    no_text = settings.turn_text.engine == "none"
    words: tuple[Transcriber, TextTurnDetector | None] | None = None
    try:
        for session_id in session_ids:
            events = (await read_session(session_id, settings)).events \
                if events_of is None else await events_of(session_id)
            own = fold(session_id, events).settings
            # speech over replies needs no replay (a backchannel keeps no audio): every
            # session read counts, replayed or not
            spoken_over = logged_overlaps(events)
            overlaps += spoken_over
            patched = [(name, _patched(name, own, patch)) for name, patch in named]
            for name, tried in patched:
                judged[name] += [await judge_overlap(o, tried) for o in spoken_over]
            logged = logged_input(session_id, events)
            if logged is None:
                result.skipped[session_id] = "no audio in its log (none spoken, or not kept)"
                continue
            if no_text and _judged_by_text(own, turn):
                result.skipped[session_id] = (
                    "its turns were judged by their words (turn_judge text), and no "
                    "text end-of-turn model is configured here (VOXLINE_TURN_TEXT__ENGINE)")
                continue
            tries = [(name, _checked(name, tried, turn, no_text),
                      by_words(tried, turn, text_model=not no_text)) for name, tried in patched]
            if words is None and any(reads for _, _, reads in tries):
                words = await load_words(settings)
            result.sessions.append(session_id)
            inputs.append(logged)
            for name, tried, reads in tries:
                transcribe, text = None, None
                if words is not None and reads:
                    transcribe, text = quick_transcriber(words[0], tried.language), words[1]
                result.replays[name].append(await replay_turn_ends(
                    logged, tried, vad, turn, transcribe=transcribe, text=text))
    finally:
        for engine in (vad, turn, *(words or ())):
            if engine is not None:
                await engine.close()
    result.measures = {
        name: turn_measures(replays, continuation_ms=continuation_ms, logged=inputs)
        | overlap_measures(overlaps, None if name == AS_LOGGED else judged[name])
        for name, replays in result.replays.items()}
    return result


async def judged_overlaps(read: dict[str, Sequence[Event]], patch: dict[str, Any],
                          stt: Transcriber) -> dict[str, Any]:
    """The speech over replies in ``read`` judged again by each session's settings with
    ``patch`` over them, its words heard by ``stt`` (a candidate's transcriber, prompted
    for backchannels as a live session is; a backchannel's words are the logged ones:
    its audio is not kept)."""
    overlaps: list[Overlap] = []
    judged: list[Outcome] = []
    for session_id, events in read.items():
        tried = _patched("candidate", fold(session_id, events).settings, patch)
        prompt = backchannel_prompt(tried.language)

        async def heard(audio: bytes, sample_rate: int, language: str = tried.language,
                        prompt: str | None = prompt) -> str:
            return await transcribe_in(stt, audio, sample_rate, language, quick=True,
                                       prompt=prompt)

        found = logged_overlaps(events)
        overlaps += found
        judged += [await judge_overlap(o, tried, heard) for o in found]
    return overlap_measures(overlaps, judged)


def dataset_events(folder: Path, chosen: Sequence[str] | None = None,
                   ) -> tuple[list[str], Callable[[str], Awaitable[Sequence[Event]]]]:
    """The sessions of an exported dataset (``voxline export``) to evaluate (``chosen``,
    or all it holds), and their events by id: what :func:`evaluate_sessions` reads
    instead of the log."""
    found = {session.session_id: session.events for session in read_dataset(folder)}

    async def events_of(session_id: str) -> Sequence[Event]:
        if session_id not in found:
            raise SessionError(f"no session {session_id!r} in the dataset {folder}",
                               code=ErrorCode.SESSION_NOT_FOUND)
        return found[session_id]

    return list(chosen) if chosen else sorted(found), events_of


def _judged_by_text(settings: SessionSettings, turn: TurnDetector | None) -> bool:
    """Whether a session asked for the words to judge (``turn_judge`` text, which a
    server without the text model refuses; unset follows the server, see
    :func:`by_words`)."""
    return settings.turn_judge == "text" and turn_detection(settings, turn) == "smart"


def _patched(name: str, own: SessionSettings, patch: dict[str, Any]) -> SessionSettings:
    """``own`` with ``patch`` over it, checked as a session's update is."""
    try:
        return merge_settings(own, patch)
    except ProtocolError as exc:
        raise ConfigurationError(f"--evaluate {name!r}: {exc.message}",
                                 setting="--evaluate") from None


def _checked(name: str, tried: SessionSettings, turn: TurnDetector | None,
             no_text: bool) -> SessionSettings:
    """``tried`` (a session's settings with a patch over them, :func:`_patched`) as it
    is; one asking for a model the server has not (the end-of-turn model, or with
    ``no_text`` the text one) is a :class:`ConfigurationError`."""
    if turn is None and tried.turn_detection == "smart":
        raise ConfigurationError(
            f"--evaluate {name!r} asks for smart turn detection, and no "
            "end-of-turn model is configured", setting="VOXLINE_TURN__ENGINE")
    if no_text and _judged_by_text(tried, turn):
        raise ConfigurationError(
            f"--evaluate {name!r} asks for turn_judge text, and no text end-of-turn model "
            "is configured (VOXLINE_TURN_TEXT__ENGINE is none)",
            setting="VOXLINE_TURN_TEXT__ENGINE")
    return tried


def spread(values: list[float]) -> dict[str, float] | None:
    """p50 and p95 of ``values`` (ms, rounded to 0.1); None for none."""
    found = quantiles(values)
    return None if found is None else {key: round(value, 1) for key, value in found.items()}
