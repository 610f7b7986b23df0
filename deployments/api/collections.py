"""``/v1/collections``: document collections that turns are grounded in.

Creating a collection returns its token (like a session's: an HMAC of its id under the
server's key, so any replica checks it without a lookup); every call on the collection
shows it (``Authorization: Bearer``, ``X-Voxline-Token`` or ``?token=``). A collection is
given to a session with ``PUT /v1/collections/{id}/sessions/{session_id}`` (collection
token): that session's turns may then search it, and that session's token may read it
(``GET`` with ``?session_id=``). Another session's token is 403 ``forbidden``.

Documents are text or markdown (JSON ``{"text", "title", "format"}``) or a file upload
(multipart ``file``: UTF-8 text, markdown or PDF), chunked with overlap and indexed at once.
Reading one (PDF text, chunks, tokens) runs in a bounded pool of reader processes, never
on the event loop (:class:`pipeline.retrieval.DocumentReaders`). Limits
(``VOXLINE_RETRIEVAL__*``): a document's text ``max_document_chars``, a PDF's pages
``max_document_pages``, its upload ``max_document_bytes`` and the time to read it
``document_timeout_s`` (413 ``document_too_large``, checked while reading); a document the
parser fails on is 422 ``document_unreadable``; all readers busy and ``document_queue``
waiting: 503 ``overloaded`` with ``Retry-After``. Chunks per collection
``max_chunks_per_collection`` (413 ``collection_full``). Collections on the server
``max_collections`` (409 ``too_many_collections``) and per client
``max_collections_per_client`` (409 ``collection_quota_exceeded``): a client is its API key
when keys are on (creating then needs one, like every call), else its address; deleting a
collection frees its place.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from deployments.api._auth import client_of, token_of
from deployments.api._deps import ServicesDep, check_owner, collection_token, store_of
from deployments.api._errors import error_responses
from deployments.api._services import Services
from pipeline.log import fold
from pipeline.session import authorize
from schemas import (
    AuthError,
    CollectionInfo,
    DocumentInfo,
    ErrorCode,
    InputTooLargeError,
    ProtocolError,
    SessionError,
)

router = APIRouter(prefix="/v1/collections", tags=["collections"])


class CreateCollectionRequest(BaseModel):
    name: str = Field(default="", max_length=200)


class CollectionCreated(BaseModel):
    collection: CollectionInfo
    token: str = Field(description="show it on every call on this collection")


class AddDocumentRequest(BaseModel):
    text: str = Field(min_length=1, description="the document's text (or markdown)")
    title: str = Field(default="", max_length=300)
    format: Literal["text", "markdown"] = "text"


class CollectionDetail(BaseModel):
    collection: CollectionInfo
    documents: list[DocumentInfo]
    sessions: list[str] = Field(default_factory=list,
                                description="sessions it was given to (collection token only)")


class DocumentDetail(BaseModel):
    document: DocumentInfo
    chunks: list[str]


async def check_reader(
    services: Services, collection: str, connection: HTTPConnection, session_id: str | None
) -> bool:
    """The collection's token, or (with ``session_id``) the token of a session it was given
    to. Returns True for the owner."""
    if session_id is None:
        await check_owner(services, collection, connection)
        return True
    store = store_of(services)
    await store.get(collection)
    await authorize(services.log, services.tokens, session_id, token_of(connection))
    if not await store.granted(collection, session_id):
        raise AuthError.forbidden(f"collection {collection!r} was not given to this session")
    return False


_READ = error_responses(401, 403, 404, 409, 422, 503)
_WRITE = error_responses(400, 401, 403, 404, 413, 415, 422, 503)


@router.post("", status_code=201, response_model=CollectionCreated,
             responses=error_responses(400, 401, 409, 413, 422, 503))
async def create(
    request: Request, services: ServicesDep, body: CreateCollectionRequest | None = None
) -> CollectionCreated:
    """A new empty collection and its token; past the server's limit: 409
    ``too_many_collections``, past this client's: 409 ``collection_quota_exceeded``."""
    info = await store_of(services).create((body or CreateCollectionRequest()).name,
                                           client=client_of(request))
    return CollectionCreated(collection=info,
                             token=collection_token(services, info.collection_id))


@router.get("/{collection_id}", response_model=CollectionDetail, responses=_READ)
async def get(
    collection_id: str, request: Request, services: ServicesDep,
    session_id: str | None = Query(default=None, max_length=128),
) -> CollectionDetail:
    """The collection and its documents (collection token; or a session's token with
    ``session_id`` when it was given to that session)."""
    owner = await check_reader(services, collection_id, request, session_id)
    store = store_of(services)
    sessions: list[str] = []
    if owner:
        raw = await store.redis.smembers(store.key(collection_id, "grants"))
        sessions = sorted(s.decode() if isinstance(s, bytes) else s for s in raw)
    return CollectionDetail(collection=await store.get(collection_id),
                            documents=await store.documents(collection_id), sessions=sessions)


