"""What ends a turn at a pause: the :class:`TurnPolicy` seam and its implementations.

The endpointer reports a pause (``preemptive_pause_ms`` of silence); a policy says how much
silence ends the turn there (:data:`pipeline.audio.Judge`): ``None`` keeps the
endpointer's own. :func:`turn_policy` builds a session's from its settings and engines, and
a live session (:mod:`pipeline.session.voice_turns`) and the replay evaluation
(:mod:`pipeline.turntaking.evaluation`) both get theirs from it, so a replay decides exactly
as the live session would have with the same settings (text cues and the text judge aside:
a replay transcribes each pause quickly, where a live session may read its preemptive
turn's transcript of the same audio).

* :class:`SilencePolicy` (``turn_detection: silence``, or no end-of-turn model): pauses are
  not judged; ``end_of_speech_ms`` of silence ends the turn.
* :class:`AudioModelPolicy`: the end-of-turn model hears the turn so far; a turn that
  sounds complete (``turn_threshold``) ends after ``turn_complete_ms`` of silence, one that
  does not only after ``turn_incomplete_ms`` (the endpointer's own silence, so ``None``),
  and a failed verdict falls back to ``end_of_speech_ms``. With ``turn_text_cues``, a
  pause the model judged complete is transcribed too (a quick transcription), and a
  transcript that reads unfinished (:mod:`pipeline.turntaking.turn_text`) makes it
  incomplete after all; a failed transcription leaves the model's verdict.
* :class:`TextJudgePolicy` (``turn_judge: text``, the default for English:
  :func:`judged_by`): the words judge instead of the sound: every pause is transcribed
  (quickly, or read from the transcript a preemptive turn makes of the same audio: see
  ``VoiceTurns._pause_transcript``) and a language model
  (:class:`~pipeline.engines.TextTurnDetector`) says how likely they end a request
  (``turn_text_threshold``); the text cues keep a turn that reads unfinished open whatever
  it says. On the turn-taking corpus the audio model tells pauses inside turns from turn
  ends no better than chance and the words do (``bench_turn_taking --part pauses``). A
  pause with no words yet, or a failed transcription or verdict, ends after
  ``end_of_speech_ms``, as a failed audio verdict does.
* :class:`SmartPolicy` (``turn_detection: smart``, the default where there is an
  end-of-turn model): the two above combined, chosen at each pause by the settings of the
  moment (they may change between pauses): the words where :func:`judged_by` says so and
  there are a text model and a transcriber, the sound otherwise.

A policy keeps the latest pause's verdict (:attr:`TurnPolicy.verdict`, the probability
logged on the turn's ``input.speech_stopped``) until :meth:`TurnPolicy.take`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Literal

from pipeline.audio import Judge, SpeechPause, resample_pcm16
from pipeline.engines import TextTurnDetector, TurnDetector
from pipeline.turntaking.turn_text import sounds_unfinished
from schemas import SessionSettings, primary_language

__all__ = [
    "WORDS_BY_DEFAULT",
    "AudioModelPolicy",
    "SilencePolicy",
    "SmartPolicy",
    "TextJudgePolicy",
    "Transcribe",
    "TurnPolicy",
    "judged_by",
    "turn_detection",
    "turn_policy",
]

logger = logging.getLogger(__name__)

#: ``(pcm16, sample_rate)`` → the words of a pause
Transcribe = Callable[[bytes, int], Awaitable[str]]


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
    :data:`WORDS_BY_DEFAULT`, the sound otherwise. (Words need the server's text model and
    a transcriber: a :class:`SmartPolicy` without them judges by the sound whatever this
    says.)"""
    if settings.turn_judge is not None:
        return settings.turn_judge
    return "text" if primary_language(settings.language) in WORDS_BY_DEFAULT else "audio"


class TurnPolicy(ABC):
    """Decides the silence that ends the turn at a pause (see the module docstring).

    Called with a pause (``await policy(pause)``: a :data:`pipeline.audio.Judge`), it
    reads ``settings`` (a session's may change between pauses) and :meth:`decide`\\ s.
    ``name`` names the input in the log's warnings.
    """

    #: whether pauses are judged at all: the endpointer's own silence is then
    #: ``turn_incomplete_ms`` and every pause is reported (:attr:`judge`)
    judges_pauses = True

    def __init__(self, settings: Callable[[], SessionSettings], *, name: str = "") -> None:
        self.settings = settings
        self.name = name
        #: the latest pause's probability, ``None`` until one was judged or after :meth:`take`
        self.verdict: float | None = None

    async def __call__(self, pause: SpeechPause) -> int | None:
        return await self.decide(pause, self.settings())

    @abstractmethod
    async def decide(self, pause: SpeechPause, settings: SessionSettings) -> int | None:
        """The silence (ms) that ends the turn at ``pause``; ``None``: the endpointer's own.
        Sets :attr:`verdict`."""

    @property
    def judge(self) -> Judge | None:
        """What the segmenter calls at each pause; None when pauses are not judged."""
        return self if self.judges_pauses else None

    def take(self) -> float | None:
        """The verdict, which is then forgotten (the utterance it judged has ended)."""
        verdict, self.verdict = self.verdict, None
        return verdict


