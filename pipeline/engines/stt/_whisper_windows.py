"""Short utterances decoded one Whisper window each, many in one model call.

faster-whisper's ``transcribe`` decodes one request at a time, window by window. A voice
turn's audio fits one window, so its tokens come from one ``generate`` over its encoding:
many turns can share that call (batching across sessions), and a quick request can be
encoded in a shorter window, the encoder's cost following the window's length.
:func:`decode_windows` does for a list of utterances what ``transcribe`` does for one
window (the same prompt and decoding options, the same no-speech skip and timestamp
split); what the model leaves undecoded goes on through ``transcribe`` (``rest``).
:func:`decode_by_window` runs a batch as its items would run alone, each in its own window.

Plain functions over the loaded model, for the engine's worker thread: the engine
(:mod:`pipeline.engines.stt.faster_whisper`) decides which requests come here.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pipeline.audio import FloatAudio, rms_dbfs
from schemas import EngineError, ErrorCode, TranscriptionRequest, TranscriptSegment, VoxlineError

__all__ = ["SAMPLE_RATE", "WINDOW_S", "Utterance", "decode_by_window", "decode_windows",
           "host_encoding", "looped", "one_window", "stt_failure", "token_bound",
           "transcript_segment", "unlooped"]

logger = logging.getLogger(__name__)

WINDOW_S = 30.0  # Whisper's window: a batched utterance fits in one
SAMPLE_RATE = 16000  # the audio a Whisper model hears

#: (audio, language, request, start_s) → faster-whisper's lazy segments from ``start_s``
Rest = Callable[[FloatAudio, str, TranscriptionRequest, float], Generator[Any, None, None]]
#: what a batch's items come to: each one's segments, or its own error
Results = list[list[TranscriptSegment] | BaseException]
#: (items, window_s, max_length) → their results: :func:`decode_windows` over a model
Decode = Callable[[Sequence["Utterance"], float, "int | None"], Results]
#: a short-window request's tokens at most after its initial prompt: the task tokens and
#: timestamps, and far more words a second than anyone speaks (a looping decoder stops there)
SHORT_TOKENS = 24
SHORT_TOKENS_PER_S = 12


@dataclass(frozen=True, slots=True)
class Utterance:
    """A request decoded in one window, and its Whisper language code."""

    request: TranscriptionRequest
    language: str


class DecodeOptions(Protocol):
    """The engine's options a window's decoding follows."""

    @property
    def beam_size(self) -> int: ...
    @property
    def no_speech_threshold(self) -> float: ...
    @property
    def log_prob_threshold(self) -> float: ...
    @property
    def silence_dbfs(self) -> float: ...


def token_bound(request: TranscriptionRequest) -> int:
    """A short-window decode's tokens at most after its prompt, by the audio's length."""
    seconds = len(request.audio) / 2 / request.sample_rate
    return SHORT_TOKENS + round(SHORT_TOKENS_PER_S * seconds)


def decode_by_window(
    items: Sequence[Utterance],
    window_of: Callable[[Utterance], float],
    decode: Decode,
    loops: Callable[[list[TranscriptSegment]], bool],
) -> Results:
    """A batch decoded as each of its items would be alone, so that batching never changes
    a transcript: each in its own window (``window_of``), one ``decode`` per window; a
    short window's tokens bounded by its longest item (a shorter one stops at its own end,
    and one that loops is decoded again anyway), and an item whose transcript ``loops``
    there decoded again in Whisper's window."""
    results: Results = [[] for _ in items]
    by_window: dict[float, list[int]] = {}
    for index, item in enumerate(items):
        by_window.setdefault(window_of(item), []).append(index)
    again: list[int] = []
    for window, indices in by_window.items():
        short = window < WINDOW_S
        bound = max(token_bound(items[i].request) for i in indices) if short else None
        decoded = decode([items[i] for i in indices], window, bound)
        for index, result in zip(indices, decoded, strict=True):
            if short and not isinstance(result, BaseException) and loops(result):
                again.append(index)
            else:
                results[index] = result
    if again:
        logger.info("faster-whisper: %d batched decode(s) looped; the full window", len(again))
        decoded = decode([items[i] for i in again], WINDOW_S, None)
        for index, result in zip(again, decoded, strict=True):
            results[index] = result
    return results


