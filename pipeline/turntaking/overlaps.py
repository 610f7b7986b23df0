"""Speech over a reply, as the log tells it, and judged again under other settings.

A listener who speaks while a reply plays either acknowledges ("mm-hm": a backchannel,
the reply goes on) or interrupts (a barge-in: the reply is cancelled and the speech is
the next turn). The log holds both: with ``interruptions: confirmed`` a
``response.paused`` where the speech began, then ``response.resumed`` (a backchannel,
with what was heard) or ``response.cancelled`` with reason ``barge_in``; with
``immediate`` the cancel alone, then the speech. A backchannel makes no turn, so its
words are in ``response.resumed`` and its audio is not kept; a barge-in is a turn, with
its ``input.audio`` and transcript. A reply written out in full but still playing has
nothing left to cancel: speech judged no backchannel over it leaves no
``response.cancelled``, only the next turn.

:func:`logged_overlaps` finds each overlap and its outcome; :func:`judge_overlap` says
what another setting (``interruptions``, ``backchannel_max_ms``, another transcriber)
would have made of it, by the live session's own rule
(:func:`~pipeline.turntaking.backchannel.heard_backchannel`). Two differences from live,
both small: the live session judges at the speech's first pause, the replay the whole
utterance (a backchannel has no later words; a long interruption is too long either way);
and a transcriber can hear again only a barge-in's audio, a backchannel's words are the
logged ones. :func:`overlap_measures` counts them for the evaluations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.turntaking.backchannel import heard_backchannel
from schemas import (
    Event,
    InputAudio,
    ResponseCancelled,
    ResponsePaused,
    ResponseResumed,
    SessionSettings,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
)

__all__ = ["Outcome", "Overlap", "judge_overlap", "logged_overlaps", "overlap_measures"]

#: what speech over a reply was: the reply went on, or it was cancelled
Outcome = Literal["backchannel", "barge_in"]


@dataclass(frozen=True)
class Overlap:
    """One run of speech over a reply: where it started and stopped in the session's
    input (ms; ``stop_ms`` None: the log ends first), what the live session made of it,
    and what it said. A barge-in's ``turn_id`` is the turn it became (its audio is that
    turn's ``input.audio``: ``audio`` and ``sample_rate``, where it was kept)."""

    reply_turn_id: str | None
    start_ms: int
    stop_ms: int | None
    outcome: Outcome
    transcript: str = ""
    turn_id: str | None = None
    audio: bytes = b""
    sample_rate: int = 16000

    @property
    def duration_ms(self) -> int:
        return 0 if self.stop_ms is None else max(self.stop_ms - self.start_ms, 0)


@dataclass(eq=False)
class _Open:
    """An overlap being read: started (``start_ms``) or not yet (a paused onset); each
    is itself (compared by identity)."""

    reply: str | None
    start_ms: int | None = None
    outcome: Outcome | None = None
    transcript: str = ""
    turn_id: str | None = None
    stop_ms: int | None = None


