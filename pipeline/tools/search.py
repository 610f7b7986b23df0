"""``search_documents``: retrieval as a tool the model chooses to call.

A session grounded in a collection (``search``) searches it before every turn. With this
tool declared instead (``tools: [{"type": "server", "name": "search_documents"}]``), the
model decides when a question needs the documents and what to search for; the passages
come back as the call's output, numbered, with their titles, and the reply cites them as
it would the context of a grounded turn. It searches the collection the session's
``search`` setting names (with its strategy and ``top_k``), under the same access rule:
the collection must have been given to the session.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.retrieval import Grounder
from pipeline.tools.base import CallContext, ServerTool
from schemas import ErrorCode, ProtocolError, ToolFunction

__all__ = ["SEARCH_DOCUMENTS", "SearchDocuments"]

SEARCH_DOCUMENTS = "search_documents"


class SearchDocuments(ServerTool):
    """Searches the session's collection (see the module docstring)."""

    idempotent = True  # a search changes nothing

    function = ToolFunction(
        name=SEARCH_DOCUMENTS,
        description="Search the user's documents for passages that answer a question. "
                    "Use it when the answer may be in the documents.",
        parameters={
            "type": "object",
            "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 500,
                                     "description": "what to look for, in a few words"}},
            "required": ["query"],
            "additionalProperties": False,
        },
    )

    def __init__(self, grounder: Grounder) -> None:
        self.grounder = grounder

    async def call(self, arguments: dict[str, Any], context: CallContext) -> str:
        config = context.settings.search
        if config is None or config.collection is None:
            raise ProtocolError("this session has no collection to search (set "
                                "search.collection)", code=ErrorCode.COLLECTION_NOT_FOUND)
        grounding = await self.grounder.ground(context.session_id, config, arguments["query"])
        if grounding.warnings and not grounding.passages:
            warning = grounding.warnings[0]
            raise ProtocolError(warning.message, code=warning.code)
        return json.dumps({"results": [
            {"n": number, "title": passage.title, "document_id": passage.document_id,
             "text": passage.text}
            for number, passage in enumerate(grounding.passages, start=1)]},
            ensure_ascii=False)
