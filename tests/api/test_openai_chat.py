"""The OpenAI-compatible surfaces, driven by the official ``openai`` SDK through the API
harness: chat completions (whole and streamed, usage, sampling passed to the engine,
limits), the model list, and the first frame of the native socket."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator

import openai
import pytest
from websockets.asyncio.client import connect

from schemas import (
    AdmissionSettings,
    ApiSettings,
    EventLogSettings,
    HistorySettings,
    parse_event,
)
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import RecordingLLM, ScriptedLLM, ScriptedTTS
from tests.support.openai_sdk import sdk

pytestmark = pytest.mark.redis

TOKENS = ["Hello", " there", ",", " friend", "."]
REPLY = "".join(TOKENS)


@pytest.fixture
async def llm() -> RecordingLLM:
    return RecordingLLM(TOKENS)


@pytest.fixture
async def harness(redis_url: str, key_prefix: str, llm: RecordingLLM) -> AsyncIterator[Harness]:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=ScriptedTTS(chunks_per_piece=1)) as harness:
        yield harness


def estimate(*texts: str) -> int:
    """Prompt tokens as the history budget estimates them."""
    per_token = HistorySettings().chars_per_token
    return sum(math.ceil(len(t) / per_token) + 4 for t in texts)


MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Again, please."}]


async def test_a_completion_has_openais_shape_usage_and_the_requested_sampling(
    harness: Harness, llm: RecordingLLM
) -> None:
    async with sdk(harness) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES,  # type: ignore[arg-type]
            max_completion_tokens=50, temperature=0.2, top_p=0.5, stop=["\n\n"], seed=7)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "scripted-llm"  # what answers, not what was asked for
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == REPLY
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(TOKENS)
    assert completion.usage.prompt_tokens == estimate(*(m["content"] for m in MESSAGES))
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                             + completion.usage.completion_tokens)
    [request] = llm.requests
    assert [(m.role, m.content) for m in request.messages] == [
        (m["role"], m["content"]) for m in MESSAGES]
    sampling = request.sampling
    assert (sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.stop,
            sampling.seed) == (50, 0.2, 0.5, ("\n\n",), 7)


async def test_max_tokens_reached_is_finish_reason_length(
    harness: Harness, llm: RecordingLLM
) -> None:
    async with sdk(harness) as client:
        completion = await client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Hi"}], max_tokens=len(TOKENS))
    assert completion.choices[0].finish_reason == "length"
    assert llm.requests[0].sampling.max_tokens == len(TOKENS)


async def test_a_streamed_completion_ends_with_usage_when_asked(harness: Harness) -> None:
    async with sdk(harness) as client:
        stream = await client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Say hello."}], stream=True,
            stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and not any(finishes[:-1])
    *_, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == len(TOKENS)
    assert last.usage.prompt_tokens == estimate("Say hello.")


async def test_a_streamed_completion_has_no_usage_unless_asked(harness: Harness) -> None:
    async with sdk(harness) as client:
        stream = await client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Hi"}], stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(c.usage is None and c.choices for c in chunks)
    assert harness.services.admission.in_use("turns") == 0


async def test_an_engine_failure_mid_stream_reaches_the_sdk(
    redis_url: str, key_prefix: str
) -> None:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(TOKENS, fail_at=2), tts=None) as harness:
        async with sdk(harness) as client:
            stream = await client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "Hi"}], stream=True)
            with pytest.raises(openai.APIError, match="language model stage failed"):
                _ = [chunk async for chunk in stream]
            with pytest.raises(openai.APIStatusError) as caught:  # not streamed: a 502
                await client.chat.completions.create(
                    model="any", messages=[{"role": "user", "content": "Hi"}])
            assert caught.value.status_code == 502
        assert harness.services.admission.in_use("turns") == 0


async def test_messages_over_the_limits_are_413(harness: Harness) -> None:
    limits = harness.services.settings.api
    async with sdk(harness) as client:
        with pytest.raises(openai.APIStatusError) as long:
            await client.chat.completions.create(model="any", messages=[
                {"role": "user", "content": "x" * (limits.max_text_chars + 1)}])
        with pytest.raises(openai.APIStatusError) as many:
            await client.chat.completions.create(model="any", messages=[
                {"role": "user", "content": "x"}] * (limits.max_chat_messages + 1))
    assert (long.value.status_code, many.value.status_code) == (413, 413)
    assert long.value.body["code"] == "text_too_long"  # type: ignore[index]


async def test_models_lists_what_each_stage_has_loaded(harness: Harness) -> None:
    async with sdk(harness) as client:
        page = await client.models.list()
        ids = [model.id for model in page.data]
        llm = await client.models.retrieve("scripted-llm")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-4o")
    assert "scripted-llm" in ids and "scripted-tts" in ids
    assert {m.object for m in page.data} == {"model"}
    assert llm.id == "scripted-llm" and llm.owned_by == "voxline"
    assert llm.model_extra is not None and llm.model_extra["stage"] == "llm"


class CountingTTS(ScriptedTTS):
    """A scripted synthesizer that counts how often it is asked to describe itself."""

    described = 0

    async def describe(self) -> dict[str, object]:
        self.described += 1
        await asyncio.sleep(0.05)  # a round trip: requests meanwhile find it in flight
        return await super().describe()


async def test_models_list_the_voice_map_and_reuse_a_stages_description(
    redis_url: str, key_prefix: str, llm: RecordingLLM
) -> None:
    tts = CountingTTS(chunks_per_piece=1)
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=tts, api=ApiSettings(voice_map={"nova": "scripted-voice"})
                         ) as harness, \
            sdk(harness) as client:
        first, *_ = await asyncio.gather(*(client.models.list() for _ in range(10)))
        await client.models.list()
        await client.chat.completions.create(model="any", messages=[
            {"role": "user", "content": "Hi"}])
    entry = next(m for m in first.data if m.model_extra and m.model_extra["stage"] == "tts")
    voice_map = entry.model_extra["voice_map"]  # type: ignore[index]
    assert voice_map["nova"] == "scripted-voice"
    assert voice_map["alloy"] is None  # left out: the default voice, which it does not name
    assert len(voice_map) == 13
    assert tts.described == 1  # one round trip for every request in the window, at once too


async def test_the_socket_sends_session_created_first(harness: Harness) -> None:
    session = await harness.client.create_session(language="de")
    async with connect(f"{session.ws_url}?token={session.token}") as ws:
        first = parse_event(json.loads(await ws.recv()))
    assert first.type == "session.created"
    assert first.id is None  # a frame for this socket, not a logged event
    assert first.data.settings.language == "de"  # type: ignore[union-attr]
    events = await harness.services.log.read_all(session.session_id)
    assert [e.type for e in events].count("session.created") == 1


async def test_a_client_leaving_mid_stream_stops_the_engine_and_frees_its_place(
    redis_url: str, key_prefix: str
) -> None:
    llm = ScriptedLLM(TOKENS, gate_at=2)  # holds the reply after two tokens
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=None) as harness:
        async with sdk(harness) as client:
            stream = await client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "Hi"}], stream=True)
            got = [await anext(aiter(stream)) for _ in range(3)]  # role, then two tokens
            assert "".join(c.choices[0].delta.content or "" for c in got) == "".join(TOKENS[:2])
            assert harness.services.admission.in_use("turns") == 1
            await stream.close()
        for _ in range(200):
            if not llm.running and harness.services.admission.in_use("turns") == 0:
                break
            await asyncio.sleep(0.01)
        assert [r.outcome for r in llm.records] in (["cancelled"], ["closed"])
        assert harness.services.admission.in_use("turns") == 0


async def test_completions_past_capacity_are_503(redis_url: str, key_prefix: str) -> None:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(TOKENS), tts=None,
                         admission=AdmissionSettings(max_turns=1)) as harness:
        with harness.services.admission.admit("turns"):  # the one place is taken
            async with sdk(harness) as client:
                with pytest.raises(openai.APIStatusError) as caught:
                    await client.chat.completions.create(
                        model="any", messages=[{"role": "user", "content": "Hi"}])
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "overloaded"  # type: ignore[index]


@pytest.mark.parametrize("sampling", [{"top_p": "0.5"}, {"temperature": True},
                                      {"max_tokens": "9"}, {"seed": 1.5}])
async def test_sampling_numbers_must_be_numbers(harness: Harness, sampling: dict) -> None:
    """The fuzzer's finding: a number sent as a string or a boolean is refused as the spec
    says, not read as one (OpenAI's SDK sends numbers; 1 for a float is fine)."""
    body = {"messages": [{"role": "user", "content": "Hi"}], **sampling}
    response = await harness.client.http.post("/v1/chat/completions", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_message"
    fine = await harness.client.http.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "Hi"}], "top_p": 1, "temperature": 0})
    assert fine.status_code == 200
