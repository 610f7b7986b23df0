"""llama-cpp-python's OpenAI-compatible server, speaking the same dialogue prompt as Voxline.

Pipecat has no llama.cpp service: its docs point local models at an OpenAI-compatible
server, and ``OpenAILLMService`` talks to it. The packaged Gemma 3 270M is a *base* model:
through the GGUF's chat template it writes tags and lists, not answers, so the chat
template would compare two different prompts, not two frameworks. This launcher registers a
chat format that renders the messages as the plain dialogue Voxline's llama.cpp engine
writes for that model (system text as a preamble, worked examples, ``User:`` and
``Assistant:`` turns, the cue, the stop sequences), all passed in by the benchmark as JSON,
then runs llama-cpp-python's own server, unchanged but for :class:`DeveloperRole`::

    pipecat-venv/bin/python loadtests/peers/llama_server.py --dialogue JSON \\
        --model GGUF --host 127.0.0.1 --port P --n_threads 1 ...

Runs in the peer's venv (``scripts/setup-peers.sh``); imports nothing of Voxline's.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import llama_cpp.server.__main__ as server_cli
from llama_cpp import llama_chat_format

FORMAT = "voxline-dialogue"


def _text(content: Any) -> str:
    """A message's text: a string, or OpenAI content parts."""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict)).strip()
    return ""


def register(dialogue: dict[str, Any]) -> None:
    """Register :data:`FORMAT` from the benchmark's description of the dialogue:
    ``user``/``assistant`` labels, ``examples`` ([question, answer] pairs), ``stop``."""
    user, assistant = dialogue["user"], dialogue["assistant"]
    examples = [(str(q), str(a)) for q, a in dialogue["examples"]]
    stop = [str(s) for s in dialogue["stop"]]

    @llama_chat_format.register_chat_format(FORMAT)
    def render(messages: list[dict[str, Any]], **_: Any) -> Any:
        preamble = [_text(m.get("content")) for m in messages if m.get("role") == "system"]
        turns = [line for q, a in examples for line in (f"{user}: {q}", f"{assistant}: {a}")]
        for message in messages:
            role = message.get("role")
            if role in ("user", "assistant"):
                turns.append(f"{user if role == 'user' else assistant}: "
                             f"{_text(message.get('content'))}")
        prompt = "\n\n".join(p for p in preamble if p)
        prompt += ("\n\n" if prompt else "") + "\n".join([*turns, f"{assistant}:"])
        return llama_chat_format.ChatFormatterResponse(prompt=prompt, stop=stop)


class DeveloperRole:
    """ASGI middleware: OpenAI's ``developer`` role read as ``system``.

    Pipecat 1.x writes ``developer`` messages into the context (after an interrupted
    turn, for instance); llama-cpp-python 0.3.36's server predates that role and answers
    every later request of the conversation with a 500. OpenAI treats the two alike.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:  # bounded by the request's own length
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if b'"developer"' in body:
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                request = json.loads(body)
                for item in request.get("messages") or []:
                    if item.get("role") == "developer":
                        item["role"] = "system"
                body = json.dumps(request).encode()
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def main() -> None:
    argv = sys.argv[1:]
    at = argv.index("--dialogue")
    register(json.loads(argv[at + 1]))
    sys.argv = [sys.argv[0], *argv[:at], *argv[at + 2:], "--chat_format", FORMAT]
    create_app = server_cli.create_app

    def with_developer_role(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.add_middleware(DeveloperRole)
        return app

    server_cli.create_app = with_developer_role  # type: ignore[assignment]
    server_cli.main()


if __name__ == "__main__":
    main()
