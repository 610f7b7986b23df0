"""What ``voxline evaluate`` tries: candidate configurations, each a name and a patch.

A candidate is written ``NAME=SPEC`` (or ``SPEC`` alone, named by itself), where ``SPEC``
is a JSON object or ``KEY=VALUE[,KEY=VALUE...]``:

* turn-taking settings (``turn_detection``, ``end_of_speech_ms``, ... :data:`TURN_SETTINGS`
  of :mod:`voxline.evaluate`), laid over each session's own settings as logged;
* ``stt_model`` (and optionally ``stt_engine``, default ``faster-whisper``): the
  transcriber the candidate hears the utterances with; without it, the server's;
  ``stt_options`` (likewise ``llm_options``, ``tts_options``): the engine's options,
  over the server's engine's own when the candidate names no engine (a window, a beam);
* the reply: ``system_prompt``, ``tools``, ``tool_choice`` and sampling (``temperature``,
  ``top_p``, ``max_tokens``, ``seed``) over each session's own, and ``llm_model``
  (optionally ``llm_engine``, default the server's): each logged turn is asked again
  with the dialogue as it stood (:mod:`voxline.evaluate_answers`). A candidate without
  any of these leaves the answers alone;
* the speech: ``voice`` and ``speech_speed`` over each session's own, and ``tts_model``
  (optionally ``tts_engine``, default the server's): each logged reply spoken again and
  heard back (:mod:`voxline.evaluate_speech`).

Anything else is refused with the keys there are: a candidate that would silently try
nothing is worse than none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.session import merge_settings
from schemas import ConfigurationError, EngineSettings, SessionSettings, VoxlineError
from voxline.evaluate import AS_LOGGED, TURN_SETTINGS, parse_patch, raw_patch

__all__ = ["Candidate", "parse_candidate", "reply_settings", "resolved"]

_NAMED = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<spec>\{.*|[^=]*=.*)$", re.DOTALL)
_STT_KEYS = ("stt_model", "stt_engine", "stt_options")
_LLM_KEYS = ("llm_model", "llm_engine", "llm_options")
_SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed")
_REPLY_KEYS = ("system_prompt", "tools", "tool_choice", *_SAMPLING_KEYS)
_TTS_KEYS = ("tts_model", "tts_engine", "tts_options")
_SPEECH_KEYS = ("voice", "speech_speed")


@dataclass(frozen=True)
class Candidate:
    """One configuration to try: its name, its turn-taking patch, its transcriber."""

    name: str
    turn_patch: dict[str, Any] = field(default_factory=dict)
    #: the transcriber's engine settings; None: the server's
    stt: EngineSettings | None = None
    #: the reply's settings over the session's (system_prompt, sampling), as a patch
    reply_patch: dict[str, Any] = field(default_factory=dict)
    #: the language model's engine settings; None: the server's
    llm: EngineSettings | None = None

    #: the speech's settings over the session's (voice, speech_speed)
    speech_patch: dict[str, Any] = field(default_factory=dict)
    #: the synthesizer's engine settings; None: the server's
    tts: EngineSettings | None = None

    @property
    def tries_speech(self) -> bool:
        """Whether this candidate speaks the replies differently from the log."""
        return bool(self.speech_patch) or self.tts is not None

    @property
    def tries_answers(self) -> bool:
        """Whether this candidate answers differently from the logged replies."""
        return bool(self.reply_patch) or self.llm is not None

    @property
    def turn_key(self) -> str:
        """How :func:`voxline.evaluate.evaluate_sessions` names this turn-taking patch."""
        return json.dumps(self.turn_patch, sort_keys=True) if self.turn_patch else AS_LOGGED

    def to_json(self) -> dict[str, Any]:
        """This candidate as JSON (what :meth:`from_json` takes back): for its process."""
        return {"name": self.name, "turn_patch": self.turn_patch,
                "reply_patch": self.reply_patch, "speech_patch": self.speech_patch,
                **{stage: None if choice is None else choice.model_dump(mode="json")
                   for stage, choice in (("stt", self.stt), ("llm", self.llm),
                                         ("tts", self.tts))}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        engines = {stage: None if data[stage] is None else EngineSettings(**data[stage])
                   for stage in ("stt", "llm", "tts")}
        return cls(data["name"], data["turn_patch"], engines["stt"], data["reply_patch"],
                   engines["llm"], data["speech_patch"], engines["tts"])

    def describe(self) -> dict[str, Any]:
        return {"turn_taking": self.turn_patch, "stt": _engine(self.stt),
                "reply": self.reply_patch, "llm": _engine(self.llm),
                "speech": self.speech_patch, "tts": _engine(self.tts)}


def _engine(choice: EngineSettings | None) -> dict[str, Any] | None:
    return None if choice is None else {"engine": choice.engine, **choice.engine_options()}


def parse_candidate(text: str) -> Candidate:
    """``NAME=SPEC`` or ``SPEC`` (see the module docstring)."""
    text = text.strip()
    named = _NAMED.match(text)
    name, spec = (named["name"], named["spec"]) if named else (text, text)
    if name == AS_LOGGED:
        raise ConfigurationError(f"{AS_LOGGED!r} names what the sessions did; call the "
                                 "candidate something else", setting="--candidate")
    raw = raw_patch(spec, "--candidate")
    stt = {key: raw.pop(key) for key in _STT_KEYS if key in raw}
    llm = {key: raw.pop(key) for key in _LLM_KEYS if key in raw}
    reply = {key: raw.pop(key) for key in _REPLY_KEYS if key in raw}
    tts = {key: raw.pop(key) for key in _TTS_KEYS if key in raw}
    speech = {key: raw.pop(key) for key in _SPEECH_KEYS if key in raw}
    unknown = sorted(set(raw) - TURN_SETTINGS)
    if unknown:
        known = ", ".join([*sorted(TURN_SETTINGS), *_STT_KEYS, *_LLM_KEYS, *_REPLY_KEYS,
                           *_TTS_KEYS, *_SPEECH_KEYS])
        raise ConfigurationError(f"candidate {name!r}: {', '.join(unknown)} cannot be tried; "
                                 f"a candidate sets {known}", setting="--candidate")
    turn_patch = parse_patch(json.dumps(raw)) if raw else {}
    if reply or speech:
        _check_settings(name, reply, speech)
    return Candidate(name, turn_patch, _engine_choice(name, "stt", stt, "faster-whisper"),
                     reply, _engine_choice(name, "llm", llm, None),
                     speech, _engine_choice(name, "tts", tts, None))


def _engine_choice(name: str, stage: str, keys: dict[str, Any],
                   default: str | None) -> EngineSettings | None:
    """``<stage>_model``, ``<stage>_engine`` and ``<stage>_options`` as engine settings.
    A model without an engine runs on ``default`` (None: the server's engine); options
    alone change the server's engine's options (``engine`` left empty: :func:`resolved`
    fills it in when the evaluation runs)."""
    if not keys:
        return None
    options = keys.get(f"{stage}_options", {})
    if not isinstance(options, dict):
        raise ConfigurationError(f"candidate {name!r}: {stage}_options is a JSON object",
                                 setting="--candidate")
    if f"{stage}_model" not in keys:
        if f"{stage}_engine" in keys:
            raise ConfigurationError(f"candidate {name!r}: {stage}_engine needs "
                                     f"{stage}_model", setting="--candidate")
        return EngineSettings(engine="", options=options)
    return EngineSettings(engine=str(keys.get(f"{stage}_engine", default or "")),
                          options=options, model=str(keys[f"{stage}_model"]))


def resolved(choice: EngineSettings | None, server: EngineSettings) -> EngineSettings:
    """The engine a candidate runs for a stage: the server's where it names none, its
    options over the server's where it names no engine, else its own as it is."""
    if choice is None:
        return server
    if choice.engine:
        return choice
    return EngineSettings(engine=server.engine,
                          options={**server.engine_options(), **choice.engine_options()})


def reply_settings(reply: dict[str, Any]) -> dict[str, Any]:
    """A candidate's reply patch as a patch of session settings (sampling nested)."""
    sampling = {key: value for key, value in reply.items() if key in _SAMPLING_KEYS}
    return {**{key: value for key, value in reply.items() if key not in _SAMPLING_KEYS},
            **({"sampling": sampling} if sampling else {})}


def _check_settings(name: str, reply: dict[str, Any], speech: dict[str, Any]) -> None:
    """The reply and speech patches valid over the defaults, as a session's update is
    checked (:func:`pipeline.session.merge_settings`), or a :class:`ConfigurationError`."""
    try:
        merge_settings(SessionSettings(), {**reply_settings(reply), **speech})
    except VoxlineError as exc:
        raise ConfigurationError(f"candidate {name!r}: {exc.message}",
                                 setting="--candidate") from None
