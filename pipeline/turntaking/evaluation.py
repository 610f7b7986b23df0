"""Turn-taking settings tried on logged sessions, after the fact.

Every utterance's audio is in the log (``input.audio``, with where it starts in the
session's input), and so is where each turn ended and how (``input.speech_stopped``). So
an operator can ask "what would ``end_of_speech_ms`` 800, or smart detection with
``turn_complete_ms`` 150, have done to my users' turns?" without asking the users again:
:func:`logged_input` puts the session's input back together (each utterance at its place,
silence between: the input as VAD heard it), and :func:`replay_turn_ends` runs it through
the same endpointer, VAD and end-of-turn model a live session uses
(:func:`~pipeline.turntaking.speech_input.session_endpoint`,
:func:`~pipeline.turntaking.policy.turn_policy`), with other settings. No other model is
called. Because the endpointer waits for each verdict before the next frame, the replay
decides where a live session with those settings would have, to the VAD frame (the silence
between utterances is replayed as zeros, so the VAD's state going into an utterance can
differ slightly from the live one's; and speech that began over a reply was judged live at
a shorter pause, ``HELD_PAUSE_MS``, where the replay, which plays no replies, takes a
turn's). Text cues (``turn_text_cues``) and ``turn_judge``
text need a transcriber (and a text model): without them a replay replays the end-of-turn
model's verdicts alone; ``voxline replay --evaluate`` and the turn-taking benchmark hand
:func:`replay_turn_ends` both, and each pause is then transcribed quickly (a live session
reads the transcript its preemptive turn made, where one ran: nearly always the same words).

Measures (:func:`turn_measures`): the turns, the silence each waited (end of speech to the
turn's end, p50/p95) and **continuations**: turn ends followed by more speech within
``continuation_ms`` (the speaker went on: on real traffic, the likely false cut-offs), and
**missed ends**: turns the live session ended and the user then waited after, which the
replay did not end before the user spoke again (:func:`missed_ends`). With
the true end of each session's turn (a labelled corpus), :func:`score_against_truth` gives
the benchmark's own false cut-off and end-of-turn latency.
"""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.audio import (
    EndpointConfig,
    Judge,
    SpeechEnd,
    SpeechPause,
    SpeechStart,
    resample_pcm16,
    segment_speech,
)
from pipeline.engines import TextTurnDetector, Transcriber, TurnDetector, VoiceActivityDetector
from pipeline.turntaking.policy import TurnPolicy, turn_policy
from pipeline.turntaking.speech_input import session_endpoint
from pipeline.turntaking.transcripts import transcribe_in
from schemas import Event, InputAudio, SessionSettings, SpeechStopped

__all__ = [
    "LoggedInput",
    "Replay",
    "TurnEnd",
    "logged_input",
    "missed_ends",
    "quantiles",
    "quick_transcriber",
    "replay_turn_ends",
    "score_against_truth",
    "turn_measures",
]

RATE = 16000
#: silence after the last utterance: every setting decides within it
_TAIL_MS = 11_000
#: between two utterances whose positions went back (a commit or a new speech input
#: restarted the session's clock): laid end to end with this much silence
_RESTART_GAP_MS = 1000
_CHUNK = RATE // 10 * 2  # 100 ms of PCM16
#: how much earlier than the live one a replay may place the end of the same speech
_SLACK_MS = 250
#: the endpointing a log without start_ms was cut with: its post-padding places the audio
_DEFAULT = EndpointConfig(sample_rate=RATE)


@dataclass(frozen=True)
class TurnEnd:
    """Where speech stopped, where the turn was ended (the silence waited after it), and
    the end-of-turn model's verdict there, in ms of the session's input."""

    speech_end_ms: int
    decided_ms: int
    end_of_turn: float | None = None


@dataclass(frozen=True)
class LoggedInput:
    """A session's input as its log holds it: PCM16 mono at 16 kHz (silence between the
    utterances), where speech started, and the turn ends the live session decided."""

    session_id: str
    pcm16: bytes
    speech_starts_ms: tuple[int, ...]
    live_ends: tuple[TurnEnd, ...]

    @property
    def duration_ms(self) -> int:
        return len(self.pcm16) // 2 * 1000 // RATE