@router.delete("/{collection_id}", status_code=204,
               responses=error_responses(401, 403, 404, 422, 503))
async def delete(collection_id: str, request: Request, services: ServicesDep) -> None:
    """Delete the collection with its documents and index (collection token)."""
    await check_owner(services, collection_id, request)
    await store_of(services).delete(collection_id)


@router.get("/{collection_id}/documents", response_model=list[DocumentInfo], responses=_READ)
async def list_documents(
    collection_id: str, request: Request, services: ServicesDep,
    session_id: str | None = Query(default=None, max_length=128),
) -> list[DocumentInfo]:
    await check_reader(services, collection_id, request, session_id)
    return await store_of(services).documents(collection_id)


@router.post("/{collection_id}/documents", status_code=201, response_model=DocumentInfo,
             responses=_WRITE)
async def add_document(
    collection_id: str, body: AddDocumentRequest, request: Request, services: ServicesDep
) -> DocumentInfo:
    """Add a text or markdown document: chunked with overlap, indexed at once."""
    await check_owner(services, collection_id, request)
    return await store_of(services).add_document(
        collection_id, body.text, title=body.title, fmt=body.format)


@router.post("/{collection_id}/files", status_code=201, response_model=DocumentInfo,
             responses=_WRITE)
async def add_file(
    collection_id: str, file: UploadFile, request: Request, services: ServicesDep,
    title: str = Query(default="", max_length=300),
    format: Literal["text", "markdown", "pdf"] | None = Query(default=None),
) -> DocumentInfo:
    """Upload a document file (multipart ``file``): UTF-8 text, markdown or PDF (its
    format from ``format``, else from the file name or content type)."""
    await check_owner(services, collection_id, request)
    limit = services.settings.retrieval.max_document_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise InputTooLargeError(f"a document file is limited to {limit} bytes",
                                 code=ErrorCode.DOCUMENT_TOO_LARGE, limit=limit)
    fmt = format or _format_of(file)
    return await store_of(services).add_document(
        collection_id, data, title=title or (file.filename or ""), fmt=fmt)


@router.get("/{collection_id}/documents/{document_id}", response_model=DocumentDetail,
            responses=_READ)
async def get_document(
    collection_id: str, document_id: str, request: Request, services: ServicesDep,
    session_id: str | None = Query(default=None, max_length=128),
) -> DocumentDetail:
    await check_reader(services, collection_id, request, session_id)
    info, chunks = await store_of(services).document(collection_id, document_id)
    return DocumentDetail(document=info, chunks=chunks)


@router.delete("/{collection_id}/documents/{document_id}", status_code=204,
               responses=error_responses(401, 403, 404, 422, 503))
async def delete_document(
    collection_id: str, document_id: str, request: Request, services: ServicesDep
) -> None:
    await check_owner(services, collection_id, request)
    await store_of(services).delete_document(collection_id, document_id)


@router.put("/{collection_id}/sessions/{session_id}", status_code=204,
            responses=error_responses(401, 403, 404, 422, 503))
async def give(collection_id: str, session_id: str, request: Request,
               services: ServicesDep) -> None:
    """Give the collection to a session: its turns may search it, its token read it."""
    await check_owner(services, collection_id, request)
    # the session must exist; its token is not needed: giving is the owner's decision
    events, horizon = await services.log.read_remaining(session_id)
    if not fold(session_id, events, trimmed=horizon is not None).created:
        raise SessionError(f"no session {session_id!r}", code=ErrorCode.SESSION_NOT_FOUND)
    await store_of(services).grant(collection_id, session_id)


@router.delete("/{collection_id}/sessions/{session_id}", status_code=204,
               responses=error_responses(401, 403, 404, 422, 503))
async def take_back(collection_id: str, session_id: str, request: Request,
                    services: ServicesDep) -> None:
    await check_owner(services, collection_id, request)
    await store_of(services).revoke(collection_id, session_id)


def _format_of(file: UploadFile) -> Literal["text", "markdown", "pdf"]:
    name = (file.filename or "").lower()
    kind = (file.content_type or "").lower()
    if name.endswith(".pdf") or kind == "application/pdf":
        return "pdf"
    if name.endswith((".md", ".markdown")) or kind == "text/markdown":
        return "markdown"
    if name.endswith(".txt") or kind.startswith("text/") or not kind or not name:
        return "text"
    raise ProtocolError(f"cannot tell the format of {file.filename!r} ({kind}); "
                        "say format=text|markdown|pdf", code=ErrorCode.UNSUPPORTED_FORMAT,
                        http_status=415)