class SilencePolicy(TurnPolicy):
    """``end_of_speech_ms`` of silence ends the turn; no pause is judged."""

    judges_pauses = False

    async def decide(self, pause: SpeechPause, settings: SessionSettings) -> int | None:
        return None


class AudioModelPolicy(TurnPolicy):
    """The end-of-turn model's verdict on the sound of the turn so far, with the text cues
    (``turn_text_cues``) where there is a ``transcribe``. ``input_rate`` is the rate of
    the pauses' audio (the segmenter's, the VAD's: not the session's input rate, which the
    speech input resamples from)."""

    def __init__(self, detector: TurnDetector, settings: Callable[[], SessionSettings],
                 input_rate: int, *, name: str = "", transcribe: Transcribe | None = None) -> None:
        super().__init__(settings, name=name)
        self.detector = detector
        self.input_rate = input_rate
        self.transcribe = transcribe

    async def decide(self, pause: SpeechPause, settings: SessionSettings) -> int | None:
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
            text = await self.transcribe(pause.padded_audio, self.input_rate)
        except Exception:
            logger.warning("%s: no transcript for the text cues; the model's verdict stands",
                           self.name, exc_info=True)
            return False
        return sounds_unfinished(text, settings.language)


class TextJudgePolicy(TurnPolicy):
    """The words of the turn so far, judged by a text end-of-turn model (and the text cues)."""

    def __init__(self, text: TextTurnDetector, transcribe: Transcribe,
                 settings: Callable[[], SessionSettings], input_rate: int, *,
                 name: str = "") -> None:
        super().__init__(settings, name=name)
        self.text = text
        self.transcribe = transcribe
        self.input_rate = input_rate

    async def decide(self, pause: SpeechPause, settings: SessionSettings) -> int | None:
        self.verdict = None
        try:
            words = await self.transcribe(pause.padded_audio, self.input_rate)
            if not words.strip():
                return settings.end_of_speech_ms  # a noise, or words not yet made out
            if sounds_unfinished(words, settings.language):
                self.verdict = 0.0
                return None
            self.verdict = await self.text.completion(words, settings.language)
        except Exception:
            logger.warning("%s: no verdict on the words so far; this pause ends after "
                           "end_of_speech_ms", self.name, exc_info=True)
            return settings.end_of_speech_ms
        return settings.turn_complete_ms if self.verdict >= settings.turn_text_threshold else None


class SmartPolicy(TurnPolicy):
    """At each pause, the words (``words``, where :func:`judged_by` says so) or the sound
    (``sound``) judge, as the settings of the moment ask."""

    def __init__(self, sound: AudioModelPolicy, words: TextJudgePolicy | None,
                 settings: Callable[[], SessionSettings], *, name: str = "") -> None:
        super().__init__(settings, name=name)
        self.sound = sound
        self.words = words

    async def decide(self, pause: SpeechPause, settings: SessionSettings) -> int | None:
        chosen: TurnPolicy = self.sound
        if self.words is not None and judged_by(settings) == "text":
            chosen = self.words
        chosen.verdict = self.verdict  # one verdict, whichever judges
        try:
            return await chosen.decide(pause, settings)
        finally:
            self.verdict = chosen.verdict


def turn_policy(
    settings: Callable[[], SessionSettings],
    detector: TurnDetector | None,
    input_rate: int,
    *,
    name: str = "",
    transcribe: Transcribe | None = None,
    text: TextTurnDetector | None = None,
) -> TurnPolicy:
    """The policy of an input with these settings (read now for what ends its turns,
    :func:`turn_detection`; at each pause for the rest) and engines: ``detector`` the
    end-of-turn model, ``text`` the text one, ``transcribe`` a pause's words (PCM16 at
    ``input_rate``) for the text cues and the text judge; without it there are neither,
    whatever the settings say, and without ``text`` no text judge."""
    if turn_detection(settings(), detector) == "silence":
        return SilencePolicy(settings, name=name)
    assert detector is not None
    sound = AudioModelPolicy(detector, settings, input_rate, name=name, transcribe=transcribe)
    words = None
    if text is not None and transcribe is not None:
        words = TextJudgePolicy(text, transcribe, settings, input_rate, name=name)
    return SmartPolicy(sound, words, settings, name=name)
