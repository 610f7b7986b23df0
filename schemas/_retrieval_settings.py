"""The settings of retrieval: document collections and the search of a turn (a section
of :class:`~schemas.Settings`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RetrievalSettings(BaseModel):
    """Document collections and the search of a turn: every limit is enforced
    where documents enter (``/v1/collections``), answered with its own error code."""

    model_config = ConfigDict(frozen=True)

    max_collections: int = Field(
        default=1000, ge=1, description="collections on the server (too_many_collections)"
    )
    max_collections_per_client: int = Field(
        default=20, ge=1,
        description="collections one client may hold: one API key, or one address with keys "
        "off (collection_quota_exceeded)",
    )
    max_document_chars: int = Field(
        default=1_000_000, ge=100, description="text of one document (document_too_large)"
    )
    max_document_bytes: int = Field(
        default=10 << 20, ge=1024, description="one uploaded file, before text extraction"
    )
    max_chunks_per_collection: int = Field(
        default=20_000, ge=1, description="chunks of one collection (collection_full)"
    )
    max_document_pages: int = Field(
        default=1000, ge=1, description="pages of one PDF, checked before any is read "
        "(document_too_large)"
    )
    document_timeout_s: float = Field(
        default=20.0, gt=0, description="CPU seconds reading one document (text, chunks, "
        "tokens) may take in a reader process (twice that in wall time); past it the process "
        "is stopped (document_too_large)"
    )
    document_readers: int = Field(
        default=2, ge=1, le=64, description="reader processes per Gateway replica"
    )
    document_queue: int = Field(
        default=8, ge=0, description="documents that may wait for a reader; more: 503 "
        "overloaded with Retry-After"
    )
    document_memory_mb: int = Field(
        default=1024, ge=0, description="memory a reader process may add while reading "
        "(document_too_large; 0: no cap)"
    )
    index_delta_chunks: int = Field(
        default=2000, ge=1, description="chunks new documents gather in a collection's delta "
        "index before it is merged into the main one"
    )
    chunk_chars: int = Field(default=500, ge=50, le=8000, description="a chunk's length")
    chunk_overlap: int = Field(
        default=80, ge=0, le=4000, description="characters a chunk repeats of the one before"
    )
    timeout_s: float = Field(
        default=2.0, gt=0, description="a turn's search; past it: no context, a warning"
    )
    context_tokens: int = Field(
        default=800, ge=0,
        description="prompt budget of the passages (estimated tokens; 4 chunks of 500 chars "
        "fit, and with the history's 1024 the CPU LLM's 2048-token window still has room)",
    )
    rerank_candidates: int = Field(
        default=20, ge=1, le=200, description="BM25 candidates two_stage re-orders"
    )
    index_cache: int = Field(
        default=64, ge=1, description="collections whose index a replica keeps in memory"
    )
    snippet_chars: int = Field(default=200, ge=20, description="a citation's snippet")
    reranker: Literal["none", "minilm"] = Field(
        default="none",
        description="the second stage of two_stage: minilm places the Reranker deployment "
        "(all-MiniLM-L6-v2; needs the 'reranker' extra); none: two_stage answers with BM25 "
        "and a warning",
    )
    reranker_device: str = Field(default="cpu", description="torch device of the re-ranker")
