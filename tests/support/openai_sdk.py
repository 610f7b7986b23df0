"""The official ``openai`` SDK pointed at the API harness, as a client would use it."""

from __future__ import annotations

import openai

from tests.support.api_harness import Harness


def sdk(harness: Harness, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=harness.url + "/v1", api_key=key, max_retries=0)