def logged_input(session_id: str, events: Sequence[Event]) -> LoggedInput | None:
    """The session's input put back together from its log; None when it has no audio
    (none was spoken, or the session did not keep it: ``store_audio`` off)."""
    stopped: dict[str, SpeechStopped] = {}
    pieces: list[tuple[int, bytes]] = []
    live: list[TurnEnd] = []
    offset, reached = 0, 0
    for event in events:
        if isinstance(event, SpeechStopped) and event.turn_id is not None:
            stopped[event.turn_id] = event
        elif isinstance(event, InputAudio) and event.turn_id is not None and event.data.audio:
            data = event.data
            stop = stopped.get(event.turn_id)
            start = data.start_ms
            if start is None:  # an older log: from where speech stopped, padding included
                if stop is None:
                    continue
                padding = min(_DEFAULT.post_padding_ms, stop.data.silence_ms or 0)
                start = max(0, stop.data.audio_ms + padding - data.duration_ms)
            if start + offset < reached:
                offset = reached + _RESTART_GAP_MS - start
            pcm = data.audio if data.sample_rate == RATE else resample_pcm16(
                data.audio, data.sample_rate, RATE)
            pieces.append((start + offset, pcm))
            reached = start + offset + len(pcm) // 2 * 1000 // RATE
            if stop is not None and stop.data.silence_ms is not None:
                at = stop.data.audio_ms + offset
                live.append(TurnEnd(at, at + stop.data.silence_ms, stop.data.end_of_turn))
    if not pieces:
        return None
    audio = bytearray((reached + _TAIL_MS) * RATE // 1000 * 2)
    starts = []
    for start_ms, pcm in pieces:
        at = start_ms * RATE // 1000 * 2
        audio[at : at + len(pcm)] = pcm
        starts.append(start_ms)
    return LoggedInput(session_id, bytes(audio), tuple(starts), tuple(live))


async def replay_turn_ends(
    logged: LoggedInput,
    settings: SessionSettings,
    vad: VoiceActivityDetector,
    turn: TurnDetector | None = None,
    *,
    base: EndpointConfig | None = None,
    on_judged: Callable[[SpeechPause, float | None], None] | None = None,
    transcribe: Callable[[bytes, int], Awaitable[str]] | None = None,
    text: TextTurnDetector | None = None,
) -> tuple[list[TurnEnd], list[int]]:
    """Where a live session with ``settings`` would have ended the turns of ``logged``
    (and where it heard speech start). ``turn_detection`` ``smart`` (or unset) judges with
    ``turn`` when one is given; the VAD must be loaded and take 16 kHz. ``on_judged`` hears
    of each pause judged, with the model's verdict (None: it failed). ``transcribe`` and
    ``text`` judge by the words (``turn_judge`` text), as a live session does; without
    them the audio model judges, whatever the settings say."""
    policy = turn_policy(lambda: settings, turn, RATE, name=logged.session_id,
                         transcribe=transcribe, text=text)
    judge = policy.judge
    if judge is not None and on_judged is not None:
        judge = _observed(policy, on_judged)
    config = session_endpoint(base or _DEFAULT, settings, policy.judges_pauses)

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(logged.pcm16), _CHUNK):
            yield logged.pcm16[at : at + _CHUNK]

    ends: list[TurnEnd] = []
    starts: list[int] = []
    async for event in segment_speech(chunks(), vad, config, judge=judge):
        if isinstance(event, SpeechStart):
            starts.append(event.audio_ms)
        elif isinstance(event, SpeechEnd) and event.reason != "flush":
            verdict = policy.take()
            ends.append(TurnEnd(event.audio_ms, event.audio_ms + event.silence_ms, verdict))
    return ends, starts


def quick_transcriber(stt: Transcriber, language: str) -> Callable[[bytes, int], Awaitable[str]]:
    """A replay's ``transcribe``: a pause's words as a live session's judge asks for them
    when no preemptive turn transcribed that audio (a quick transcription in the session's
    language: :func:`~pipeline.turntaking.transcripts.transcribe_in`)."""
    async def transcribe(audio: bytes, sample_rate: int) -> str:
        return await transcribe_in(stt, audio, sample_rate, language, quick=True)
    return transcribe


