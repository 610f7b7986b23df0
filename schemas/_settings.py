"""Server settings: one pydantic-settings object, read from ``VOXLINE_*`` environment variables.

Nested sections use a double underscore: ``VOXLINE_LOG__MAXLEN=5000``. Create it once
(:func:`get_settings`) and pass it down; tests build their own instance instead of
patching the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas._call_settings import TelephonySettings, WebRtcSettings
from schemas._log_settings import EventLogSettings, RedisSettings
from schemas._retrieval_settings import RetrievalSettings
from schemas._session import RedactKind
from schemas._tool_settings import ToolSettings


class ApiSettings(BaseModel):
    """The HTTP and WebSocket API: limits and session tokens."""

    model_config = ConfigDict(frozen=True)

    secret: SecretStr | None = Field(
        default=None,
        description="key that signs session tokens; unset: one random key shared through Redis",
    )
    max_message_bytes: int = Field(default=1 << 20, ge=1024, description="one WebSocket frame")
    max_text_chars: int = Field(
        default=4000, ge=1, description="typed text of one turn (socket, chat; text_too_long)"
    )
    max_chat_messages: int = Field(
        default=256, ge=1, description="messages of one /v1/chat/completions request"
    )
    max_tools: int = Field(
        default=64, ge=1, le=1024, description="tools of one request (chat completions)"
    )
    max_tool_schema_chars: int = Field(
        default=16_000, ge=100, le=1_000_000,
        description="one tool's parameters, as JSON Schema text",
    )
    max_upload_bytes: int = Field(default=25 << 20, ge=1024, description="one uploaded file")
    max_speech_chars: int = Field(default=4096, ge=1, description="input of /v1/audio/speech")
    voice_map: dict[str, str] = Field(
        default_factory=dict,
        description="OpenAI voice name (alloy, nova ...) -> an installed voice, for "
        "/v1/audio/speech; a name left out speaks with the engine's default voice",
    )
    max_upload_seconds: float = Field(
        default=300.0, gt=0, description="decoded length of one uploaded file (audio_too_long)"
    )
    max_buffer_seconds: float = Field(
        default=300.0, gt=0, description="audio a socket may append between two commits "
        "with manual turns (audio_too_long), as long as an upload may be"
    )
    max_prompt_tokens: int | None = Field(
        default=None, ge=1, description="a chat completion's whole prompt, in estimated "
        "tokens (context_length_exceeded); unset: the LLM's context window as its engine "
        "reports it (llama-cpp n_ctx, 2048), else 32768"
    )
    min_upload_sample_rate: int = Field(
        default=8000, ge=1, description="an uploaded file's own rate, lowest (a 7 KB WAV at "
        "1 Hz decodes to an hour)"
    )
    max_upload_sample_rate: int = Field(
        default=192000, ge=1, description="an uploaded file's own rate, highest"
    )
    max_json_depth: int = Field(
        default=32, ge=4, le=256, description="nesting of one JSON frame (json_too_deep)"
    )
    drain_s: float = Field(
        default=30.0, ge=0, description="a reply still running when its socket drops may finish"
    )
    resume_window_s: float = Field(
        default=0.5, ge=0, description="a new socket waits this long for session.resume"
    )
    keepalive_s: float = Field(default=15.0, gt=0, description="SSE comment when quiet")
    keys: tuple[SecretStr, ...] = Field(
        default=(),
        description="API keys (JSON list); set: every endpoint but /healthz and /readyz "
        "needs 'Authorization: Bearer <key>', session tokens then go in X-Voxline-Token or "
        "?token=; empty: open",
    )
    key_retention_days: tuple[float | None, ...] = Field(
        default=(),
        description="retention per API key (JSON list, in the order of keys; null: the "
        "log's retention_days): the sessions made with a key are erased this many days after "
        "they began",
    )
    key_redact: tuple[tuple[RedactKind, ...] | None, ...] = Field(
        default=(),
        description="redaction per API key (JSON list, in the order of keys, each a list "
        "of kinds as a session's redact setting takes; null: none): every session made with "
        "the key redacts at least these, and session.update cannot remove them",
    )
    admin_keys: tuple[SecretStr, ...] = Field(
        default=(),
        description="API keys (JSON list; also keys of VOXLINE_API__KEYS) that may erase any "
        "session without its token (DELETE /v1/sessions/{id}, the operator's erasure)",
    )
    public_url: str | None = Field(
        default=None, description="base URL clients use (ws_url, events_url); default: as asked"
    )
    readiness_refresh_s: float = Field(
        default=10.0, gt=0, le=60,
        description="how often a Gateway replica refreshes the /readyz answer in the "
        "background (probes answer from it at once, never queued behind turns; each "
        "refresh asks every stage and worker, a round trip to each replica: every 2 s "
        "that was a seventh of the idle app's CPU); while not ready, every 0.5 s",
    )
    metrics_report_s: float = Field(
        default=5.0, gt=0, le=60,
        description="how often a Gateway replica publishes its own counts (admission, "
        "stage calls, log append and reader lag) for the metrics endpoint, through Redis",
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=(),
        description="host names (JSON list) the server answers for beside loopback names, "
        "IP addresses and the hosts of public_url and allowed_origins; \".example.com\" "
        "with its subdomains, \"*\": any. Others: 421 host_not_allowed (DNS rebinding)",
    )
    allowed_origins: tuple[str, ...] = Field(
        default=(),
        description="web pages (origins, JSON list) that may open sockets and send POSTs "
        "beside the server's own and loopback ones; \"*\": any. No Origin: always allowed",
    )
    shutdown_grace_s: float = Field(
        default=20.0, ge=0,
        description="on SIGTERM/SIGINT, running turns may finish this long before sockets "
        "are closed with 1012 (keep it under Kubernetes' terminationGracePeriodSeconds)",
    )


class AdmissionSettings(BaseModel):
    """Capacity of one Gateway replica: past it, work is refused (HTTP 503 + ``Retry-After``,
    or an ``overloaded`` error event on the socket), never queued without end.

    Each limit counts work in flight on this replica; ``None`` turns that limit off.
    Admitted work keeps its latency because the excess never waits behind it. The
    defaults here are a profile's starting point: ``deployments.app`` replaces the ones
    a measurement sized for that profile (``max_turns`` on the CPU profiles), unless the
    operator set them (a ``VOXLINE_ADMISSION__*`` variable, or the Gateway's
    ``user_config``, per replica).
    """

    model_config = ConfigDict(frozen=True)

    max_sessions: int | None = Field(
        default=1500, ge=1,
        description="live sessions: open sockets and chat streams (an idle one costs ~45 KB "
        "and no Redis connection; replies are bounded by max_turns)",
    )
    max_turns: int | None = Field(
        default=16, ge=1, description="responses being generated at once (all sessions); "
        "the profiles replace this default with their measured one (cpu: 1, gpu: 64)"
    )
    voice_turn_wait_ms: int = Field(
        default=3000, ge=0, le=30000,
        description="a voice turn that finds max_turns taken waits this long for a place "
        "(first come, first served) before it is refused; 0: refused at once, as typed turns "
        "and HTTP requests are (their clients retry; a refused voice turn is a question the "
        "user must ask again)",
    )
    max_waiting_turns: int = Field(
        default=16, ge=0, le=4096,
        description="voice turns waiting for a place at once; one more is refused at once",
    )
    max_transcriptions: int | None = Field(
        default=8, ge=1, description="concurrent /v1/audio/transcriptions requests"
    )
    max_speech: int | None = Field(
        default=8, ge=1, description="concurrent /v1/audio/speech requests"
    )
    retry_after_ms: int = Field(
        default=1000, ge=1, description="the retry hint sent with a refusal"
    )


class HistorySettings(BaseModel):
    """The dialogue history handed to the LLM: bounded in (estimated) tokens and turns,
    trimmed in blocks so that the prompt's prefix stays the same from turn to turn and the
    LLM's prompt cache keeps working (see :mod:`pipeline.log.history`)."""

    model_config = ConfigDict(frozen=True)

    max_tokens: int = Field(
        default=1024, ge=0, description="history past this many tokens is trimmed"
    )
    max_turns: int = Field(default=40, ge=0, description="history past this many turns is trimmed")
    chars_per_token: float = Field(
        default=3.0, gt=0, description="token estimate: characters per token (low = cautious)"
    )


