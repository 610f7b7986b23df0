"""What the tests of tools through the OpenAI SDKs share: the API on the real CPU default
model (llama.cpp, the packaged Gemma 3 270M; a scripted voice), and the Agents SDK's
``get_weather`` function tool, which records the cities it was asked about."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from typing import Any

from agents import FunctionTool, function_tool

from pipeline.engines.llm.llama_cpp import LlamaCppLanguageModel
from schemas import EventLogSettings
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedTTS

#: what the tool answers, whatever the city
WEATHER = {"city": "Paris", "sky": "sunny", "temperature_celsius": 21}


def model_api(redis_url: str, key_prefix: str,
              **settings: Any) -> AbstractAsyncContextManager[Harness]:
    """The API on the CPU default model, one sequence on one thread (greedy runs repeat)."""
    llm = LlamaCppLanguageModel(n_ctx=2048, n_threads=1, parallel_sequences=1)
    return serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                     tts=ScriptedTTS(chunks_per_piece=1), **settings)


def weather_tool(asked: list[str]) -> FunctionTool:
    """The Agents SDK's ``get_weather``: each city asked for is appended to ``asked``."""

    @function_tool
    def get_weather(city: str) -> str:
        """The weather now in a city.

        Args:
            city: The city's name.
        """
        asked.append(city)
        return json.dumps({**WEATHER, "city": city})

    return get_weather
