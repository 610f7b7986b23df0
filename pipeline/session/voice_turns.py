"""A live session's spoken turns: from PCM in to an utterance the responder answers.

:class:`VoiceTurns` keeps the bookkeeping of speech: the session's
:class:`~pipeline.turntaking.speech_input.SpeechInput` (built on the first audio, rebuilt when
the settings it depends on change), and what each thing the input hears means for the
session. Speech starting over a reply is a barge-in; a pause long enough for a
preemptive turn starts a speculation, speech resuming drops it; an utterance is admitted
as a turn, appended (``input.speech_stopped``, with the verdict of the input's
:class:`~pipeline.turntaking.TurnPolicy` on its end, and ``input.audio``) and handed to the
:class:`~pipeline.session.responder.Responder`, with the speculation it confirms if any.
Events go out through the session's emitter.

**Speech over a reply** (``interruptions``). ``immediate``: the reply is cancelled at
once (a barge-in). ``confirmed``: the reply is paused (``response.paused``; it goes on being
written into the log, and clients stop playing it) at the first frame that may be speech,
and the speech is judged at its first pause (a shorter one than a turn's:
:data:`HELD_PAUSE_MS`) and at its end: a backchannel
(:mod:`pipeline.turntaking.backchannel`), no words at all, or a run too short to be speech
resumes the reply where it paused (``response.resumed``) and makes no turn; words that
are not a backchannel, or speech longer than ``backchannel_max_ms``, cancel the reply and
are the next turn, its reply prepared at its pauses as any turn's. Where the held reply
stands is a :class:`Hold`, changed in one place (``VoiceTurns._enter``).
"""

from __future__ import annotations

import enum
import logging

from pipeline.audio import EndpointConfig, SpeechEnd, SpeechPause, decode_frames
from pipeline.session.admission import Permit, Waiting
from pipeline.session.creation import new_turn_id
from pipeline.session.emitter import SessionEmitter
from pipeline.session.engines import SessionEngines
from pipeline.session.responder import Responder
from pipeline.session.speculation import Speculation, Speculator
from pipeline.turntaking import (
    SpeechInput,
    TurnPolicy,
    backchannel_prompt,
    heard_backchannel,
    session_endpoint,
    turn_policy,
    utterance_events,
)
from schemas import (
    ErrorCode,
    EventBase,
    OverloadedError,
    ProtocolError,
    ResponseHeldData,
    ResponsePaused,
    ResponseResumed,
    SessionSettings,
    SpeechBoundaryData,
    SpeechStarted,
    SpeechStopped,
    SpeechStoppedData,
    now_ms,
)

logger = logging.getLogger(__name__)

#: the silence after which speech over a held reply is judged (two of Silero's 32 ms
#: frames), whatever the session's ``preemptive_pause_ms`` (a turn's pause, 64 by default
#: too). A word with a gap inside is judged at the gap; its second half pauses the reply
#: again (as speech after a resume does)
HELD_PAUSE_MS = 64


class Hold(enum.Enum):
    """Where the reply that the user's speech came over stands (interruptions confirmed);
    each state but :attr:`NONE` carries that reply's turn id."""

    #: no reply held
    NONE = enum.auto()
    #: paused at a frame that may start speech, until VAD confirms it (:attr:`HELD`) or
    #: drops the run (resumed)
    ONSET = enum.auto()
    #: paused by speech over it, until the speech is judged at its first pause or its end
    HELD = enum.auto()
    #: resumed at a pause of the speech over it (a backchannel): the speech's end makes no
    #: turn, and speech going on pauses the reply again (:attr:`HELD`)
    WAVED = enum.auto()