def _observed(model: TurnPolicy, on_judged: Callable[[SpeechPause, float | None], None]
              ) -> Judge:
    async def judge(pause: SpeechPause) -> int | None:
        silence = await model(pause)
        on_judged(pause, model.verdict)
        return silence

    return judge


#: one session's replay: its turn ends, and where it heard speech start
Replay = tuple[Sequence[TurnEnd], Sequence[int]]


def turn_measures(replays: Sequence[Replay], *, continuation_ms: int = 2000,
                  logged: Sequence[LoggedInput] | None = None) -> dict[str, Any]:
    """Over the sessions' replays: the turns, the silence they waited, and the turn ends
    that speech followed within ``continuation_ms`` (on real traffic, the likely
    cut-offs), counted within each session. With the sessions' ``logged`` input (one per
    replay, in order), the **missed ends** too: of the turns the live session ended and
    the user then waited after (no speech for ``continuation_ms``: turns that truly
    ended), those the replay did not end before the user spoke again (:func:`missed_ends`)."""
    ends = [end for session_ends, _ in replays for end in session_ends]
    continued = sum(
        any(end.decided_ms <= start < end.decided_ms + continuation_ms for start in starts)
        for session_ends, starts in replays for end in session_ends
    )
    measures = {
        "sessions": len(replays),
        "turns": len(ends),
        "silence_waited_ms": quantiles([end.decided_ms - end.speech_end_ms for end in ends]),
        "continued": continued,
        "continued_rate": round(continued / len(ends), 4) if ends else None,
    }
    if logged is not None:
        counts = [missed_ends(inputs, session_ends, waited_ms=continuation_ms)
                  for inputs, (session_ends, _) in zip(logged, replays, strict=True)]
        answered, missed = sum(c[0] for c in counts), sum(c[1] for c in counts)
        measures |= {"ended": answered, "missed": missed,
                     "missed_rate": round(missed / answered, 4) if answered else None}
    return measures


def missed_ends(logged: LoggedInput, ends: Sequence[TurnEnd], *, waited_ms: int
                ) -> tuple[int, int]:
    """How many of the live session's turn ends the user then waited after (no speech
    started within ``waited_ms`` of the end), and how many of those ``ends`` (a replay's)
    missed: none decided after that speech stopped (less :data:`_SLACK_MS`: VAD frames
    fall a little differently from zeros) and before the user spoke again. A turn the
    replay never ended there merges into the next: the user waited for an answer that a
    session with those settings would not have given."""
    answered = missed = 0
    for live in logged.live_ends:
        after = [start for start in logged.speech_starts_ms if start > live.speech_end_ms]
        spoke_again = min(after, default=None)
        if spoke_again is not None and spoke_again < live.decided_ms + waited_ms:
            continue  # speech went on: a continuation, not a turn that ended
        answered += 1
        limit = spoke_again if spoke_again is not None else logged.duration_ms
        if not any(live.speech_end_ms - _SLACK_MS <= end.speech_end_ms and end.decided_ms < limit
                   for end in ends):
            missed += 1
    return answered, missed


def score_against_truth(ends: Sequence[TurnEnd], true_end_ms: int) -> tuple[bool, int | None]:
    """One labelled turn (its speech truly ends at ``true_end_ms``): was it cut off (a turn
    ended before that), and how long after that did its turn end (None: never)."""
    cut = any(end.decided_ms < true_end_ms for end in ends)
    final = [end.decided_ms for end in ends if end.decided_ms >= true_end_ms]
    return cut, (final[0] - true_end_ms) if final else None


def quantiles(values: Sequence[float]) -> dict[str, float] | None:
    """p50 and p95 of ``values`` (the p95 the nearest rank below); None for none: the
    evaluations' figures of a spread (silence waited here, stage times in ``voxline
    evaluate``)."""
    if not values:
        return None
    ordered = sorted(values)
    return {"p50": float(statistics.median(ordered)),
            "p95": float(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))])}
