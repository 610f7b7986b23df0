"""What ``voxline evaluate`` tries: candidate configurations, each a name and a patch.

A candidate is written ``NAME=SPEC`` (or ``SPEC`` alone, named by itself), where ``SPEC``
is a JSON object or ``KEY=VALUE[,KEY=VALUE...]``:

* turn-taking settings (``turn_detection``, ``end_of_speech_ms``, ... :data:`TURN_SETTINGS`
  of :mod:`voxline.evaluate`), laid over each session's own settings as logged;
* ``stt_model`` (and optionally ``stt_engine``, default ``faster-whisper``): the
  transcriber the candidate hears the utterances with; without it, the server's.

Anything else is refused with the keys there are: a candidate that would silently try
nothing is worse than none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from schemas import ConfigurationError, EngineSettings
from voxline.evaluate import AS_LOGGED, parse_patch, raw_patch

__all__ = ["Candidate", "parse_candidate"]

_NAMED = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<spec>\{.*|[^=]*=.*)$", re.DOTALL)
_STT_KEYS = ("stt_model", "stt_engine")


@dataclass(frozen=True)
class Candidate:
    """One configuration to try: its name, its turn-taking patch, its transcriber."""

    name: str
    turn_patch: dict[str, Any] = field(default_factory=dict)
    #: the transcriber's engine settings; None: the server's
    stt: EngineSettings | None = None

    @property
    def turn_key(self) -> str:
        """How :func:`voxline.evaluate.evaluate_sessions` names this turn-taking patch."""
        return json.dumps(self.turn_patch, sort_keys=True) if self.turn_patch else AS_LOGGED

    def describe(self) -> dict[str, Any]:
        return {"turn_taking": self.turn_patch,
                "stt": None if self.stt is None else {"engine": self.stt.engine,
                                                      **self.stt.engine_options()}}


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
    turn_patch = parse_patch(json.dumps(raw)) if raw else {}
    engine = None
    if stt:
        if "stt_model" not in stt:
            raise ConfigurationError(f"candidate {name!r}: stt_engine needs stt_model",
                                     setting="--candidate")
        engine = EngineSettings(engine=str(stt.get("stt_engine", "faster-whisper")),
                                model=str(stt["stt_model"]))
    return Candidate(name, turn_patch, engine)
