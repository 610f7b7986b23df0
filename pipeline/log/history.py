"""Which past turns the LLM sees: bounded in tokens and turns, trimmed in blocks.

A window that slides by one turn per turn changes the first message after the system
prompt on every turn, so every prompt misses the LLM's prompt (prefix) cache and the
whole history is processed again: the first token comes later the longer the session.
This window instead grows until it is over its budget (:class:`schemas.HistorySettings`:
estimated tokens or turns), then drops its oldest turns *in one block*, down to half the
budget. Between two trims each prompt is the previous one plus the last exchange, so the
prefix (and the cache) holds for the many turns it takes to fill the other half.

The window's start depends only on the sequence of turn costs, and the rule restarted at
the current start gives the same answer as the rule run from the first turn (the sums
from the start only grow until the next trim). So a holder that forgets the turns before
the window (:meth:`pipeline.log.SessionState.forget_turns`) and a fresh fold of the
whole log agree on the window.

Tokens are estimated from characters (the LLM may be remote; asking it would cost a call
per turn): ``chars_per_token`` low overestimates, which is the safe side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from schemas import ChatMessage, HistorySettings

#: tokens a chat message costs beyond its text (role markers, separators)
MESSAGE_OVERHEAD_TOKENS = 4


def message_tokens(text: str, settings: HistorySettings) -> int:
    """Estimated tokens of one chat message in a prompt (what a stateless chat completion
    reports as its prompt usage, message by message)."""
    return math.ceil(len(text) / settings.chars_per_token) + MESSAGE_OVERHEAD_TOKENS


def turn_cost(user_text: str, assistant_text: str, settings: HistorySettings,
              exchange: Sequence[ChatMessage] = ()) -> int:
    """Estimated tokens of one turn in the prompt: its user message, its tool calls and
    their outputs (``exchange``), and its reply."""
    messages = 1 + bool(assistant_text) + len(exchange)
    chars = len(user_text) + len(assistant_text) + sum(
        len(m.content) + sum(len(c.name) + len(c.arguments) for c in m.tool_calls)
        for m in exchange)
    return math.ceil(chars / settings.chars_per_token) + messages * MESSAGE_OVERHEAD_TOKENS


def window_start(costs: Sequence[int], settings: HistorySettings) -> int:
    """Index of the oldest turn shown, for turns of these costs (oldest first).

    Turns are added one by one; when the shown ones are over ``max_tokens`` or
    ``max_turns``, the oldest are dropped until they are within half of both (half of
    ``max_turns`` rounded up, so ``max_turns=1`` shows the last turn).
    """
    token_floor = settings.max_tokens // 2
    turn_floor = math.ceil(settings.max_turns / 2)
    start = tokens = 0
    for end, cost in enumerate(costs, start=1):
        tokens += cost
        if tokens <= settings.max_tokens and end - start <= settings.max_turns:
            continue
        while start < end and (tokens > token_floor or end - start > turn_floor):
            tokens -= costs[start]
            start += 1
    return start
