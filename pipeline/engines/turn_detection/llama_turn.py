"""A language model's end-of-turn probability: do the words so far end a request?

Smart Turn hears how speech ends, and on the turn-taking corpus's synthetic voices it
hears a thinking pause ("I would like to know, …") as often complete as a finished
question: over every pause of that corpus it tells the two apart no better than chance
(ROC AUC 0.48, ``bench_turn_taking --part pauses``). The words tell them apart far
better: a language model that has read many requests knows that "I would like to know"
goes on and "Why is the sky blue" does not (AUC 0.88 on the same pauses with the
packaged Gemma 3 270M). That is the idea of LiveKit's turn detector (a small LM's
probability of the end-of-turn token), here with the base model Voxline already ships.

The question put to the model: after a few lines of transcribed requests, one per line,
and the transcript so far (its trailing punctuation removed: Whisper writes a full stop
wherever the audio stops), how likely is the next token to end the line (a newline, or
``.``, ``?``, ``!``)? The fixed lines are evaluated once and kept in the KV cache, so a
verdict costs the transcript's own tokens only: ~65 ms of one core, ~45 ms of two, for a
short request (2-core machine). The transcript is bounded (its last
``max_text_tokens``), so no input makes a verdict slow.

Calls run on one worker thread that owns the llama.cpp context, in order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.engines._llama_cpp_open import open_gguf
from pipeline.engines._worker import ModelWorker
from pipeline.engines.base import TextTurnDetector
from schemas import EngineError, ErrorCode

__all__ = ["REQUEST_LINES", "LlamaTextTurnDetector", "LlamaTextTurnOptions"]

#: the fixed lines the transcript follows: requests to a voice assistant, one per line,
#: in the two languages of the corpus (the model's line ends are the verdict). Some go on
#: past a point where they could have stopped ("Book a taxi to the airport, for three
#: people, …"): with only short lines the model took any whole clause for a whole request,
#: and a speaker's pause after "What should I cook tonight" or "I need to buy eggs" for its
#: end. On the turn-taking corpus's pauses (``bench_turn_taking --part pauses``, seeds 0
#: and 1) these lines halve the pauses inside turns called complete at the same share of
#: turn ends (none of the corpus's sentences is among them).
REQUEST_LINES = (
    "Transcripts of what users said to a voice assistant, one request per line.\n\n"
    "User: What is the weather like today?\n"
    "User: Set an alarm for seven.\n"
    "User: Wie spät ist es in Tokio?\n"
    "User: Book a taxi to the airport, for three people, at five tomorrow.\n"
    "User: Erzähl mir etwas über Berlin.\n"
    "User: Play something relaxing, maybe jazz or classical.\n"
    "User: Turn off the lights in the kitchen, and in the hall.\n"
    "User: Who wrote Hamlet?\n"
    "User:"
)
_TRAILING = re.compile(r"[\s.?!…,;:]+$")
_ENDS_LINE = re.compile(rb"^(?:[.?!]|\n)")
_BYTE_PIECE = re.compile(rb"^<0x([0-9A-Fa-f]{2})>$")


class LlamaTextTurnOptions(BaseModel):
    """Options of the ``llama-cpp`` text end-of-turn engine (``VOXLINE_TURN_TEXT__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path | None = Field(
        default=None, description="a GGUF file; unset means the packaged Gemma 3 270M"
    )
    model_dir: Path | None = Field(
        default=None, description="where the packaged model is assembled; unset means the "
        "packaged-model cache",
    )
    threads: int = Field(
        default=1, ge=1, le=16,
        description="CPU threads of one verdict (1: ~65 ms, 2: ~45 ms on the 2-core machine)",
    )
    max_text_tokens: int = Field(
        default=96, ge=8, le=512,
        description="the transcript's last tokens the model reads (a verdict's bound)",
    )


class LlamaTextTurnDetector(TextTurnDetector):
    """The end-of-line probability of a GGUF model after the transcript (see the module
    docstring)."""

    name = "llama-cpp"
    Options = LlamaTextTurnOptions
    options: LlamaTextTurnOptions

    def __init__(self, options: LlamaTextTurnOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._worker = ModelWorker(self.name, self.stage, thread_name="voxline-turn-text")
        self._llm: Any = None
        self._prefix_tokens = 0
        self._ends_line: np.ndarray | None = None

    @property
    def ready(self) -> bool:
        return self._llm is not None

    @property
    def model_name(self) -> str | None:
        path = self.options.model_path
        return path.name if path is not None else "gemma-3-270m-q4_k_m"

    async def load(self) -> None:
        if self._llm is not None:
            return
        self._worker.start()
        await self._worker.call(self._load_blocking)

    def _load_blocking(self) -> None:
        o = self.options
        n_ctx = 64 + len(REQUEST_LINES) + o.max_text_tokens  # the lines are < 1 token/char
        llm = open_gguf(o.model_path, o.model_dir, n_ctx=n_ctx, n_threads=o.threads,
                        n_batch=n_ctx, omp_passive_wait=True)
        prefix = llm.tokenize(REQUEST_LINES.encode(), add_bos=True, special=False)
        llm.reset()
        llm.eval(prefix)
        self._ends_line = _line_ends(llm)
        self._prefix_tokens = llm.n_tokens
        self._llm = llm

    async def close(self) -> None:
        await self._worker.close()
        self._llm = None

    async def completion(self, text: str, language: str = "en") -> float:
        if self._llm is None:
            raise EngineError("the text end-of-turn model is not loaded",
                              code=ErrorCode.TURN_DETECTION_FAILED, stage=self.stage)
        body = _TRAILING.sub("", text.strip())
        if not body:
            return 0.0
        return await self._worker.call(lambda: self._completion_blocking(body))

    def _completion_blocking(self, body: str) -> float:
        llm, ends_line = self._llm, self._ends_line
        assert llm is not None and ends_line is not None
        try:
            tokens = llm.tokenize(f" {body}".encode(), add_bos=False, special=False)
            llm.n_tokens = self._prefix_tokens  # the fixed lines stay cached
            llm.eval(tokens[-self.options.max_text_tokens:])
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(ends_line.size,))
        except Exception as exc:  # llama.cpp raises RuntimeError/ValueError of its own
            raise EngineError(f"the text end-of-turn model failed: {exc}",
                              code=ErrorCode.TURN_DETECTION_FAILED, stage=self.stage) from exc
        logits = logits.astype(np.float64)
        p = np.exp(logits - logits.max())
        return float(np.clip(p[ends_line].sum() / p.sum(), 0.0, 1.0))


def _line_ends(llm: Any) -> np.ndarray:
    """Which of the model's tokens start with a line's end (``.``, ``?``, ``!``, newline),
    from the vocabulary's raw pieces (byte tokens such as ``<0x0A>`` read as their byte):
    a fifth of the time of detokenizing each of Gemma's 262,144 tokens."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    size = llm.n_vocab()

    def ends(token: int) -> bool:
        piece = llama_cpp.llama_vocab_get_text(vocab, token) or b""
        byte = _BYTE_PIECE.match(piece)
        if byte is not None:
            piece = bytes([int(byte.group(1), 16)])
        return _ENDS_LINE.match(piece) is not None

    return np.fromiter((ends(t) for t in range(size)), dtype=bool, count=size)
