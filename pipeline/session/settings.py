"""Settings merging: a client's patch over a session's settings, taken whole or refused whole.

Creating a session and ``session.update`` both go through :func:`merge_settings`, so a
bad value is the same client error wherever it is sent, and nothing half-applied ever
reaches the log. Given the :class:`EngineChoices` (what the synthesizer declares in its
``describe()``), a voice or language the engines do not have is refused there too
(``unknown_voice``, ``unsupported_language``), instead of failing every later turn.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas import (
    ErrorCode,
    InvalidAudioError,
    McpTool,
    ProtocolError,
    ServerTool,
    SessionSettings,
)

#: settings whose only failure is a rate answer ``unsupported_sample_rate``
_RATE_FIELDS = (("input_sample_rate",), ("output_sample_rate",))


@dataclass(frozen=True)
class EngineChoices:
    """The voices and languages a session may choose, as the synthesizer declares them,
    and whether it may ask for smart turn detection.

    ``voices`` lower case, ``None`` when not known (nothing checked); an empty set means
    the engine's default voice only. ``languages`` are tags (``de``, ``en-us``): a
    language is spoken when it or a prefix of it is listed; empty: not checked.
    """

    voices: frozenset[str] | None = None
    languages: tuple[str, ...] = ()
    #: whether the server has an end-of-turn model (smart turn detection); None: unknown
    smart_turn: bool | None = None
    #: whether it has a text end-of-turn model (``turn_judge`` text); None: unknown
    text_turn: bool | None = None
    #: the server tools a session may declare (``VOXLINE_TOOLS__ALLOW``); None: unknown
    server_tools: frozenset[str] | None = None
    #: the MCP servers' labels a session may attach (``VOXLINE_TOOLS__MCP_SERVERS``)
    mcp_servers: frozenset[str] | None = None

    @classmethod
    def from_description(cls, info: Mapping[str, Any]) -> EngineChoices:
        """From a synthesizer's ``describe()`` (which may come from another process)."""
        voices, languages = info.get("voices"), info.get("languages")
        return cls(
            frozenset(str(v).lower() for v in voices) if isinstance(voices, list) else None,
            tuple(str(t).lower().replace("_", "-") for t in languages or ()),
        )

    def check(self, settings: SessionSettings, fields: Collection[str]) -> None:
        """Refuse the ``fields`` of ``settings`` (those the client set) the engines lack."""
        voice, voices = settings.voice, self.voices
        if "voice" in fields and voice is not None and voices is not None and (
            voice.strip().lower() not in voices
        ):
            known = ", ".join(sorted(voices)[:20]) or "only the default (null)"
            raise ProtocolError(f"unknown voice {voice!r}; this server has: {known}",
                                code=ErrorCode.UNKNOWN_VOICE, voice=voice)
        if "turn_detection" in fields and settings.turn_detection == "smart" and (
            self.smart_turn is False
        ):
            raise ProtocolError(
                "this server has no end-of-turn model (VOXLINE_TURN__ENGINE=none): "
                "turn_detection smart is not available, silence is",
                code=ErrorCode.INVALID_SETTINGS, param="turn_detection",
            )
        if "turn_judge" in fields and settings.turn_judge == "text" and (
            self.text_turn is False
        ):
            raise ProtocolError(
                "this server has no text end-of-turn model (VOXLINE_TURN_TEXT__ENGINE=none): "
                "turn_judge text is not available, audio is",
                code=ErrorCode.INVALID_SETTINGS, param="turn_judge",
            )
        if "tools" in fields:
            self._check_tools(settings)
        if "language" in fields and self.languages and not self.speaks(settings.language):
            raise ProtocolError(
                f"the engines cannot speak the language {settings.language!r}",
                code=ErrorCode.UNSUPPORTED_LANGUAGE, language=settings.language,
            )

    def _check_tools(self, settings: SessionSettings) -> None:
        """Server tools and MCP servers the operator has not enabled are refused."""
        for index, tool in enumerate(settings.tools):
            if isinstance(tool, ServerTool):
                what, name, known, setting = ("server tool", tool.name, self.server_tools,
                                              "VOXLINE_TOOLS__ALLOW")
            elif isinstance(tool, McpTool):
                what, name, known, setting = ("MCP server", tool.server_label,
                                              self.mcp_servers, "VOXLINE_TOOLS__MCP_SERVERS")
            else:
                continue
            if known is not None and name not in known:
                raise ProtocolError(
                    f"{what} {name!r} is not enabled here (enabled: "
                    f"{', '.join(sorted(known)) or 'none'}; {setting})",
                    code=ErrorCode.TOOL_NOT_ALLOWED, param=f"tools.{index}")

    def speaks(self, language: str) -> bool:
        tag = language.strip().lower().replace("_", "-")
        while tag:
            if tag in self.languages:
                return True
            tag = tag.rpartition("-")[0]
        return False


def merge_settings(
    settings: SessionSettings, patch: dict[str, object], choices: EngineChoices | None = None
) -> SessionSettings:
    """``patch`` validated whole over ``settings``, or refused whole with a client error:
    ``unsupported_sample_rate`` when a rate is all that is wrong, else ``invalid_settings``;
    with ``choices``, a voice or language the patch sets that the engines lack is
    ``unknown_voice`` / ``unsupported_language``.
    """
    merged = _merged(settings, patch)
    if choices is not None:
        choices.check(merged, patch.keys())
    return merged


def _merged(settings: SessionSettings, patch: dict[str, object]) -> SessionSettings:
    try:
        return settings.merged(patch)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        if all(e["loc"][:1] in _RATE_FIELDS for e in errors):
            raise InvalidAudioError(
                f"unsupported sample rate: {problems}", code=ErrorCode.UNSUPPORTED_SAMPLE_RATE
            ) from None
        raise ProtocolError(
            f"invalid settings: {problems}", code=ErrorCode.INVALID_SETTINGS
        ) from None
