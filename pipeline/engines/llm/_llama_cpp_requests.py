"""What :class:`pipeline.engines.llm._llama_cpp_parallel.ParallelScheduler` keeps per request
and per sequence, what it does to a sequence's KV cache, and the sampler chain it builds
for each: apart from the scheduler, whose module is its loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.engines.base import GenerationStats
from pipeline.engines.llm._detokenizer import Detokenizer
from pipeline.engines.llm.prompting import DialoguePrompt, StopScanner
from schemas import SamplingSettings

#: tokens of its own reply a sequence's repeat penalty looks back on (Llama's default)
PENALTY_LAST_N = 64
#: tokens a sequence's cache may lose to the prompt that takes it over (the end of the
#: same dialogue's last reply, tokenized again): more is another dialogue's, kept
MAX_LOST_TOKENS = 8
#: shared tokens worth copying from another sequence's cache rather than evaluating: a
#: copy moves that sequence's whole cache (tens of MB), a few tokens' time
MIN_COPY_TOKENS = 8


@dataclass(frozen=True, slots=True)
class SamplerSettings:
    """The engine's sampling options that are not the request's."""

    top_k: int
    min_p: float
    repeat_penalty: float
    max_temperature: float


@dataclass(slots=True)
class End:
    error: BaseException | None = None


@dataclass(eq=False, slots=True)
class Slot:
    """One sequence of the context: its id and the tokens its KV cache holds."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    #: when a request last started in it (for evicting the dialogue used longest ago)
    used: float = 0.0


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a prompt runs: ``slot``, after copying ``source``'s cache there if given; its
    first ``keep`` tokens are then cached."""

    slot: Slot
    keep: int
    source: Slot | None = None


@dataclass(eq=False)
class Request:
    prompt: DialoguePrompt
    sampling: SamplingSettings
    stats: GenerationStats
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[str | End] = field(default_factory=asyncio.Queue)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    #: set on the event loop, read by the worker: the consumer left
    cancelled: bool = False
    #: pieces the consumer has taken (event loop) and the worker has sent
    taken: int = 0
    sent: int = 0
    ended: bool = False
    # the worker's own
    slot: Slot | None = None
    pending: list[int] = field(default_factory=list)
    next_token: int = -1
    max_tokens: int = 0
    started: float = 0.0
    sampler: Any = None
    grammar: Any = None
    detokenizer: Detokenizer | None = None
    scanner: StopScanner | None = None


def sampler_chain(seqs: Any, lib: Any, o: SamplerSettings, sampling: SamplingSettings,
              grammar: Any = None) -> Any:
    """The chain ``llama_cpp.Llama`` builds for these settings (and a grammar)."""
    chain = seqs.sampler()
    chain.add_penalties(
        n_vocab=seqs.n_vocab,
        penalty_last_n=PENALTY_LAST_N,
        penalty_repeat=o.repeat_penalty,
        penalty_freq=0.0,
        penalty_present=0.0,
    )
    if grammar is not None:  # what the grammar forbids is out before anything picks
        seqs.add_grammar(chain, grammar)
    temperature = min(sampling.temperature, o.max_temperature)
    if temperature == 0.0:
        chain.add_greedy()
    else:
        seed = sampling.seed if sampling.seed is not None else lib.LLAMA_DEFAULT_SEED
        chain.add_top_k(o.top_k)
        chain.add_typical(1.0, 1)
        chain.add_top_p(sampling.top_p, 1)
        chain.add_min_p(o.min_p, 1)
        chain.add_temp(temperature)
        chain.add_dist(seed & 0xFFFFFFFF)
    return chain


def common_prefix(cached: list[int], tokens: list[int], limit: int) -> int:
    n = 0
    for a, b in zip(cached, tokens[:limit], strict=False):
        if a != b:
            break
        n += 1
    return n


def place(tokens: list[int], free: Sequence[Slot], every: Sequence[Slot]) -> Placement:
    """The free sequence a prompt runs in, losing no dialogue another session comes back to.

    The free sequence whose cache begins the prompt furthest is taken if that loses at
    most ``MAX_LOST_TOKENS`` of its cache: the same dialogue going on (or an empty one).
    Otherwise that cache is another dialogue that merely opens the same way (the system
    prompt and worked examples every session shares); taking it over would make its next
    turn evaluate its whole history again, so the prompt takes the free sequence used
    longest ago (an empty one first). Either way, a beginning another sequence (busy or
    not) holds further is copied in first when that saves ``MIN_COPY_TOKENS``. ``free``
    is among ``every``.
    """
    shared = {slot: common_prefix(slot.tokens, tokens, len(tokens) - 1) for slot in every}
    best = max(free, key=shared.__getitem__)
    if len(best.tokens) - shared[best] <= MAX_LOST_TOKENS:
        slot = best
    else:
        slot = min(free, key=lambda s: (bool(s.tokens), s.used))
    source = max(every, key=shared.__getitem__)
    if shared[source] - shared[slot] >= MIN_COPY_TOKENS:
        return Placement(slot, shared[source], source)
    return Placement(slot, shared[slot])


def copy_cache(lib: Any, seqs: Any, source: Slot, target: Slot) -> None:
    """Give ``target`` a copy of ``source``'s cache (a cache per sequence: llama.cpp copies
    the whole of it before the next decode; the caller keeps the part it needs)."""
    lib.llama_memory_seq_cp(seqs.memory, source.seq_id, target.seq_id, -1, -1)
    target.tokens = list(source.tokens)


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the consumer's loop is closed: nobody reads
        loop.call_soon_threadsafe(fn, *args)


def keep_prefix(lib: Any, seqs: Any, slot: Slot, keep: int) -> bool:
    """Drop the slot's cache from position ``keep`` on; False when the rest cannot be
    kept (a sliding-window cache no longer holds what position ``keep`` attends to)."""
    memory, n_swa = seqs.memory, seqs.n_swa
    # what llama.cpp's server checks: the cache must still hold every position the
    # first new token attends to (all of them without a sliding window)
    if lib.llama_memory_seq_pos_min(memory, slot.seq_id) > (
        max(0, keep - n_swa) if n_swa else 0
    ):
        return False
    return bool(lib.llama_memory_seq_rm(memory, slot.seq_id, keep, -1))


def clear_slot(lib: Any, seqs: Any, slot: Slot | None) -> None:
    """Empty a sequence's KV cache (``None``: no sequence, nothing to do)."""
    if slot is not None:
        lib.llama_memory_seq_rm(seqs.memory, slot.seq_id, -1, -1)
        slot.tokens = []