class VoiceTurns:
    """The spoken side of one live session (see the module docstring)."""

    def __init__(
        self,
        emitter: SessionEmitter,
        responder: Responder,
        speculator: Speculator,
        engines: SessionEngines,
        *,
        endpoint_config: EndpointConfig | None = None,
        max_buffer_s: float | None = None,
    ) -> None:
        self.session_id = emitter.session_id
        self._emitter = emitter
        self._responder = responder
        self._speculator = speculator
        self._engines = engines
        self._endpoint_config = endpoint_config or EndpointConfig()
        #: manual turns: audio appended between two commits, at most (None: unbounded)
        self.max_buffer_s = max_buffer_s
        #: the speech input, once audio came (None again after clear, close or a change of
        #: the settings it was built from)
        self.audio: SpeechInput | None = None
        #: what ends this input's turns, and its verdicts on their pauses
        self._policy: TurnPolicy | None = None
        #: where the reply the speech came over stands, and that reply's turn id
        self._hold = Hold.NONE
        self._reply: str | None = None

    @property
    def held(self) -> str | None:
        """The reply paused by speech over it (interruptions confirmed), until judged."""
        return self._reply if self._hold in (Hold.ONSET, Hold.HELD) else None

    def _enter(self, hold: Hold, reply: str | None = None) -> None:
        """Every change of :class:`Hold`. While a reply is paused, the speech's pauses come
        after :data:`HELD_PAUSE_MS` of silence: it stays silent until its first is judged."""
        self._hold, self._reply = hold, reply
        if self.audio is not None:
            self.audio.pause_after(HELD_PAUSE_MS if self.held is not None else None)

    async def push(self, data: bytes) -> None:
        """Audio in the session's ``input_format`` at its input rate, decoded to PCM16
        here (see :meth:`LiveSession.push_audio`)."""
        settings = self._emitter.state.settings
        pcm = decode_frames(data, settings.input_format, settings.input_sample_rate)
        audio = await self._input()
        if not settings.auto_response and self.max_buffer_s is not None:
            audio.check_room(len(pcm), self.max_buffer_s)
        await audio.push(pcm)

    async def commit(self) -> None:
        """End the current utterance now (push-to-talk), without waiting for silence."""
        if self.audio is not None:
            await self.audio.commit()

    async def clear(self) -> None:
        """Drop the audio not yet cut into an utterance; the next push starts afresh (a
        reply held by the speech dropped plays on)."""
        if self.audio is not None:
            await self.audio.close()
            self.audio = None
        held = self.held
        self._enter(Hold.NONE)
        if held is not None:
            await self._resumed_reply(held, 0, "")

    async def stop(self) -> None:
        """Stop listening for good (the session closes): a later push raises."""
        if self.audio is not None:
            await self.audio.close()

    async def settings_changed(self, settings: SessionSettings) -> None:
        """The session's settings become ``settings``: a change of those the speech input
        is built from rebuilds it on the next push, and drops the speculation (its
        utterance will never end)."""
        if _audio_settings(settings) == _audio_settings(self._emitter.state.settings):
            return
        if self.audio is not None:
            await self.clear()
            await self._speculator.drop("superseded")

    async def _input(self) -> SpeechInput:
        if self.audio is None:
            if self._engines.vad is None or self._engines.stt is None:
                raise ProtocolError(
                    "this server takes no audio (no VAD or STT engine)",
                    code=ErrorCode.UNSUPPORTED_FORMAT,
                )
            settings = self._emitter.state.settings
            # a pause's audio is at the VAD's rate (SpeechInput resamples the input)
            self._policy = policy = turn_policy(
                lambda: self._emitter.state.settings, self._engines.turn,
                self._engines.vad.sample_rate, name=f"session {self.session_id}",
                transcribe=self._pause_transcript, text=self._engines.turn_text)
            self.audio = SpeechInput(
                self._engines.vad,
                session_endpoint(self._endpoint_config, settings, policy.judges_pauses),
                sample_rate=settings.input_sample_rate,
                on_speech=self._speech_started,
                on_utterance=self._utterance,
                on_pause=self._paused,
                on_resume=self._resumed,
                judge=policy.judge,
                on_onset=self._onset,
            )
        return self.audio

    # ---- what the speech input heard ------------------------------------------------

    async def _onset(self, audio_ms: int, dropped: bool) -> None:
        """Interruptions confirmed: the reply goes quiet at the first frame that may be
        speech (``response.paused``), and plays on when it was not (a click, a knock)."""
        if dropped:
            if self._hold is Hold.ONSET:
                held = self._reply
                assert held is not None
                self._enter(Hold.NONE)
                await self._resumed_reply(held, audio_ms, "")
            return
        reply = self._reply_over() if self.held is None else None
        if reply is not None:
            self._enter(Hold.ONSET, reply)
            await self._paused_reply(reply, audio_ms)

    async def _speech_started(self, audio_ms: int) -> None:
        started = SpeechStarted(session_id=self.session_id,
                                data=SpeechBoundaryData(audio_ms=audio_ms))
        if self._hold is Hold.ONSET:  # held at its onset: speech after all
            self._enter(Hold.HELD, self._reply)
            await self._emitter.emit(started)
            return
        reply = self._reply_over()
        if reply is not None and self._emitter.state.settings.interruptions == "confirmed":
            self._enter(Hold.HELD, reply)  # judged at the speech's first pause and at its end
            await self._paused_reply(reply, audio_ms, started)
            return
        if self._responder.responding:  # barge-in: the user talks over the reply
            await self._responder.cancel("barge_in")
        await self._emitter.emit(started)

    def _reply_over(self) -> str | None:
        """The reply the user's speech started over: being written (or its turn being
        transcribed before it), or maybe still playing (its first chunk's time plus its
        audio's length is still to come). A turn only transcribed (auto_response off)
        has no reply to hold."""
        turns = self._emitter.state.turns
        if not turns:
            return None
        turn = next(reversed(turns.values()))  # a running reply's: its events may be unsent
        if self._responder.replying or turn.status == "responding":
            return turn.turn_id
        started = turn.audio_started_ts
        if started is not None and turn.played_ms is None and now_ms() < started + turn.audio_ms:
            return turn.turn_id
        return None

    async def _quick_transcript(self, audio: bytes, sample_rate: int,
                                prompt: str | None = None) -> str:
        return await self._responder.source.transcribe(audio, sample_rate, quick=True,
                                                       prompt=prompt)

    async def _pause_transcript(self, audio: bytes, sample_rate: int) -> str:
        """The words of a pause, for the judge (text cues, ``turn_judge: text``).

        A pause is reported before it is judged, so a preemptive turn has already started
        transcribing the same audio for its speculation: the judge waits for that
        transcript instead of asking the Transcriber for the same words again (one call
        per pause, not two queued behind each other). Without a speculation on this
        audio (preemptive turns off, a reply out), or one dropped before it heard the
        words, the judge transcribes quickly itself."""
        heard = await self._speculator.heard(audio, sample_rate)
        if heard is not None:
            return heard
        return await self._quick_transcript(audio, sample_rate)

    async def _backchannel(self, audio: bytes, duration_s: float, sample_rate: int) -> str | None:
        """What the speech over a held reply said when it was a backchannel (or no words:
        a cough, a noise), else None: an interruption. A failed transcription interrupts.
        The transcription is a quick one: the reply stays silent until it is done."""
        settings = self._emitter.state.settings
        prompt = backchannel_prompt(settings.language)
        try:
            return await heard_backchannel(
                duration_s * 1000, settings.backchannel_max_ms,
                lambda: self._quick_transcript(audio, sample_rate, prompt))
        except Exception:
            logger.warning("session %s: could not transcribe the speech over a reply; it "
                           "interrupts", self.session_id, exc_info=True)
            return None

    async def _paused(self, pause: SpeechPause, sample_rate: int) -> None:
        """Preemptive turns: prepare the reply to what was said so far, unsent. Over a
        held reply: the speech so far is judged, and a backchannel resumes the reply at
        once, without waiting for the end of the turn; anything else is an interruption
        known now: the reply is cancelled, and the speech goes on as a turn like any
        other, whose pauses (this one first) prepare its reply. Confirmed only at its
        end, it would have prepared none: its reply would wait for all of its STT."""
        if self.held is not None:
            held = self.held
            heard = await self._backchannel(pause.audio, pause.duration_s, sample_rate)
            if heard is not None:
                self._enter(Hold.WAVED, held)
                await self._resumed_reply(held, pause.audio_ms, heard)
                return
            self._enter(Hold.NONE)
            await self._responder.cancel("barge_in")
        settings = self._emitter.state.settings
        if not settings.preemptive_turns:
            return  # the pause is only judged (smart turn detection)
        if self._responder.responding or self._engines.stt is None:
            return  # a reply is out: this pause is not the end of a turn to answer
        if not settings.auto_response or settings.search is not None:
            return  # a reply waits for response.create, or for a search: nothing to prepare
        await self._speculator.start(pause, sample_rate)

    def _verdict(self) -> float | None:
        """The verdict on the utterance that just ended (None: not judged)."""
        return self._policy.take() if self._policy is not None else None

    def _stopped_without_turn(self, end: SpeechEnd) -> SpeechStopped:
        return SpeechStopped(session_id=self.session_id, data=SpeechStoppedData(
            audio_ms=end.audio_ms, silence_ms=end.silence_ms, end_of_turn=self._verdict()))

    async def _paused_reply(self, turn_id: str, audio_ms: int, *events: EventBase) -> None:
        await self._emitter.emit(ResponsePaused(
            session_id=self.session_id, turn_id=turn_id,
            data=ResponseHeldData(audio_ms=audio_ms)), *events)

    async def _resumed_reply(self, turn_id: str, audio_ms: int, heard: str,
                             *events: EventBase) -> None:
        await self._emitter.emit(*events, ResponseResumed(
            session_id=self.session_id, turn_id=turn_id,
            data=ResponseHeldData(audio_ms=audio_ms, transcript=heard)))

    async def _resumed(self, audio_ms: int) -> None:
        self._verdict()
        if self._hold is Hold.WAVED:  # not only a backchannel after all: pause it again
            assert self._reply is not None
            self._enter(Hold.HELD, self._reply)
            await self._paused_reply(self._reply, audio_ms)
        await self._speculator.drop("speech_resumed")

    async def _utterance(self, end: SpeechEnd, sample_rate: int) -> None:
        hold, held = self._hold, self.held
        # (an utterance ending at an onset is a commit's: it reset the detector, so VAD's
        # word on that onset never comes, and the turn below cancels the reply it held)
        self._enter(Hold.NONE)
        if hold is Hold.WAVED:  # a backchannel, resumed at its pause: no turn
            await self._emitter.emit(self._stopped_without_turn(end))
            return
        if held is not None and end.reason == "silence":
            heard = await self._backchannel(end.audio, end.duration_s, sample_rate)
            if heard is not None:  # no turn: the reply plays on
                await self._resumed_reply(held, end.audio_ms, heard,
                                          self._stopped_without_turn(end))
                return
        responder = self._responder
        speculation = self._speculator.take()
        turn_id = speculation.turn_id if speculation is not None else new_turn_id()
        await responder.cancel("barge_in")
        try:
            permit = responder.admit_voice()
        except OverloadedError as exc:  # the utterance is dropped; the client is told
            self._verdict()
            if speculation is not None:
                await self._speculator.discard(speculation, "superseded")
            await self._emitter.reject(exc)
            return
        try:
            await self._utterance_events(turn_id, end, sample_rate, permit, speculation)
        except BaseException:
            if permit is not None:
                permit.release()
            if speculation is not None:
                await self._speculator.discard(speculation, "failed")
            raise

    async def _utterance_events(
        self,
        turn_id: str,
        end: SpeechEnd,
        sample_rate: int,
        permit: Permit | Waiting | None,
        speculation: Speculation | None = None,
    ) -> None:
        verdict = self._verdict()
        _, audio_event = await self._emitter.emit(
            *utterance_events(self.session_id, turn_id, end, sample_rate, verdict,
                              keep_audio=self._emitter.state.settings.store_audio))
        if speculation is not None:
            self._responder.start_speculated(
                turn_id, end, sample_rate, audio_event.id, speculation, permit)
            return
        self._responder.start(turn_id, None, audio_event.id, audio=(end.audio, sample_rate),
                              permit=permit, reply=self._emitter.state.settings.auto_response)


def _audio_settings(settings: SessionSettings) -> tuple[object, ...]:
    """The settings the speech input is built from: a change rebuilds it."""
    return (settings.input_sample_rate, settings.end_of_speech_ms, settings.preemptive_turns,
            settings.preemptive_pause_ms, settings.turn_detection, settings.turn_incomplete_ms,
            settings.interruptions)
