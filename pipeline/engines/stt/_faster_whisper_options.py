"""The ``faster-whisper`` engine's options (``VOXLINE_STT__*``) and the defaults measured for them.

Apart from the engine (:mod:`pipeline.engines.stt.faster_whisper`) because most of it is the
figures each default was chosen by; the engine reads the options, and decides with them.

Batching across requests. With ``batch_max_items`` > 1 (8 by default), the voice-turn
requests of different sessions that end together (short: one 30 s window, language known,
greedy, no prompt, no word timestamps) go through a :class:`~pipeline.aio.Batcher` whose
batch runs on the same worker thread, decoded one window each in one ``generate``
(:mod:`pipeline.engines.stt._whisper_windows`: the segments ``transcribe`` would make), each
in the window it would have alone (the turn window below, where it fits): batching changes
no transcript. Everything else (files, long audio, detection) keeps the streaming path; a
batched request's segments come all at once, after its batch. With ``batch_wait_ms`` 0 (the
default) a request alone runs at once; only those that queued behind a running call share
the next. In Whisper's 30 s window the encoder, which batching cannot cheapen, was most of
the cost and batching gained little; in a turn's 15 s window the decoder's share is larger,
and turns that end together are done about twice as soon (``loadtests/bench_stt_batch.py``).

Quick requests (``TranscriptionRequest.quick``: the few words said over a held reply,
which stays silent until they are judged). Whisper pads everything to 30 s and the
encoder's cost follows the window, so a short quick request is decoded as a voice turn is
(one window's tokens) but padded to ``quick_window_s`` only (15 s: about a third of the
time, judged as well), never batched, with its tokens bounded by its length. A short
window makes Whisper loop on a word now and then; such a transcript is decoded again in
the full window.

Voice turns (one window's worth, language known, greedy, no prompt; batched or not) are
decoded the same way in ``turn_window_s``: a spoken question lasts a few seconds, so a 30 s
encoding is mostly padding, and the Transcriber is the largest stage of a voice turn on the
CPU (issue 23). Unset, it is 10 s for an English-only model's turns that fit it and 15 s
for the others (the CPU profile's tiny.en: ~2-3x less CPU a call, no more word errors) and
Whisper's own 30 s for a multilingual one (base lost words in German at 15 s). A batch
decodes the turns of each window together.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.engines.stt._whisper import WhisperModelOptions
from pipeline.engines.stt._whisper_windows import WINDOW_S
from schemas import EngineError, ErrorCode

__all__ = ["BATCH_MAX_ITEMS", "BATCH_WAIT_MS", "COMPUTE_TYPES", "ENGLISH_SHORT_TURN_WINDOW_S",
           "ENGLISH_TURN_WINDOW_S", "QUICKWINDOW_S", "TINY_MODEL_THREADS",
           "FasterWhisperOptions", "check_gpu"]

_DEVICE_SETTING = "VOXLINE_STT__DEVICE"

#: defaults of the batching options: turns that queued behind a running call share the
#: next one, nothing waits for company. loadtests/bench_stt_batch.py, tiny.en, turns in
#: their 15 s window, two cores (2026-11-26): 8 concurrent requests all done after 0.51 s
#: batched against 0.99 s one by one; 4: 0.32 / 0.43 s; one alone 0.116 / 0.118 s (no cost)
BATCH_MAX_ITEMS = 8
BATCH_WAIT_MS = 0.0
#: Whisper base on two cores, the turn-taking benchmark's overlap corpus (27 sounds of
#: ~1 s, two seeds), judged backchannel or not: a 15 s window took ~460 ms a call against
#: ~1,285 ms for 30 s, and judged as well (2 wrong of 27 each seed; 30 s: 3 and 2). At
#: 10 s, ~345 ms but 4 and 6 wrong (a cough heard as "I'm sorry."); at 5 s words repeat
#: ("Stop. Stop. Stop. ..."); tiny.en, weaker, mishears more at 10 s than at 15 s
QUICKWINDOW_S = 15.0
#: the quantisation where ``compute_type`` is unset: int8 on the CPU (the fastest there,
#: and what every CPU figure was measured with); on a GPU float16, the packaged models' own
#: weights and WhisperX's GPU setting (``bench_stt_batch.py --device cuda --compute-types
#: float16,int8_float16`` compares the two)
COMPUTE_TYPES: dict[str, str] = {"cpu": "int8", "cuda": "float16"}


class FasterWhisperOptions(WhisperModelOptions):
    """Options of the ``faster-whisper`` engine (``VOXLINE_STT__*``)."""

    device: Literal["cpu", "cuda"] = Field(
        default="cpu",
        description="where CTranslate2 runs the model: cpu, or cuda (a GPU CTranslate2 "
        "itself sees: refused at load otherwise)",
    )
    device_index: int = Field(default=0, ge=0, description="which GPU, with device=cuda")
    compute_type: str | None = Field(
        default=None,
        description="CTranslate2 quantisation (int8, int8_float16, float16, float32, ...); "
        "unset: int8 on the CPU, float16 on a GPU",
    )
    cpu_threads: int = Field(
        default=0, ge=0, le=64,
        description="CTranslate2's CPU threads; 0: 1 for a tiny model, min(4, CPU count) "
        "for the others (TINY_MODEL_THREADS)",
    )
    beam_size: int = Field(default=1, ge=1, le=10, description="1 is greedy: fastest")
    no_speech_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    log_prob_threshold: float = Field(default=-1.0, le=0.0)
    compression_ratio_threshold: float = Field(default=2.4, gt=1.0)
    silence_dbfs: float = Field(
        default=-60.0, le=0.0, description="quieter audio is silence: no model call"
    )
    warmup: bool = Field(default=True, description="one tiny call at load: no slow first turn")
    batch_max_items: int = Field(
        default=BATCH_MAX_ITEMS,
        ge=1,
        le=64,
        description="short utterances of different requests decoded in one call; 1: none",
    )
    batch_wait_ms: float = Field(
        default=BATCH_WAIT_MS,
        ge=0.0,
        le=200.0,
        description="how long an utterance waits for others to share its call; 0: only "
        "those that queued behind a running call share it",
    )
    quick_window_s: float = Field(
        default=QUICKWINDOW_S,
        ge=5.0,
        le=WINDOW_S,
        description="the window a quick request (TranscriptionRequest.quick) is encoded in, "
        "when its audio fits: the encoder's cost is about proportional to it; 30: "
        "Whisper's own window (quick requests as any other)",
    )
    turn_window_s: float | None = Field(
        default=None,
        ge=5.0,
        le=WINDOW_S,
        description="the window a voice turn (language known, greedy, no prompt) is "
        "encoded in when its audio fits, batched or not; a transcript that loops is decoded "
        "again in 30 s; 30: Whisper's own window; unset: 10 for an English-only model's "
        "turns that fit it and 15 for the others (~2-3x less CPU a call for tiny.en, no "
        "more word errors), 30 for a multilingual one",
    )


#: the turn window of an English-only model (``turn_window_s`` unset). tiny.en on two cores
#: (``loadtests/bench_stt_window.py``, 2026-11-26: the engine's own path over the turn
#: corpus's 160 English turns of seeds 0 and 1, Piper and three espeak voices, and 30
#: renditions of "What is the capital of France?" by Piper, its sampling noise on): word
#: error rate 19.8 % at 30 s, 17.4 % at 20 s, 17.1 % at 15 s, 16.7 % at 10 s, at 257 / 145 /
#: 109 / 82 ms and 0.43 / 0.25 / 0.21 / 0.16 CPU-s a call; France heard in all 30 at every
#: window (other renditions: "... of friends?" once in 30 at 20, 15 and 10 s, never at 30 s,
#: the same morning; 3 times at 15 s and once at 20 s on 2026-11-25).
#: 10 s saves ~25 ms more but alone would send questions over 9.5 s to 30 s, so a turn
#: that fits 10 s is encoded in it and one that does not in 15
#: (:data:`ENGLISH_SHORT_TURN_WINDOW_S`). A multilingual model keeps 30 s: base in German
#: (16 espeak turns) 45.9 % at 30 s, 49.0 % at 15 s.
ENGLISH_TURN_WINDOW_S = 15.0
#: the window of an English-only model's turns that fit it (``turn_window_s`` unset): the
#: figures above (no more word errors at 10 s; 2026-11-28's kept run: 16.6 % against
#: 17.4 % at 15 s, 127 against 173 ms a call), and a voice turn's pause is transcribed on
#: the critical path of a preemptive reply (issue 51)
ENGLISH_SHORT_TURN_WINDOW_S = 10.0
#: CTranslate2's threads for a tiny Whisper (``cpu_threads`` unset): its matrix products are
#: too small to pay for splitting them. ``loadtests/bench_threads.py --stages stt`` on two
#: cores (2026-11-30, 20 calls each): tiny.en **72 ms wall, 143 ms CPU a call at one
#: thread** against 84 / 163 at two, and with another process spinning 108 / 133 against
#: 130 / 152 (on 2026-11-26's slower machine: the same wall, 400 against 449 ms CPU).
#: Served, `capacity --steps 1,8 --step-s 40` alternated: the Transcriber's CPU-s a turn
#: 0.091-0.093 / 0.073-0.076 at 1 / 8 sessions against 0.102-0.112 / 0.088-0.100 at two.
#: base is another matter (724 against 530 ms wall a call at one thread), so the others
#: keep min(4, CPU count).
TINY_MODEL_THREADS = 1


def check_gpu(index: int) -> None:
    """Refuse ``device=cuda`` at load where CTranslate2 sees no GPU ``index`` (its build
    without CUDA, no driver, or fewer GPUs): a clear configuration error, as the Coqui and
    WhisperX engines give, instead of CTranslate2's own error from deep in the load."""
    import ctranslate2

    try:
        count = int(ctranslate2.get_cuda_device_count())
    except RuntimeError:  # a CUDA runtime that cannot start: no usable GPU either
        count = 0
    if index >= count:
        seen = "no GPU" if count == 0 else f"{count} GPU(s), not cuda:{index}"
        raise EngineError(
            f"device=cuda but CTranslate2 sees {seen}; set {_DEVICE_SETTING}=cpu",
            code=ErrorCode.CONFIGURATION_ERROR,
            stage="stt",
            recoverable=False,
            setting=_DEVICE_SETTING,
        )
