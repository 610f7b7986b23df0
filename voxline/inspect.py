"""Looking back at one session from its log: ``voxline stats`` and ``voxline replay``.

Both read the session's stream from one Redis and nothing else: the log is the whole
session. Which Redis (:func:`inspect_settings`): ``--redis-url``, else
``VOXLINE_REDIS_URL``, else the one a running ``voxline serve`` recorded
(:mod:`voxline.runstate`), with that server's key prefix unless
``VOXLINE_LOG__KEY_PREFIX`` is set.

* :func:`session_table`: one row per turn with what was said, the reply, each stage's
  latency (as the metrics consumer measures it, :mod:`pipeline.workers.metrics`) and the status.
* :func:`replay_session`: the transcript (``user:`` / ``assistant:`` lines) and, per turn,
  the audio the user heard as a WAV file, decoded from the ``response.audio.chunk``
  events in their format (``pcm16`` raw at ``data.sample_rate``; ``wav`` without its
  streaming header; ``mp3`` / ``opus`` through FFmpeg).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from pipeline.log import SessionState, TurnState, fold
from pipeline.workers import STAGES, TurnMeasure, scan_session
from schemas import (
    AudioFormat,
    ConfigurationError,
    ErasureReceipt,
    ErrorCode,
    Event,
    InputAudio,
    ResponseAudioChunk,
    SessionError,
    Settings,
)
from voxline.demo import write_wav

__all__ = [
    "ReplayResult",
    "ReplayTurn",
    "SessionRecord",
    "inspect_settings",
    "read_session",
    "replay_session",
    "session_table",
    "transcript_lines",
    "turn_audio",
]

#: column headers of the stage columns
_STAGE_HEADERS = {
    "vad_tail": "vad tail",
    "stt": "stt",
    "llm_first_token": "llm 1st",
    "first_piece_cut": "cut",
    "tts_first_chunk": "tts 1st",
    "time_to_first_audio": "ttfa",
    "voice_to_voice": "v2v",
    "response_done": "done",
}
_STATUS_STYLE = {
    "completed": "green",
    "cancelled": "yellow",
    "failed": "red",
    "abandoned": "red",
    "no_response": "dim",
    "open": "cyan",
}


@dataclass(frozen=True)
class SessionRecord:
    """A session's events as read; ``horizon`` is set when older events were trimmed."""

    session_id: str
    events: tuple[Event, ...]
    horizon: str | None = None


def inspect_settings(redis_url: str | None = None) -> Settings:
    """The settings to read sessions with: ``redis_url`` (``--redis-url``), else
    ``VOXLINE_REDIS_URL``, else the running server's (see the module docstring).

    Raises :class:`ConfigurationError` saying what to do when none is found.
    """
    from voxline.runstate import find_server, run_dir

    settings = Settings()
    if redis_url:
        return settings.model_copy(update={"redis_url": redis_url})
    if settings.redis_url:
        return settings
    found = find_server(settings.port)
    if found is None:
        raise ConfigurationError(
            "no Redis to read sessions from: VOXLINE_REDIS_URL is not set and no running "
            f"'voxline serve' has recorded its Redis (in {run_dir()}). Start the server "
            "(scripts/run.sh), or give --redis-url redis://HOST:PORT/0 (or set "
            "VOXLINE_REDIS_URL) for the Redis that holds the sessions"
        )
    log = settings.log
    if "key_prefix" not in log.model_fields_set:
        log = log.model_copy(update={"key_prefix": found.key_prefix})
    return settings.model_copy(update={"redis_url": found.redis_url, "log": log})


async def read_session(session_id: str, settings: Settings | None = None, *,
                       action: str = "voxline read") -> SessionRecord:
    """Read the whole log of ``session_id`` (what retention left of it), recorded in the
    audit as ``action`` by the CLI's user.

    Raises :class:`ConfigurationError` when no Redis is found (:func:`inspect_settings`)
    and :class:`SessionError` for a session the log does not hold.
    """
    from pipeline.log import EventLog, create_redis, record_read

    settings = settings or inspect_settings()
    if not settings.redis_url:
        raise ConfigurationError("no Redis URL to read sessions from")
    redis = create_redis(settings.redis_url, settings.redis)
    horizon: str | None = None
    try:
        log = EventLog(redis, settings.log)
        await record_read(log, session_id, action, _cli_user())
        events, horizon = await log.read_remaining(session_id)
    finally:
        await redis.aclose()
    if not events:
        raise SessionError(
            f"no session {session_id!r} in the log (key prefix {settings.log.key_prefix!r}; "
            "set VOXLINE_LOG__KEY_PREFIX if the server uses another)",
            code=ErrorCode.SESSION_NOT_FOUND,
        )
    return SessionRecord(session_id, tuple(events), horizon)


