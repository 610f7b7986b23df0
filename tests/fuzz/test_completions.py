"""Hypothesis over ``POST /v1/chat/completions``, through the harness's real server.

Schemathesis (``test_openapi.py``) sends what the spec describes; this sends what OpenAI
clients send and what they should not: content as a string or as parts (text, images,
audio, files, unknown types, parts without text), every role, empty and huge contents,
many messages whose sum is past any context window, streamed or not. Every answer is a
200 with a reply and a usage that adds up, or a 4xx with one of the codes a client can act
on, never a 5xx; no request leaves a turn's place taken. Examples are few and
derandomized, so a run is short and reproducible.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import REPLY, LiveApi

pytestmark = pytest.mark.redis

#: what a refused completion may say (each a client's mistake, with a code)
CLIENT_CODES = {"invalid_message", "unsupported_content", "text_too_long", "message_too_large",
                "context_length_exceeded"}

#: text of any size without generating it character by character
sized_text = st.one_of(
    st.text(max_size=40),
    st.builds(lambda c, n: c * n, st.sampled_from("xé 🙂\n"), st.integers(0, 6000)),
)
text_part = st.fixed_dictionaries({"type": st.just("text"), "text": sized_text})
other_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("image_url"),
                           "image_url": st.fixed_dictionaries({"url": st.just("data:,")})}),
    st.fixed_dictionaries({"type": st.just("input_audio"),
                           "input_audio": st.fixed_dictionaries({"data": st.just("AAAA"),
                                                                 "format": st.just("wav")})}),
    st.fixed_dictionaries({"type": st.text(max_size=12)}),  # unknown, or text without text
)
content = st.one_of(sized_text, st.lists(text_part, max_size=4),
                    st.lists(text_part | other_part, min_size=1, max_size=4))
message = st.fixed_dictionaries({
    "role": st.sampled_from(["system", "user", "assistant", "developer"]),
    "content": content,
})
messages = st.one_of(
    st.lists(message, min_size=1, max_size=6),
    # past the context window in sum, each message within its own limit
    st.builds(lambda n, size: [{"role": "user", "content": "x" * size}] * n,
              st.integers(1, 300), st.sampled_from([1000, 4000])),
)


@given(messages=messages, stream=st.booleans())
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.large_base_example, HealthCheck.data_too_large])
def test_any_messages_are_answered_or_refused_with_a_code(
    api: LiveApi, messages: list[dict[str, Any]], stream: bool
) -> None:
    body = {"model": "any", "messages": messages, "stream": stream,
            "stream_options": {"include_usage": True} if stream else None}
    response = httpx.post(f"{api.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code < 500, response.text[:300]
    code = response.json()["error"]["code"] if response.status_code >= 400 else "ok"
    event(f"{response.status_code} {code}")  # what the run covered (--hypothesis-show-statistics)
    if response.status_code == 200:
        if stream:
            lines = [line[6:] for line in response.text.splitlines()
                     if line.startswith("data: ")]
            assert lines[-1] == "[DONE]"
            chunks = [json.loads(line) for line in lines[:-1]]
            assert all("error" not in chunk for chunk in chunks), chunks
            text = "".join(c["choices"][0]["delta"].get("content", "")
                           for c in chunks if c["choices"])
            usage = chunks[-1]["usage"]
        else:
            completion = response.json()
            text = completion["choices"][0]["message"]["content"]
            usage = completion["usage"]
        assert text == "".join(REPLY)
        assert usage["completion_tokens"] == len(REPLY)  # the scripted engine's count
        assert usage["prompt_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    elif response.status_code != 422:  # pydantic's shape errors are 422 invalid_message
        assert response.json()["error"]["code"] in CLIENT_CODES, response.text[:300]
    assert api.services.admission.in_use("turns") == 0
