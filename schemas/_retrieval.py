"""Retrieval: which collection a turn searches, how, and what it cites.

A session may carry a :class:`SearchToolConfig` in its settings (``search``); one message
may carry its own (``search_tool_config`` on ``/v1/chat/stream``, the socket's
``input.text`` and ``/v1/chat/completions``), which replaces the session's for that turn.
The passages found go into the LLM's prompt; a ``response.citations`` event
(:class:`Citation` each) precedes ``response.done``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: ``bm25``: lexical search only. ``two_stage``: BM25 finds candidates, a sentence-embedding
#: model (all-MiniLM-L6-v2) re-orders them.
RetrievalStrategy = Literal["bm25", "two_stage"]

#: the most passages one turn may ask for
MAX_TOP_K = 20

_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class SearchToolConfig(BaseModel):
    """Search a collection for the turn's question and ground the reply in what is found."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    collection: str | None = Field(
        default=None, pattern=_ID_PATTERN,
        description="collection id (POST /v1/collections); unset: the session's own setting",
    )
    strategy: RetrievalStrategy = "bm25"
    top_k: int = Field(default=4, ge=1, le=MAX_TOP_K, description="passages to retrieve")


class Citation(BaseModel):
    """One passage a reply was grounded in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    collection: str
    document_id: str
    title: str = ""
    chunk: int = Field(ge=0, description="chunk index within the document")
    score: float
    snippet: str = Field(description="the start of the passage")


class DocumentInfo(BaseModel):
    """A document of a collection, as stored (its text lives in its chunks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document_id: str
    title: str = ""
    format: Literal["text", "markdown", "pdf"] = "text"
    chars: int = Field(ge=0)
    chunks: int = Field(ge=0)
    created_ts: int = Field(ge=0, description="server clock, ms since epoch")


class CollectionInfo(BaseModel):
    """A document collection: what ``/v1/collections`` shows (never its token)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    collection_id: str
    name: str = ""
    created_ts: int = Field(ge=0)
    version: int = Field(ge=0, description="bumped by every change of its documents")
    documents: int = Field(ge=0)
    chunks: int = Field(ge=0)