def one_window(request: TranscriptionRequest, window_s: float) -> bool:
    """Short enough for one window of ``window_s`` (the feature extractor pads the audio),
    greedy, no word timestamps: decodable as one window's tokens (after its prompt, if it
    has one, as ``transcribe`` would put it)."""
    seconds = len(request.audio) / 2 / request.sample_rate
    return (
        seconds <= window_s - 0.5
        and request.temperature == 0
        and not request.word_timestamps
    )


#: a word said this many times in a row is a loop, not speech
LOOP_REPEATS = 3
_WORD = re.compile(r"[\w'-]+")


def looped(text: str, compression_ratio_threshold: float) -> bool:
    """Whisper looped in ``text``: it compresses as a long loop does (Whisper's own test),
    or one word comes :data:`LOOP_REPEATS` times in a row ("Uh-huh. Uh-huh. Uh-huh. Uh-h",
    too short to compress). A person who says "yeah, yeah, yeah" only costs a decode in
    the full window."""
    from faster_whisper.transcribe import get_compression_ratio

    if not text:
        return False
    if get_compression_ratio(text) > compression_ratio_threshold:
        return True
    words = _WORD.findall(text.lower())
    return any(len(set(words[i:i + LOOP_REPEATS])) == 1
               for i in range(len(words) - LOOP_REPEATS + 1))


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
#: a word, then itself again LOOP_REPEATS - 1 times or more
_WORD_RUN = re.compile(r"\b([\w'-]+)\b(?:[\s,.!?;]+\1\b){" + str(LOOP_REPEATS - 1) + ",}",
                       re.IGNORECASE)


def unlooped(text: str) -> str:
    """``text`` with its loop taken out: a sentence said again right after itself, a word
    said :data:`LOOP_REPEATS` times or more in a row, and the unfinished copy the token
    bound cut ("Yeah. Yeah. Yeah. Yea" is "Yeah."; "m m m m" is "m"). What comes before a
    loop is what was said; a loop of several sentences stays, and stays :func:`looped`."""
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        said = " ".join(_WORD.findall(sentence.lower()))
        last = " ".join(_WORD.findall(kept[-1].lower())) if kept else None
        if last is not None and (said == last or (not sentence.endswith((".", "!", "?"))
                                                  and last.startswith(said))):
            continue
        kept.append(sentence)
    return _WORD_RUN.sub(r"\1", " ".join(kept))


def host_encoding(model: Any, window: np.ndarray) -> np.ndarray:
    """One window's encoder output as a host array, on any device. numpy reads only a
    StorageView in host memory, and on a GPU (``device=cuda``) faster-whisper's own
    ``encode`` leaves it on the device, where ``np.asarray`` makes a 0-d object array of it
    (seen on an H200). So the encoder is asked for a host copy (``to_cpu``: 1500 × width
    numbers, ~1 MB for tiny in float16, which goes to the GPU again with the batch in
    ``generate``); on the CPU that is the output itself. One path everywhere, so the CPU
    suite runs the call a GPU makes."""
    from faster_whisper.transcribe import get_ctranslate2_storage

    return np.asarray(model.model.encode(get_ctranslate2_storage(window[None]), to_cpu=True))


