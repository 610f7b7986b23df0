"""The end-of-turn model's verdict on a pause, as the silence that ends the turn there.

Smart turn detection (``turn_detection: smart``): at each pause of ``preemptive_pause_ms``
the model hears the turn so far; a turn that sounds complete (``turn_threshold``) ends
after ``turn_complete_ms`` of silence, one that does not only after ``turn_incomplete_ms``
(the endpointer's own silence, so ``None``), and a failed verdict falls back to
``end_of_speech_ms``. With ``turn_text_cues``, a pause the model judged complete is
transcribed too (a quick transcription), and a transcript that reads unfinished
(:mod:`pipeline.turntaking.turn_text`) makes it incomplete after all; a failed transcription
leaves the model's verdict.

With ``turn_judge: text`` (the default for English, :func:`judged_by`) the words judge
instead of the sound: every pause is transcribed
(quickly, or read from the transcript a preemptive turn makes of the same audio: see
``VoiceTurns._pause_transcript``) and a language model
(:class:`~pipeline.engines.TextTurnDetector`) says how likely they end a request
(``turn_text_threshold``); the text cues keep a turn that reads unfinished open whatever
it says. On the turn-taking corpus the audio model tells pauses
inside turns from turn ends no better than chance and the words do (``bench_turn_taking
--part pauses``). A pause with no words yet, or a failed transcription or verdict, ends
after ``end_of_speech_ms``, as a failed audio verdict does.

A live session (:mod:`pipeline.session.voice_turns`) and the replay evaluation
(:mod:`pipeline.turntaking.evaluation`) both judge with this, so a replay decides exactly as
the live session would have with the same settings (text cues and the text judge aside:
a replay transcribes each pause quickly, where a live session may read its preemptive
turn's transcript of the same audio).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from pipeline.audio import SpeechPause, resample_pcm16
from pipeline.engines import TextTurnDetector, TurnDetector
from pipeline.turntaking.turn_text import sounds_unfinished
from schemas import SessionSettings, primary_language

__all__ = ["WORDS_BY_DEFAULT", "TurnJudge", "judged_by", "turn_detection"]

logger = logging.getLogger(__name__)


def turn_detection(
    settings: SessionSettings, detector: TurnDetector | None
) -> Literal["silence", "smart"]:
    """What ends a session's turns: ``smart`` needs an end-of-turn model (settings asking
    for it where there is none are refused when made), and is the default where there is
    one."""
    if detector is None:
        return "silence"
    return settings.turn_detection or "smart"


#: languages (primary subtags) whose pauses the words judge when ``turn_judge`` is unset.
#: On the turn-taking corpus (``bench_turn_taking --part end-of-turn``) the words cut off
#: 5 % of the English turns where the audio model cut off 41 %, at the same end-of-turn
#: p50 and no measurable cost in voice-to-voice latency; German quick transcripts of short
#: pauses were too poor (German turn ends waited ~2 s), so German keeps the audio model.
WORDS_BY_DEFAULT = frozenset({"en"})


def judged_by(settings: SessionSettings) -> Literal["audio", "text"]:
    """What judges a session's pauses, its default resolved: the words in the languages of
    :data:`WORDS_BY_DEFAULT`, the sound otherwise. (Words need the server's text model; a
    :class:`TurnJudge` without one judges by the sound whatever this says.)"""
    if settings.turn_judge is not None:
        return settings.turn_judge
    return "text" if primary_language(settings.language) in WORDS_BY_DEFAULT else "audio"


class TurnJudge:
    """A segmenter's ``judge`` (:data:`pipeline.audio.Judge`) over one input stream.

    ``input_rate`` is the rate of the pauses' audio: the segmenter's (the VAD's), not the
    session's input rate, which the speech input resamples from. ``settings`` is read at
    each pause (a session's may change between pauses); :attr:`verdict` is the latest
    pause's probability, ``None`` until one was judged or after :meth:`take`.
    ``transcribe`` (PCM16 at ``input_rate`` to text) reads the text cues; without it there
    are none, whatever the settings say. ``text`` judges transcripts (``turn_judge:
    text``); without it, or without ``transcribe``, the audio model judges.
    """

    def __init__(self, detector: TurnDetector, settings: Callable[[], SessionSettings],
                 input_rate: int, *, name: str = "",
                 transcribe: Callable[[bytes, int], Awaitable[str]] | None = None,
                 text: TextTurnDetector | None = None) -> None:
        self.detector = detector
        self.settings = settings
        self.input_rate = input_rate
        self.name = name
        self.transcribe = transcribe
        self.text = text
        self.verdict: float | None = None

    async def __call__(self, pause: SpeechPause) -> int | None:
        settings = self.settings()
        if judged_by(settings) == "text" and self.text is not None and (
                self.transcribe is not None):
            return await self._judged_by_words(pause, settings, self.text, self.transcribe)
        audio = pause.audio
        if self.input_rate != self.detector.sample_rate:
            audio = resample_pcm16(audio, self.input_rate, self.detector.sample_rate)
        try:
            self.verdict = await self.detector.completion(audio)
        except Exception:
            logger.warning("%s: the end-of-turn model failed; this pause ends after "
                           "end_of_speech_ms", self.name, exc_info=True)
            self.verdict = None
            return settings.end_of_speech_ms
        if self.verdict >= settings.turn_threshold and not await self._reads_unfinished(
                pause, settings):
            return settings.turn_complete_ms
        return None

    async def _reads_unfinished(self, pause: SpeechPause, settings: SessionSettings) -> bool:
        if not settings.turn_text_cues or self.transcribe is None:
            return False
        try:
            text = await self.transcribe(pause.audio, self.input_rate)
        except Exception:
            logger.warning("%s: no transcript for the text cues; the model's verdict stands",
                           self.name, exc_info=True)
            return False
        return sounds_unfinished(text, settings.language)

    async def _judged_by_words(self, pause: SpeechPause, settings: SessionSettings,
                               text: TextTurnDetector,
                               transcribe: Callable[[bytes, int], Awaitable[str]]) -> int | None:
        self.verdict = None
        try:
            words = await transcribe(pause.audio, self.input_rate)
            if not words.strip():
                return settings.end_of_speech_ms  # a noise, or words not yet made out
            if sounds_unfinished(words, settings.language):
                self.verdict = 0.0
                return None
            self.verdict = await text.completion(words, settings.language)
        except Exception:
            logger.warning("%s: no verdict on the words so far; this pause ends after "
                           "end_of_speech_ms", self.name, exc_info=True)
            return settings.end_of_speech_ms
        return settings.turn_complete_ms if self.verdict >= settings.turn_text_threshold else None

    def take(self) -> float | None:
        """The verdict, which is then forgotten (the utterance it judged has ended)."""
        verdict, self.verdict = self.verdict, None
        return verdict
