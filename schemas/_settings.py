"""Server settings: one pydantic-settings object, read from ``VOXLINE_*`` environment variables.

Nested sections use a double underscore: ``VOXLINE_LOG__MAXLEN=5000``. Create it once
(:func:`get_settings`) and pass it down; tests build their own instance instead of
patching the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class RedisSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    retries: int = Field(default=5, ge=0, description="retries of a failed command")
    backoff_base_s: float = Field(default=0.05, gt=0)
    backoff_cap_s: float = Field(default=2.0, gt=0)
    socket_timeout_s: float = Field(default=5.0, gt=0)
    health_check_interval_s: int = Field(default=30, ge=0)
    max_connections: int = Field(
        default=100, ge=2,
        description="the pool's bound; past it a command waits (socket_timeout_s) for one",
    )


class EventLogSettings(BaseModel):
    """Retention and consumer-group behaviour of the session streams."""

    model_config = ConfigDict(frozen=True)

    key_prefix: str = "voxline"
    maxlen: int | None = Field(default=100_000, ge=1, description="entries kept per session")
    approximate_trim: bool = Field(
        default=True, description="trim in steps (10% of maxlen, at most 100), not every append"
    )
    max_age_s: float | None = Field(
        default=None, gt=0, description="MINID trimming: drop entries older than this"
    )
    closed_ttl_s: int | None = Field(
        default=7 * 24 * 3600, ge=1, description="a closed session's stream expires after this"
    )
    claim_idle_ms: int = Field(default=30_000, ge=1, description="claim entries idle this long")
    max_deliveries: int = Field(default=5, ge=1, description="then the entry is dead-lettered")
    read_count: int = Field(default=500, ge=1, description="entries per read round trip")
    tail_queue: int = Field(
        default=256, ge=1,
        description="events a live reader (socket, SSE) may fall behind before it is dropped",
    )


class ApiSettings(BaseModel):
    """The HTTP and WebSocket API: limits and session tokens."""

    model_config = ConfigDict(frozen=True)

    secret: SecretStr | None = Field(
        default=None,
        description="key that signs session tokens; unset: one random key shared through Redis",
    )
    max_message_bytes: int = Field(default=1 << 20, ge=1024, description="one WebSocket frame")
    max_text_chars: int = Field(default=4000, ge=1)
    max_upload_bytes: int = Field(default=25 << 20, ge=1024, description="one uploaded file")
    max_speech_chars: int = Field(default=4096, ge=1, description="input of /v1/audio/speech")
    drain_s: float = Field(
        default=30.0, ge=0, description="a reply still running when its socket drops may finish"
    )
    resume_window_s: float = Field(
        default=0.5, ge=0, description="a new socket waits this long for session.resume"
    )
    keepalive_s: float = Field(default=15.0, gt=0, description="SSE comment when quiet")
    public_url: str | None = Field(
        default=None, description="base URL clients use (ws_url, events_url); default: as asked"
    )


class EngineSettings(BaseModel):
    """Which engine runs a stage, and its options.

    Options may be given as fields of their own (``VOXLINE_STT__MODEL=whisper-tiny.en``)
    or as one JSON object (``VOXLINE_STT__OPTIONS='{"model": "whisper-tiny.en"}'``);
    the engine's own config model validates them when the engine is built.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    engine: str
    options: dict[str, Any] = Field(default_factory=dict)

    def engine_options(self) -> dict[str, Any]:
        """``options`` merged with the option fields given one by one (those win)."""
        return {**self.options, **(self.model_extra or {})}


# The CPU profile's engines are the defaults: they run anywhere with packaged weights.
class SttEngineSettings(EngineSettings):
    engine: str = "faster-whisper"


class VadEngineSettings(EngineSettings):
    engine: str = "silero"


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
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    metrics_port: int | None = Field(
        default=9464, ge=1, le=65535, description="Prometheus /metrics; unset: none"
    )
    stt: SttEngineSettings = Field(default_factory=SttEngineSettings)
    vad: VadEngineSettings = Field(default_factory=VadEngineSettings)
    llm: LlmEngineSettings = Field(default_factory=LlmEngineSettings)
    tts: TtsEngineSettings = Field(default_factory=TtsEngineSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    log: EventLogSettings = Field(default_factory=EventLogSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
