"""Per-session settings: what a client may choose with ``session.update``.

Defaults are what a first-time user should get; every field is validated so a bad
update is refused whole (``invalid_settings``) and never half-applied.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas._retrieval import SearchToolConfig
from schemas._tools import MAX_SESSION_TOOLS, SessionTool, ToolChoice, check_tools

#: what redaction recognises (``redact``; ``VOXLINE_API__KEY_REDACT``), in the order it is listed
RedactKind = Literal["email", "phone", "card", "iban"]
REDACT_KINDS: tuple[RedactKind, ...] = ("email", "phone", "card", "iban")


#: at most this many ``tags`` a session
MAX_SESSION_TAGS = 16
#: a tag: a label of the application's own, kept in the log with the session
SessionTag = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}$")]


def redact_union(*kinds: tuple[RedactKind, ...]) -> tuple[RedactKind, ...]:
    """The kinds named in any of ``kinds``, in :data:`REDACT_KINDS`'s order."""
    named = {kind for group in kinds for kind in group}
    return tuple(kind for kind in REDACT_KINDS if kind in named)


class SttMode(StrEnum):
    """``realtime``: per-utterance transcription while talking. ``whisperx``: the same, plus
    a background high-quality pass that appends ``transcript.refined``."""

    REALTIME = "realtime"
    WHISPERX = "whisperx"


class AudioFormat(StrEnum):
    PCM16 = "pcm16"
    WAV = "wav"
    MP3 = "mp3"
    OPUS = "opus"
    FLAC = "flac"
    AAC = "aac"  # in ADTS: streamable, no container index
    PCMU = "pcmu"  # G.711 μ-law, raw bytes: what telephony carries (usually at 8 kHz)
    PCMA = "pcma"  # G.711 A-law, raw bytes


class InputAudioFormat(StrEnum):
    """What a client's audio frames hold: PCM16 mono little-endian, or G.711 as a phone
    line carries it. G.711 is decoded to PCM16 where it enters the session."""

    PCM16 = "pcm16"
    PCMU = "pcmu"
    PCMA = "pcma"


SUPPORTED_SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
#: Bounds of ``sampling.stop``: how many stop sequences, and how long each (OpenAI takes 4).
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 64