def logged_overlaps(events: Sequence[Event]) -> list[Overlap]:
    """Every overlap in a session's events, in order (see the module docstring). A pause
    that VAD dropped before speech started (a click) or that a clear ended is none."""
    found: list[_Open] = []
    held: _Open | None = None  # paused, not yet judged
    ending: _Open | None = None  # judged, until its speech stops
    barged: _Open | None = None  # immediate: cancelled before its speech started
    speaking: int | None = None  # where the speech now going on started (None: stopped)
    audio: dict[str, InputAudio] = {}
    words: dict[str, str] = {}
    for event in events:
        if isinstance(event, ResponsePaused):
            if ending is not None and ending.reply == event.turn_id and ending.stop_ms is None:
                # resumed at a pause, then spoke on: judged again (a backchannel until then)
                held, ending = ending, None
            elif held is None:
                held = _Open(event.turn_id)
        elif isinstance(event, SpeechStarted):
            speaking = event.data.audio_ms
            for run in (held, barged):
                if run is not None and run.start_ms is None:
                    run.start_ms = speaking
            if barged is not None:
                ending, barged = barged, None
        elif isinstance(event, ResponseResumed) and held is not None:
            if held.start_ms is not None:
                held.outcome, held.transcript = "backchannel", event.data.transcript
                if held not in found:
                    found.append(held)
                if speaking is None:  # judged at its end: resumed where it stopped
                    held.stop_ms = event.data.audio_ms
                else:  # judged at a pause: it stops later
                    ending = held
            held = None
        elif isinstance(event, ResponseCancelled) and event.data.reason == "barge_in":
            run = held or _Open(event.turn_id, speaking, "barge_in")
            run.outcome, held = "barge_in", None
            if run not in found:
                found.append(run)
            if run.start_ms is None:
                barged = run
            else:
                ending = run
        elif isinstance(event, SpeechStopped):
            if held is not None and held.start_ms is not None and event.turn_id is not None:
                # judged no backchannel when its reply was written out (nothing left to
                # cancel): the speech became the next turn, so the reply stopped for good
                held.outcome, ending, held = "barge_in", held, None
                if ending not in found:
                    found.append(ending)
            if ending is not None:
                ending.stop_ms, ending.turn_id = event.data.audio_ms, event.turn_id
                ending = None
            speaking = None
        elif isinstance(event, InputAudio) and event.turn_id is not None:
            audio[event.turn_id] = event
        elif isinstance(event, TranscriptFinal) and event.turn_id is not None:
            words[event.turn_id] = event.data.text
    return [_closed(run, audio, words) for run in found if run.start_ms is not None]


def _closed(run: _Open, audio: dict[str, InputAudio], words: dict[str, str]) -> Overlap:
    assert run.start_ms is not None and run.outcome is not None
    if run.outcome == "backchannel" or run.turn_id is None:
        return Overlap(run.reply, run.start_ms, run.stop_ms, run.outcome, run.transcript)
    kept = audio.get(run.turn_id)
    return Overlap(run.reply, run.start_ms, run.stop_ms, "barge_in",
                   words.get(run.turn_id, ""), run.turn_id,
                   kept.data.audio if kept is not None else b"",
                   kept.data.sample_rate if kept is not None else 16000)


async def judge_overlap(
    overlap: Overlap, settings: SessionSettings,
    transcribe: Callable[[bytes, int], Awaitable[str]] | None = None,
) -> Outcome:
    """What a session with ``settings`` would have made of ``overlap``: ``immediate``
    cancels at once; ``confirmed`` lets a backchannel (or no words) play on and cancels
    for anything else, or for speech longer than ``backchannel_max_ms``. The words are
    ``transcribe``'s (prompted for backchannels, as live) where it is given and the
    audio was kept, else those logged."""
    if settings.interruptions == "immediate":
        return "barge_in"

    async def words() -> str:
        if transcribe is not None and overlap.audio:
            return await transcribe(overlap.audio, overlap.sample_rate)
        return overlap.transcript

    heard = await heard_backchannel(overlap.duration_ms, settings.backchannel_max_ms, words)
    return "backchannel" if heard is not None else "barge_in"


def overlap_measures(logged: Sequence[Overlap], judged: Sequence[Outcome] | None = None,
                     ) -> dict[str, Any]:
    """The overlaps, and how many were backchannels and barge-ins: as logged, or as
    ``judged`` (one outcome per overlap), with how many of them changed."""
    outcomes = [o.outcome for o in logged] if judged is None else list(judged)
    changed = sum(o.outcome != outcome for o, outcome in zip(logged, outcomes, strict=True))
    return {"overlaps": len(outcomes),
            "backchannels": outcomes.count("backchannel"),
            "barge_ins": outcomes.count("barge_in"),
            "overlaps_changed": changed}
