"""Transcript segments as subtitles: SubRip (``srt``) and WebVTT (``vtt``).

OpenAI's transcription endpoint answers in both formats; they differ only in the header
and the millisecond separator, so both are written here from the same cues. Framework-
free so any surface (HTTP, CLI) can write them.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas import TranscriptSegment

__all__ = ["to_srt", "to_vtt"]


def _clock(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _cues(segments: Sequence[TranscriptSegment], separator: str) -> list[str]:
    return [
        f"{_clock(s.start_s, separator)} --> {_clock(max(s.end_s, s.start_s), separator)}\n"
        f"{s.text.strip()}\n"
        for s in segments
        if s.text.strip()
    ]


def to_srt(segments: Sequence[TranscriptSegment]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm`` times, a blank line between cues."""
    return "\n".join(f"{i}\n{cue}" for i, cue in enumerate(_cues(segments, ","), start=1))


def to_vtt(segments: Sequence[TranscriptSegment]) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm`` times."""
    return "\n".join(["WEBVTT\n", *_cues(segments, ".")])
