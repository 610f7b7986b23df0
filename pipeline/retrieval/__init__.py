"""Document collections and the search that grounds a turn in them (issue 16).

Collections live in Redis with their BM25 index (:class:`CollectionStore`: segments that
merge, :class:`Segment`, so an added document costs only itself), so any replica serves
them. Documents are read (PDF text, chunks, tokens) in a small bounded pool of reader
processes (:class:`DocumentReaders`), never on an event loop. The seams are
:class:`Retriever` (BM25: :class:`BM25Retriever`; BM25 re-ranked:
:class:`TwoStageRetriever`) and :class:`Reranker` (all-MiniLM-L6-v2: :class:`MiniLMReranker`,
which needs torch and runs in its own deployment). A live
session asks a :class:`Grounder` before it prompts the LLM; a failed or slow search gives
an empty context and a warning, never a failed turn. Sessions use this package; it uses
neither sessions nor turns.
"""

from pipeline.retrieval.base import Passage, Reranker, Retriever
from pipeline.retrieval.bm25 import BM25Index, Segment, tokenize
from pipeline.retrieval.chunking import chunk_text
from pipeline.retrieval.documents import (
    DOCUMENT_FORMATS,
    ReadDocument,
    ReadLimits,
    document_text,
    read_document,
)
from pipeline.retrieval.grounding import (
    CONTEXT_HEADER,
    RERANKER_HINT,
    Grounder,
    Grounding,
    context_message,
)
from pipeline.retrieval.indexes import FOLD_EVERY, IndexStore, LoadedIndex
from pipeline.retrieval.minilm import MODEL_PACKAGE, MiniLMReranker
from pipeline.retrieval.readers import DocumentReaders
from pipeline.retrieval.retrievers import BM25Retriever, TwoStageRetriever
from pipeline.retrieval.store import CollectionStore

__all__ = [
    "CONTEXT_HEADER",
    "DOCUMENT_FORMATS",
    "FOLD_EVERY",
    "MODEL_PACKAGE",
    "RERANKER_HINT",
    "BM25Index",
    "BM25Retriever",
    "CollectionStore",
    "DocumentReaders",
    "Grounder",
    "Grounding",
    "IndexStore",
    "LoadedIndex",
    "MiniLMReranker",
    "Passage",
    "ReadDocument",
    "ReadLimits",
    "Reranker",
    "Retriever",
    "Segment",
    "TwoStageRetriever",
    "chunk_text",
    "context_message",
    "document_text",
    "read_document",
    "tokenize",
]