class EngineSettings(BaseModel):
    """Which engine runs a stage, and its options.

    Options may be given as fields of their own (``VOXLINE_STT__MODEL=whisper-tiny.en``)
    or as one JSON object (``VOXLINE_STT__OPTIONS='{"model": "whisper-tiny.en"}'``);
    the engine's own config model validates them when the engine is built.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    engine: str = Field(description="the registry's name of the stage's engine")
    options: dict[str, Any] = Field(
        default_factory=dict, description="the engine's options as one JSON object, or "
        "each as a variable of its own (VOXLINE_STT__MODEL=whisper-tiny.en)",
    )

    def engine_options(self) -> dict[str, Any]:
        """``options`` merged with the option fields given one by one (those win)."""
        return {**self.options, **(self.model_extra or {})}


# The CPU profile's engines are the defaults: they run anywhere with packaged weights.
class SttEngineSettings(EngineSettings):
    # English sessions on Whisper tiny.en (faster), the others on the multilingual base;
    # VOXLINE_STT__MODEL=... still names one model for all.
    engine: str = "language-router"


class VadEngineSettings(EngineSettings):
    engine: str = "silero"


class TurnEngineSettings(EngineSettings):
    # the end-of-turn model the Gateway asks on each pause (smart turn detection); "none":
    # turns end on silence alone
    engine: str = "smart-turn"


class TurnTextEngineSettings(EngineSettings):
    # the language model that judges a pause's transcript (turn_judge text; Gemma 3 270M,
    # packaged, from the cpu extra: the cluster image sets "none"); "none": sessions may not
    # ask for turn_judge text
    engine: str = "llama-cpp"


class LlmEngineSettings(EngineSettings):
    engine: str = "llama-cpp"


class TtsEngineSettings(EngineSettings):
    engine: str = "language-router"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VOXLINE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    redis_url: str | None = Field(
        default=None,
        description="Redis to use; unset means the run command starts a server of its own",
    )
    host: str = Field(default="127.0.0.1", description="the HTTP server's bind address")
    port: int = Field(default=8000, ge=1, le=65535, description="the HTTP server's port")
    metrics_port: int | None = Field(
        default=9464, ge=1, le=65535, description="Prometheus /metrics; unset: none"
    )
    ingress: Literal["auto", "direct", "proxy"] = Field(
        default="auto",
        description="how clients reach the Gateway when the run command starts the app: "
        "direct (the Gateway replica serves host:port on a server of its own; a profile "
        "with one Gateway replica only), proxy (Ray Serve's HTTP proxy in front: a hop, and an "
        "actor call, per socket message); auto: direct for the one-machine profiles "
        "(cpu, cpu-replicas, cpu-autoscale, cpu-nodes), proxy otherwise",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="the app's log lines: plain text, or JSON lines (Ray's) with the "
        "session, turn and trace ids of every record that has them",
    )
    stt: SttEngineSettings = Field(default_factory=SttEngineSettings)
    vad: VadEngineSettings = Field(default_factory=VadEngineSettings)
    turn: TurnEngineSettings = Field(default_factory=TurnEngineSettings)
    turn_text: TurnTextEngineSettings = Field(default_factory=TurnTextEngineSettings)
    llm: LlmEngineSettings = Field(default_factory=LlmEngineSettings)
    tts: TtsEngineSettings = Field(default_factory=TtsEngineSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    log: EventLogSettings = Field(default_factory=EventLogSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    telephony: TelephonySettings = Field(default_factory=TelephonySettings)
    webrtc: WebRtcSettings = Field(default_factory=WebRtcSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    tools: ToolSettings = Field(default_factory=ToolSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