async def erase_stored(session_id: str, settings: Settings | None = None) -> ErasureReceipt:
    """Erase ``session_id`` from the Redis the server uses (``voxline erase``): a running
    Gateway's sockets of it close at their next write, which the log refuses."""
    from pipeline.log import EventLog, create_redis, record_read
    from pipeline.retrieval import CollectionStore
    from pipeline.session import erase_session, known_or_erased

    settings = settings or inspect_settings()
    if not settings.redis_url:
        raise ConfigurationError("no Redis URL to erase sessions from")
    redis = create_redis(settings.redis_url, settings.redis)
    store = CollectionStore(redis, settings.retrieval, settings.log.key_prefix)
    try:
        log = EventLog(redis, settings.log)
        await known_or_erased(log, session_id)
        await record_read(log, session_id, "voxline erase", _cli_user())
        return await erase_session(log, session_id, by="voxline erase", collections=store)
    finally:
        await store.aclose()
        await redis.aclose()


async def read_audit(session_id: str | None, settings: Settings | None = None, *,
                     limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` audit entries (of ``session_id``, or of every session), oldest
    first (``voxline audit``); an erased session's entries are still there."""
    from pipeline.log import EventLog, audit_entries, create_redis

    settings = settings or inspect_settings()
    if not settings.redis_url:
        raise ConfigurationError("no Redis URL to read the audit from")
    redis = create_redis(settings.redis_url, settings.redis)
    try:
        return await audit_entries(EventLog(redis, settings.log), session_id, count=limit)
    finally:
        await redis.aclose()


def _cli_user() -> str:
    """Who the CLI reads as, for the audit: the user and the host."""
    import getpass
    import socket

    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


# ---- stats --------------------------------------------------------------------------------


def _excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _measures(events: Sequence[Event], state: SessionState) -> dict[str, TurnMeasure]:
    scan = scan_session(events, closed=state.closed)
    return {turn.turn_id: turn for turn in scan.turns}


def utc_clock(ts: int) -> str:
    """A log time (ms since the epoch) as people read it."""
    return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def session_table(record: SessionRecord, *, excerpt_chars: int = 48) -> Table:
    """One session's timeline: a row per turn, stage latencies in ms."""
    events = record.events
    state = fold(record.session_id, events)
    measures = _measures(events, state)
    inputs = {e.turn_id: e.data.duration_ms for e in events if e.type == "input.audio"}
    stages = [s for s in STAGES if any(s in m.stages for m in measures.values())]
    first, last = events[0], events[-1]
    caption = [
        f"{len(state.turns)} turns, {state.event_count} events, "
        f"{utc_clock(first.ts)} → {utc_clock(last.ts)}" + (", closed" if state.closed else ""),
        "stages in ms from event timestamps; v2v = vad tail (estimated) + ttfa",
    ]
    if record.horizon:
        caption.append(f"events up to {record.horizon} were trimmed: older turns are missing")
    table = Table(title=f"session {record.session_id}", caption="\n".join(caption))
    table.add_column("#", justify="right")
    table.add_column("turn")
    table.add_column("input")
    table.add_column("transcript")
    table.add_column("reply")
    tools = any(turn.tool_calls for turn in state.turns.values())
    if tools:
        table.add_column("tools")
    for stage in stages:
        table.add_column(_STAGE_HEADERS[stage], justify="right")
    table.add_column("status")
    for number, turn in enumerate(state.turns.values(), start=1):
        measure = measures.get(turn.turn_id)
        status: str = measure.status if measure is not None else turn.status
        if measure is not None and measure.cancel_reason:
            status = f"{status} ({measure.cancel_reason})"
        if turn.errors:
            status += "\n" + ", ".join(turn.errors)
        duration = inputs.get(turn.turn_id)
        source = "text"
        if turn.source == "audio":
            source = "voice" if duration is None else f"voice {duration / 1000:.1f} s"
        timings = measure.stages if measure is not None else {}
        style = _STATUS_STYLE.get(status.split()[0], "")
        table.add_row(
            str(number),
            turn.turn_id,
            source,
            _excerpt(turn.user_text, excerpt_chars),
            _excerpt(turn.assistant_text, excerpt_chars),
            *(["\n".join(f"{call.name}: {call.status}" for call in turn.tool_calls.values())]
              if tools else []),
            *[f"{timings[s]:.0f}" if s in timings else "–" for s in stages],
            f"[{style}]{status}[/]" if style else status,
        )
    return table


# ---- replay -------------------------------------------------------------------------------


def transcript_lines(record: SessionRecord) -> list[str]:
    """``user: …``, ``assistant: …`` and ``tool: …`` lines, turn by turn, as the user
    experienced it (a tool line: the call, where it ran, and what the model read of it).

    A cancelled reply shows what was sent before the cancellation.
    """
    state = fold(record.session_id, record.events)
    unkept = {e.turn_id for e in record.events
              if isinstance(e, InputAudio) and not e.data.audio}
    lines: list[str] = []
    for turn in state.turns.values():
        if turn.user_text:
            kept = " [its audio was not kept]" if turn.turn_id in unkept else ""
            lines.append(f"user: {turn.user_text}{kept}")
        for message in turn.exchange:
            if message.role == "assistant" and message.content:
                lines.append(f"assistant: {message.content}")
            for call in message.tool_calls:
                where = turn.tool_calls[call.id].runs_on
                lines.append(f"tool: {call.name}({call.arguments}) [{where}]")
            if message.role == "tool":
                lines.append(f"tool: → {_excerpt(message.content, 200)}")
        if turn.reply_text:
            suffix = " [cancelled]" if turn.status == "cancelled" else ""
            lines.append(f"assistant: {turn.reply_text}{suffix}")
    return lines


def _strip_wav_header(data: bytes) -> bytes | None:
    """PCM16 of a WAV stream (our streaming header or an exact one); ``None``: not one."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack("<4sI", data[pos : pos + 8])
        body = pos + 8
        if chunk_id == b"data":
            return data[body:] if size == 0xFFFFFFFF else data[body : body + size]
        pos = body + size + (size & 1)
    return None


def _decode(fmt: AudioFormat, data: bytes, rate: int) -> bytes:
    if fmt is AudioFormat.PCM16:
        return data
    if fmt is AudioFormat.WAV and (pcm := _strip_wav_header(data)) is not None:
        return pcm
    from pipeline.audio import decode_audio

    return decode_audio(data, sample_rate=rate)


def turn_audio(events: Sequence[Event], turn_id: str) -> tuple[bytes, int] | None:
    """The PCM16 mono audio (and its rate) the user heard in ``turn_id``, or ``None``.

    A turn's chunks form one stream per ``chunk_index`` run from 0 (the response, then
    a narration, say); each is decoded whole, in its format, and resampled to the rate
    of the first one when rates differ.
    """
    streams: list[tuple[AudioFormat, int, bytearray]] = []
    for event in events:
        if not isinstance(event, ResponseAudioChunk) or event.turn_id != turn_id:
            continue
        data = event.data
        current = streams[-1] if streams else None
        if (
            current is None
            or data.chunk_index == 0
            or current[0] is not data.format
            or current[1] != data.sample_rate
        ):
            streams.append((data.format, data.sample_rate, bytearray(data.audio)))
        else:
            current[2].extend(data.audio)
    if not streams:
        return None
    rate = streams[0][1]
    pcm = bytearray()
    for fmt, stream_rate, payload in streams:
        decoded = _decode(fmt, bytes(payload), stream_rate)  # PCM16 at stream_rate
        if stream_rate != rate:
            from pipeline.audio import resample_pcm16

            decoded = resample_pcm16(decoded, stream_rate, rate)
        pcm += decoded
    return bytes(pcm), rate


@dataclass(frozen=True)
class ReplayTurn:
    number: int
    turn_id: str
    user: str
    assistant: str
    status: str
    audio: Path | None = None
    audio_s: float = 0.0


@dataclass(frozen=True)
class ReplayResult:
    out_dir: Path
    transcript: Path
    lines: list[str] = field(default_factory=list)
    turns: list[ReplayTurn] = field(default_factory=list)


def replay_session(record: SessionRecord, out_dir: Path) -> ReplayResult:
    """Write ``transcript.txt`` and ``turn-NN-<turn id>.wav`` per turn with audio."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = fold(record.session_id, record.events)
    lines = transcript_lines(record)
    transcript = out_dir / "transcript.txt"
    transcript.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    turns: list[ReplayTurn] = []
    for number, turn in enumerate(state.turns.values(), start=1):
        turns.append(_replay_turn(record, turn, number, out_dir))
    return ReplayResult(out_dir, transcript, lines, turns)


def _replay_turn(record: SessionRecord, turn: TurnState, number: int, out_dir: Path) -> ReplayTurn:
    audio = turn_audio(record.events, turn.turn_id)
    path: Path | None = None
    seconds = 0.0
    if audio is not None and audio[0]:
        pcm, rate = audio
        path = out_dir / f"turn-{number:02d}-{turn.turn_id}.wav"
        write_wav(path, pcm, rate)
        seconds = len(pcm) / 2 / rate
    return ReplayTurn(
        number, turn.turn_id, turn.user_text, turn.assistant_text, turn.status, path, seconds
    )
