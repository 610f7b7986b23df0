"""The second transcription path: re-transcribe utterances in the background.

For sessions in ``stt_mode == "whisperx"`` (as of the utterance), :class:`RefineWorker`
transcribes each ``input.audio`` event (one utterance; its audio is in the event) with a
:class:`Transcriber` (on a GPU cluster, the WhisperX deployment) and appends
``transcript.refined {text, language, source_event_id}`` with the utterance's ``turn_id``,
once: a per-utterance lease keeps two workers from doing it at once, and an utterance that
already has its ``transcript.refined`` is skipped.

An utterance the transcriber refuses for good (a non-transient :class:`VoxlineError`, such
as bad audio) gets an ``error`` event instead (stage ``stt``, ``details.source_event_id``,
``details.refine: true``), which also counts as done. A transient failure, or any other
exception, leaves the feed entry pending: it is retried after ``claim_idle_ms`` and
dead-lettered after ``max_deliveries``.
"""

from __future__ import annotations

import asyncio
import contextlib

from pipeline.engines import Transcriber, transcript_text
from pipeline.log import EventLog
from pipeline.privacy import redacted_for
from pipeline.reply import error_payload
from pipeline.workers.feed_worker import FeedWorker, Job
from schemas import (
    AudioFormat,
    ErrorCode,
    ErrorEvent,
    Event,
    InputAudio,
    SttMode,
    TranscriptionRequest,
    TranscriptRefined,
    TranscriptRefinedData,
    VoxlineError,
    primary_language,
)

__all__ = ["RefineWorker", "is_refined"]

#: The consumer group of the re-transcription workers.
GROUP = "refine"


def is_refined(source_event_id: str, events: list[Event] | tuple[Event, ...]) -> bool:
    """Whether ``events`` hold the refined transcript (or the refusal) of that utterance."""
    for event in events:
        if isinstance(event, TranscriptRefined) and event.data.source_event_id == source_event_id:
            return True
        if (
            isinstance(event, ErrorEvent)
            and event.data.details.get("refine")
            and event.data.details.get("source_event_id") == source_event_id
        ):
            return True
    return False


class RefineWorker(FeedWorker):
    """Consumer group ``refine``: one ``transcript.refined`` per utterance in whisperx mode."""

    group = GROUP
    event_types = frozenset({"input.audio"})

    def __init__(
        self,
        log: EventLog,
        stt: Transcriber,
        *,
        consumer: str,
        lease_ms: int = 10_000,
        block_ms: int = 1000,
    ) -> None:
        super().__init__(log, consumer=consumer, lease_ms=lease_ms, block_ms=block_ms)
        self.stt = stt

    def wanted(self, job: Job) -> bool:
        event = job.event
        if (not isinstance(event, InputAudio) or not event.data.audio  # not kept: nothing to hear
                or job.state.settings.stt_mode != SttMode.WHISPERX):
            return False
        return not is_refined(job.entry.event_id, list(job.after))

    async def act(self, job: Job) -> None:
        event = job.event
        assert isinstance(event, InputAudio) and event.id is not None
        settings = job.state.settings
        audio, rate = event.data.audio, event.data.sample_rate
        result: Event
        try:
            if event.data.format is not AudioFormat.PCM16:
                from pipeline.audio import decode_audio

                audio = await asyncio.to_thread(decode_audio, audio, sample_rate=rate)
            request = TranscriptionRequest(
                audio=audio, sample_rate=rate, language=primary_language(settings.language)
            )
            async with contextlib.aclosing(self.stt.transcribe(request)) as segments:
                text = transcript_text([s async for s in segments])
        except VoxlineError as exc:
            if exc.transient:
                raise
            payload = error_payload(
                exc, stage="stt", code=ErrorCode.STT_FAILED, recoverable=True,
                source_event_id=event.id, refine=True,
            )  # fmt: skip
            result = ErrorEvent(session_id=event.session_id, turn_id=event.turn_id, data=payload)
        else:
            data = TranscriptRefinedData(
                text=redacted_for(text, settings.redact, settings.language),
                language=settings.language, source_event_id=event.id
            )
            result = TranscriptRefined(
                session_id=event.session_id, turn_id=event.turn_id, data=data
            )
        await job.append([result])