def decode_windows(
    model: Any,
    options: DecodeOptions,
    items: Sequence[Utterance],
    audio_of: Callable[[bytes, int], FloatAudio],
    rest: Rest,
    *,
    window_s: float = WINDOW_S,
    max_length: int | None = None,
) -> Results:
    """Transcribe short utterances with one encode each and one generate for all, each
    padded to ``window_s``, at most ``max_length`` tokens each after its prompt (the
    model's ``max_length`` in all at most).

    An item whose audio cannot be read fails alone; a failing model call raises (the
    engine's batcher then runs the items one by one). CTranslate2 wants a batch's
    prompts of one length: the engine batches only requests without an initial prompt."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    results: list[list[TranscriptSegment] | BaseException] = [[] for _ in items]
    decoded: list[tuple[int, FloatAudio, int, Any]] = []  # index, audio, frames, tokenizer
    windows = []
    for index, item in enumerate(items):
        try:
            audio = audio_of(item.request.audio, item.request.sample_rate)
            if rms_dbfs(audio) < options.silence_dbfs:
                continue  # silence: nothing, as the streaming path
            features = model.feature_extractor(audio)
            frames = min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)
            window = round(window_s / model.feature_extractor.time_per_frame)
            windows.append(pad_or_trim(features[:, :frames], window))
            tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                                  task="transcribe", language=item.language)
            decoded.append((index, audio, frames, tokenizer))
        except Exception as exc:
            results[index] = _failed(exc)
    if not decoded:
        return results
    # The encoder one window at a time: its matrix products (1500 positions) are large
    # already, and on CPU a stacked call costs more, not less (bench_stt_batch.py).
    # The decoder, a token per item per step, is what gains from rows.
    import ctranslate2

    encoder_output = ctranslate2.StorageView.from_array(
        np.concatenate([host_encoding(model, window) for window in windows])
    )
    # What faster-whisper's generate_with_fallback passes for one temperature (0):
    # the same call, one prompt per item.
    prompts = [model.get_prompt(tokenizer, _initial_tokens(tokenizer, items[index].request),
                                without_timestamps=False)
               for index, _, _, tokenizer in decoded]
    longest = max(len(prompt) for prompt in prompts)
    outputs = model.model.generate(
        encoder_output,
        prompts,
        beam_size=options.beam_size,
        patience=1.0,
        length_penalty=1.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        max_length=min(longest + max_length if max_length else model.max_length,
                       model.max_length),
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(decoded[0][3], [-1]),
        max_initial_timestamp_index=round(1.0 / model.time_precision),
    )
    for (index, audio, frames, tokenizer), output in zip(decoded, outputs, strict=True):
        try:
            results[index] = _window_segments(model, options, audio, frames, tokenizer,
                                              output, items[index], rest)
        except Exception as exc:
            results[index] = _failed(exc)
    return results


def _initial_tokens(tokenizer: Any, request: TranscriptionRequest) -> list[int]:
    """The request's initial prompt as ``transcribe`` tokenizes it (none: no tokens)."""
    if not request.prompt or not request.prompt.strip():
        return []
    tokens: list[int] = tokenizer.encode(" " + request.prompt.strip())
    return tokens


def _window_segments(
    model: Any, options: DecodeOptions, audio: FloatAudio, frames: int, tokenizer: Any,
    output: Any, item: Utterance, rest: Rest,
) -> list[TranscriptSegment]:
    """One item's segments from its first window's tokens, as ``generate_segments``
    makes them; the rest of the audio, if the window left some, decoded from there."""
    tokens = output.sequences_ids[0]
    avg_logprob = output.scores[0] * len(tokens) / (len(tokens) + 1)
    if (output.no_speech_prob > options.no_speech_threshold
            and avg_logprob <= options.log_prob_threshold):
        return []  # the no-speech skip: the window (the whole utterance) is silence
    time_per_frame = model.feature_extractor.time_per_frame
    found, seek, _ = model._split_segments_by_timestamps(
        tokenizer=tokenizer,
        tokens=tokens,
        time_offset=0.0,
        segment_size=frames,
        segment_duration=frames * time_per_frame,
        seek=0,
    )
    duration = audio.size / SAMPLE_RATE
    segments = []
    for segment in found:
        text = tokenizer.decode(segment["tokens"])
        if segment["start"] == segment["end"] or not text.strip():
            continue
        segments.append(transcript_segment(text, segment["start"], segment["end"], (),
                                           item.language, duration))
    if seek < frames:  # the model stopped mid-window: go on from its last timestamp
        with contextlib.closing(rest(audio, item.language, item.request,
                                     seek * time_per_frame)) as more:
            segments.extend(transcript_segment(s.text, s.start, s.end, s.words, item.language,
                                               duration)
                            for s in more if s.text.strip())
    return segments


def transcript_segment(
    text: str, start: float, end: float, words: Any, language: str, duration_s: float
) -> TranscriptSegment:
    """A segment of faster-whisper's (or of one window's tokens) as Voxline's.

    Times are kept within the audio: Whisper's last timestamp can lie past it (2.0 s for a
    1.56 s question in its 30 s window; in a 15 s window once 24.56 s for 2.6 s)."""
    def within(t: float) -> float:
        return min(max(float(t), 0.0), duration_s)

    return TranscriptSegment(
        text=text.strip(),
        start_s=within(start),
        end_s=within(end),
        words=tuple((w.word.strip(), within(w.start), within(w.end)) for w in (words or ())),
        language=language,
    )


def stt_failure(exc: Exception) -> EngineError:
    """The error a request gets for a model failure (logged with its cause here)."""
    logger.error("faster-whisper failed", exc_info=exc)
    error = EngineError("transcription failed", code=ErrorCode.STT_FAILED, stage="stt")
    error.__cause__ = exc
    return error


def _failed(exc: Exception) -> BaseException:
    return exc if isinstance(exc, VoxlineError) else stt_failure(exc)
