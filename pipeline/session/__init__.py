"""One live session: client input in, events out, each appended to the log first.

:class:`LiveSession` is what a socket, the SSE chat and the demo drive: speech input
with endpointing, typed turns, one response at a time, barge-in and cancel. Everything it
knows it folds from the log, so any process can pick a session up.
"""

from pipeline.session.live import LiveSession, SessionEngines, merge_settings

__all__ = ["LiveSession", "SessionEngines", "merge_settings"]
