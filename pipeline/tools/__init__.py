"""Tools the server runs itself, and the tools a session's responses offer.

The seam is :class:`ServerTool` (:mod:`~pipeline.tools.base`); :class:`Toolbox` holds a
replica's allowed tools and the :class:`ToolRunner` that runs every call inside its
bounds; :class:`SessionTools` is what one response hands the turn orchestrator.
Built in: ``search_documents`` (:mod:`~pipeline.tools.search`).
"""

from pipeline.tools.base import CallContext, ServerTool
from pipeline.tools.runner import ToolRunner
from pipeline.tools.search import SEARCH_DOCUMENTS, SearchDocuments
from pipeline.tools.toolbox import CallScope, SessionTools, Toolbox

__all__ = ["SEARCH_DOCUMENTS", "CallContext", "CallScope", "SearchDocuments", "ServerTool",
           "SessionTools", "ToolRunner", "Toolbox"]
