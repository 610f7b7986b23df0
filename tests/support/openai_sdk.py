"""The official ``openai`` SDK pointed at the API harness, as a client would use it."""

from __future__ import annotations

import typing

import openai

from tests.support.api_harness import Harness


def realtime_server_events() -> dict[str, type]:
    """The SDK's Realtime server event classes by ``type`` (the SDK itself parses
    leniently; validating a frame with one checks each field's name and type)."""
    from openai.types.realtime.realtime_server_event import RealtimeServerEvent

    [union, *_] = typing.get_args(RealtimeServerEvent)
    return {cls.model_fields["type"].annotation.__args__[0]: cls
            for cls in typing.get_args(union)}


def sdk(harness: Harness, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=harness.url + "/v1", api_key=key, max_retries=0)
