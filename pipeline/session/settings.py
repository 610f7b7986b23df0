"""Settings merging: a client's patch over a session's settings, taken whole or refused whole.

Creating a session and ``session.update`` both go through :func:`merge_settings`, so a
bad value is the same client error wherever it is sent, and nothing half-applied ever
reaches the log.
"""

from __future__ import annotations

from pydantic import ValidationError

from schemas import ErrorCode, InvalidAudioError, ProtocolError, SessionSettings

#: settings whose only failure is a rate answer ``unsupported_sample_rate``
_RATE_FIELDS = (("input_sample_rate",), ("output_sample_rate",))


def merge_settings(settings: SessionSettings, patch: dict[str, object]) -> SessionSettings:
    """``patch`` validated whole over ``settings``, or refused whole with a client error:
    ``unsupported_sample_rate`` when a rate is all that is wrong, else ``invalid_settings``.
    """
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
