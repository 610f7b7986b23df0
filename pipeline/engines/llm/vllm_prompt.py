"""The prompt vLLM gets: the tokenizer's chat template, else the dialogue transcript.

Instruction-tuned checkpoints ship a chat template; rendering it straight to token ids
keeps the template's own BOS from being doubled by a second tokenization. Base models
have none and get :mod:`pipeline.engines.llm.prompting`'s dialogue, whose stop sequences end
the turn. Kept apart from the engine because it is a pure function of the tokenizer and
the messages: it is tested without a GPU or an engine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.engines.llm.prompting import DialogueFormat, build_dialogue_prompt
from pipeline.engines.llm.tool_calls import calls_on_tool_lines
from schemas import ChatMessage, EngineError, ErrorCode, SamplingSettings

__all__ = ["RenderedPrompt", "render_prompt"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedPrompt:
    """What goes to vLLM: text or token ids, and the stop sequences that end the reply."""

    text: str | None
    token_ids: tuple[int, ...] | None
    stop: tuple[str, ...]
    format: Literal["chat", "dialogue"]

    def as_vllm_prompt(self) -> Any:
        if self.token_ids is not None:
            return {"prompt_token_ids": list(self.token_ids)}
        return {"prompt": self.text}


def render_prompt(
    tokenizer: Any,
    messages: Sequence[ChatMessage],
    sampling: SamplingSettings,
    *,
    prompt_format: Literal["auto", "chat", "dialogue"] = "auto",
    dialogue: DialogueFormat | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> RenderedPrompt:
    """The prompt for ``messages``: the tokenizer's chat template, else the dialogue.

    A pure function of the tokenizer and the messages, so it is tested without an engine.
    A template that rejects the messages (some refuse a system role, or two user turns in
    a row) falls back to the dialogue format in ``auto`` mode and is an error in ``chat``.
    With ``tools`` (OpenAI's shape) the template renders them and the dialogue's calls in
    the model's own tool format: it must have one (an error otherwise, never a fallback).
    """
    template = getattr(tokenizer, "chat_template", None)
    if prompt_format == "chat" or (prompt_format == "auto" and template):
        if not template:
            raise EngineError(
                "prompt_format=chat, but the tokenizer has no chat template",
                code=ErrorCode.LLM_FAILED,
                stage="llm",
                recoverable=False,
            )
        conversation = _conversation(messages, native=tools is not None)
        extra = {} if tools is None else {"tools": tools}
        try:
            rendered = tokenizer.apply_chat_template(
                conversation, tokenize=True, add_generation_prompt=True, **extra
            )
        except Exception as exc:  # jinja2's TemplateError, or a template's raise_exception
            if prompt_format == "chat" or tools is not None:
                raise EngineError(
                    f"the chat template rejected the conversation: {exc}",
                    code=ErrorCode.LLM_FAILED,
                    stage="llm",
                ) from exc
            logger.warning("chat template failed (%s); using the dialogue prompt", exc)
        else:
            if isinstance(rendered, Mapping):  # transformers 5 returns a BatchEncoding
                rendered = rendered["input_ids"]
            return RenderedPrompt(
                text=None,
                token_ids=tuple(int(t) for t in rendered),
                stop=tuple(s for s in sampling.stop if s),
                format="chat",
            )
    prompt = build_dialogue_prompt(messages, extra_stop=sampling.stop, dialogue=dialogue)
    return RenderedPrompt(text=prompt.text, token_ids=None, stop=prompt.stop, format="dialogue")


def _conversation(messages: Sequence[ChatMessage], *, native: bool) -> list[dict[str, Any]]:
    """The messages as a chat template reads them: ``native``, with the calls and the
    tool role in OpenAI's shape (a template with a tool format); else the calls on tool
    lines and tool outputs as the user's lines (few templates have a tool role)."""
    if native:
        return [{"role": m.role, "content": m.content,
                 **({"tool_calls": [{"id": c.id, "type": "function", "function": {
                     "name": c.name, "arguments": c.arguments}} for c in m.tool_calls]}
                    if m.tool_calls else {}),
                 **({"tool_call_id": m.tool_call_id} if m.tool_call_id else {})}
                for m in messages]
    return [{"role": "user" if m.role == "tool" else m.role,
             "content": f"Tool: {m.content}" if m.role == "tool" else m.content}
            for m in calls_on_tool_lines(messages)]