class SamplingSettings(BaseModel):
    """LLM sampling; the names follow the OpenAI and vLLM APIs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, ge=1, le=4096)
    seed: int | None = None
    stop: tuple[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)], ...] = Field(
        default=(), max_length=MAX_STOP_STRINGS, description="sequences that end the reply"
    )


def primary_language(tag: str) -> str:
    """A language tag's primary subtag, lower case (``de-AT`` → ``de``): what Whisper and
    the per-language word lists know."""
    return tag.split("-")[0].lower()


class SessionSettings(BaseModel):
    """Settings of one session, folded from ``session.created`` and ``session.updated``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")
    voice: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[^/\\\x00-\x1f]+$",
        description="engine-specific voice (no path separators or control characters)",
    )
    speech_speed: float = Field(default=1.0, ge=0.5, le=2.0)
    stt_mode: SttMode = SttMode.REALTIME
    auto_play: bool = Field(default=False, description="narrate finished text-only responses")
    realtime_tts: bool = Field(default=True, description="speak while the reply is written")
    speech_mode: Literal["streaming", "sequential"] | None = Field(
        default=None,
        description="streaming: each piece spoken as soon as it is cut; sequential: the whole "
        "reply first, then speech (a baseline); unset: the server's default",
    )
    min_sentence_chars: int = Field(default=20, ge=1, le=1000)
    system_prompt: str = Field(
        default="You are Voxline, a friendly voice assistant. Answer briefly.",
        max_length=8000,
    )
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    end_of_speech_ms: int = Field(
        default=500, ge=100, le=5000,
        description="silence that ends an utterance (turn_detection silence; smart: when "
        "the end-of-turn model fails): shorter answers sooner, longer lets the speaker pause",
    )
    turn_detection: Literal["silence", "smart"] | None = Field(
        default=None,
        description="what ends a spoken turn: silence (end_of_speech_ms of it) or smart "
        "(an end-of-turn model judges each pause: a turn that sounds complete ends after "
        "turn_complete_ms of silence, one that does not after turn_incomplete_ms); unset: "
        "smart where the server has an end-of-turn model, else silence",
    )
    turn_complete_ms: int = Field(
        default=250, ge=50, le=5000,
        description="smart turn detection: the silence that ends a turn judged complete",
    )
    turn_incomplete_ms: int = Field(
        default=2000, ge=100, le=10000,
        description="smart turn detection: the silence that ends a turn judged unfinished "
        "(the longest pause a speaker may take mid-sentence)",
    )
    turn_text_cues: bool = Field(
        default=False,
        description="smart turn detection: a pause the model judged complete is "
        "transcribed (quickly), and a turn that reads unfinished (it stops on 'for', "
        "'and', 'um', on 'Can you', on a trailing '...') waits for turn_incomplete_ms; "
        "costs a transcription per such pause",
    )
    turn_judge: Literal["audio", "text"] | None = Field(
        default=None,
        description="smart turn detection: what judges each pause. audio: the end-of-turn "
        "model hears how the speech ends (turn_threshold; turn_text_cues may keep a turn "
        "open); text: each pause is transcribed (quickly) and a language model says how "
        "likely the words end a request (turn_text_threshold), and the text cues apply "
        "too; costs a transcription per pause. Unset: text for English sessions where the "
        "server has the text model (fewer cut-offs at the same speed, measured), audio "
        "otherwise",
    )
    turn_text_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="turn_judge text: the language model's end-of-turn probability at or "
        "above which a turn is complete",
    )
    turn_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="smart turn detection: the end-of-turn probability at or above which a "
        "turn is complete (higher: fewer cut-offs, more waits of turn_incomplete_ms)",
    )
    interruptions: Literal["immediate", "confirmed"] = Field(
        default="confirmed",
        description="speech over a reply: confirmed pauses it (response.paused: stop "
        "playing) and cancels it only for a real interruption (words that are not a "
        "backchannel such as 'mm-hm', or speech longer than backchannel_max_ms), else "
        "resumes it where it paused (response.resumed): a listener's 'uh-huh', a cough or a "
        "noise does not stop the reply; immediate cancels it at once (the rule before "
        "2026-11-26, and the default of phone calls and OpenAI Realtime sockets)",
    )
    backchannel_max_ms: int = Field(
        default=1200, ge=100, le=5000,
        description="interruptions confirmed: speech over a reply longer than this is an "
        "interruption whatever it says",
    )
    input_sample_rate: int = Field(default=16000, description="sample rate of client audio")
    input_format: InputAudioFormat = Field(
        default=InputAudioFormat.PCM16,
        description="client audio: pcm16 (mono, little-endian) or G.711 pcmu / pcma (raw "
        "bytes, as telephony sends them; usually with input_sample_rate 8000)",
    )
    output_format: AudioFormat = AudioFormat.PCM16
    output_sample_rate: int = 24000
    # -- retrieval --
    search: SearchToolConfig | None = Field(
        default=None,
        description="ground every reply in a document collection (a message's own "
        "search_tool_config replaces it for that turn)",
    )
    # -- privacy --
    redact: tuple[RedactKind, ...] = Field(
        default=(),
        description="personal data replaced ([email], [phone], [card], [iban]) in what the "
        "user types or says before it is logged or reaches the model: typed text and "
        "transcripts (numbers read aloud included); empty: none. The input audio itself is "
        "kept as spoken",
    )
    store_audio: bool = Field(
        default=True,
        description="keep what the user says as audio in the log (input.audio); off: the "
        "utterance is transcribed and dropped, its event keeps only its timing (replay, "
        "re-transcription and the turn-taking evaluation then say the audio was not kept)",
    )
    # -- choosing sessions later --
    tags: tuple[SessionTag, ...] = Field(
        default=(), max_length=MAX_SESSION_TAGS,
        description="labels of the application's own (a release, an experiment, a "
        "customer tier: 'release=2026.11', 'beta'), logged with the session so that "
        "'voxline evaluate --tag' and 'voxline export --tag' can choose it later; each a "
        "letter or digit, then up to 63 of letters, digits and _ . : = -; at most 16. "
        "Set when the session is created: session.update may not change them",
    )
    # -- tools --
    tools: tuple[SessionTool, ...] = Field(
        default=(), max_length=MAX_SESSION_TOOLS,
        description="what the model may call: {type: function, name, description, "
        "parameters} runs at the client (its call is sent, its output comes back as "
        "tool.output), {type: server, name} is a server tool the operator allows "
        "(VOXLINE_TOOLS__ALLOW)",
    )
    tool_filler: str = Field(
        default="One moment.", max_length=200,
        description="what is said while a slow server tool runs (VOXLINE_TOOLS__FILLER_AFTER_MS); "
        "empty: nothing",
    )
    tool_choice: ToolChoice = Field(
        default_factory=ToolChoice,
        description="auto (the model decides), none, required, or one function by name "
        "({mode: function, name}; OpenAI's shapes are read too)",
    )
    # ---- turn taking (the OpenAI Realtime API's turn_detection: null is auto_response off)
    auto_response: bool = Field(
        default=True,
        description="reply as soon as a user turn ends (an utterance the VAD or a commit cut, "
        "typed text); off: user turns are logged and transcribed, and the reply waits for a "
        "response.create message",
    )
    # -- preemptive turns --
    preemptive_turns: bool = Field(
        default=True,
        description="on a short pause, transcribe and prepare the reply unsent; it goes out "
        "at once if the pause ends the turn, and is dropped (and logged as "
        "speculation.discarded) if the user goes on",
    )
    preemptive_pause_ms: int = Field(
        # 64 ms (two of Silero's 32 ms frames; 100 was four): the prepared reply was still
        # not ready when the turn ended, ~240 ms short, so each frame sooner is a frame off
        # the answer (bench_latency voice-to-voice p50 469 / 511 ms against 546 / 559 at
        # 100; capacity at 8 sessions p50 845-916 against 1,213-1,451, and no more CPU a
        # turn: docs/measurements.md, 2026-11-29); at 200 it was ~100 ms later than at 100
        default=64, ge=50, le=2000,
        description="the pause that starts a speculative reply; off when not shorter than "
        "end_of_speech_ms",
    )

    def merged(self, patch: dict[str, object]) -> SessionSettings:
        """Validate ``patch`` over these settings; raises pydantic's ValidationError whole."""
        data = self.model_dump()
        for key, value in patch.items():
            if key == "sampling" and isinstance(value, dict):
                data["sampling"] = {**data["sampling"], **value}
            elif key == "search" and isinstance(value, dict):  # retrieval: patched, too
                data["search"] = {**(data["search"] or {}), **value}
            else:
                data[key] = value
        return SessionSettings.model_validate(data)

    @model_validator(mode="after")
    def _turn_silences(self) -> SessionSettings:
        if self.turn_complete_ms > self.turn_incomplete_ms:
            raise ValueError("turn_complete_ms must not exceed turn_incomplete_ms")
        return self

    @model_validator(mode="after")
    def _tools_fit(self) -> SessionSettings:
        check_tools(self.tools, self.tool_choice)
        return self

    @field_validator("input_sample_rate", "output_sample_rate")
    @classmethod
    def _known_rate(cls, rate: int) -> int:
        if rate not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(f"sample rate {rate} is not one of {SUPPORTED_SAMPLE_RATES}")
        return rate


ResponseStatus = Literal["completed", "cancelled", "failed"]
#: How a response is produced: spoken while written, spoken after it is written, or text only.
ResponseMode = Literal["streaming", "sequential", "text"]
#: Why a response was cancelled.
CancelReason = Literal["client", "barge_in", "shutdown"]
