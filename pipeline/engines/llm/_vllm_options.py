"""The options of the ``vllm`` LLM engine (``VOXLINE_LLM__OPTIONS__*``), apart from the
engine so that settings can be read and checked without importing it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["VllmOptions"]


class VllmOptions(BaseModel):
    """Options of the ``vllm`` LLM engine (``VOXLINE_LLM__OPTIONS__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path | None = Field(
        default=None,
        description="a Hugging Face model folder on local disk (config.json, weights, tokenizer)",
    )
    tokenizer_path: Path | None = Field(default=None, description="unset: the model folder")
    dtype: str = Field(default="auto", description="auto, bfloat16, float16, float32")
    max_model_len: int = Field(default=4096, ge=128, description="context window, tokens")
    gpu_memory_utilization: float = Field(default=0.85, gt=0.0, le=1.0)
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_num_seqs: int | None = Field(default=None, ge=1, description="concurrent requests")
    enforce_eager: bool = Field(
        default=False, description="skip CUDA graphs / compilation: faster start, slower steps"
    )
    prompt_format: Literal["auto", "chat", "dialogue"] = Field(
        default="auto", description="auto: the chat template when the tokenizer has one"
    )
    user_label: str = Field(default="User", min_length=1)
    assistant_label: str = Field(default="Assistant", min_length=1)
    top_k: int = Field(default=0, ge=0, description="0: off")
    repetition_penalty: float = Field(default=1.0, ge=1.0, le=2.0)
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="further AsyncEngineArgs fields, passed through"
    )
    tool_call_parser: str | None = Field(
        default=None, description="vLLM's parser of the model's own tool format (hermes, "
        "llama3_json, mistral, pythonic ...; vLLM's --tool-call-parser)")
    enable_auto_tool_choice: bool = Field(
        default=False, description="tool_choice auto: the model's chat template renders the "
        "tools and tool_call_parser reads its calls (vLLM's --enable-auto-tool-choice); off: "
        "Voxline's own tool lines")

    @model_validator(mode="after")
    def _parser_for_auto(self) -> VllmOptions:
        if self.enable_auto_tool_choice and not self.tool_call_parser:
            raise ValueError("enable_auto_tool_choice needs a tool_call_parser")
        return self
