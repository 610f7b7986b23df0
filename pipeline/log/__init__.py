"""The session log: Redis Streams, their consumer groups, and the state folded from them.

Every fact about a session is an event appended here (:class:`EventLog`) before anyone
sees it; live readers of a process share one XREAD (:class:`LogFanout`); background
consumers read the feeds with consumer groups (:class:`GroupReader`, :class:`FeedReader`,
:func:`run_worker`);
a session's state is a fold over its events (:func:`fold`).
"""

from pipeline.log._records import AppendResult, LogPage
from pipeline.log.audit import audit_entries, record_read
from pipeline.log.call_leases import CallLeases
from pipeline.log.consumer import Delivery, GroupReader, run_worker
from pipeline.log.erasure import erase_from_log, erased_receipt
from pipeline.log.eventlog import DEFAULT_FEED_TYPES, EventLog
from pipeline.log.fanout import LogFanout
from pipeline.log.feeds import FeedReader, feed_groups
from pipeline.log.history import message_tokens
from pipeline.log.redis_client import create_redis, is_cluster
from pipeline.log.session_scan import LoggedSession, created_tags, logged_sessions
from pipeline.log.state import SessionState, ToolCallRecord, TurnState, fold
from pipeline.log.streamid import StreamId

__all__ = [
    "DEFAULT_FEED_TYPES",
    "AppendResult",
    "CallLeases",
    "Delivery",
    "EventLog",
    "FeedReader",
    "GroupReader",
    "LogFanout",
    "LogPage",
    "LoggedSession",
    "SessionState",
    "StreamId",
    "ToolCallRecord",
    "TurnState",
    "audit_entries",
    "create_redis",
    "created_tags",
    "erase_from_log",
    "erased_receipt",
    "feed_groups",
    "fold",
    "is_cluster",
    "logged_sessions",
    "message_tokens",
    "record_read",
    "run_worker",
]
