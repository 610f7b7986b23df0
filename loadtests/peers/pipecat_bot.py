"""A Pipecat 1.x voice bot on the same models as Voxline's CPU profile, for bench_peers.

Run in Pipecat's own virtualenv (``scripts/setup-peers.sh``), never Voxline's: it imports
nothing of Voxline's. The benchmark starts it as a subprocess and passes it the weight files
Voxline's venv holds, so both frameworks run the very same files::

    pipecat-venv/bin/python loadtests/peers/pipecat_bot.py --port P \\
        --whisper-model DIR --piper-dir DIR --piper-voice en_US-joe-medium \\
        --llm-url http://127.0.0.1:Q/v1

It prints ``READY http://127.0.0.1:P`` once it listens, and serves until stdin closes.

The pipeline is written as Pipecat's examples write a local voice bot: a
``FastAPIWebsocketTransport`` with the ``ProtobufFrameSerializer`` (the serializer Pipecat's
WebSocket examples and JavaScript client use), one pipeline per connection built in
``run_bot``, ``transport.input() → STT → user aggregator → LLM → TTS → transport.output() →
assistant aggregator``, a ``SileroVADAnalyzer`` on the user aggregator, and Pipecat's
defaults for the rest (its user turn strategies: Smart Turn v3 ends a turn; its
interruptions; RTVI, which ``PipelineWorker`` adds by default; its WebSocket output paced
like an audio device). ``PipelineWorker`` and ``WorkerRunner``, not ``PipelineTask`` and
``PipelineRunner``: 1.3 deprecated those. What is set and why:

* Whisper: the model *path* (the packaged tiny.en) and ``compute_type="int8"``: the same
  model at the same quantisation as Voxline's CPU engine; the transcribe call is
  Pipecat's own (faster-whisper's defaults: beam 5).
* Piper: the packaged voice's folder as ``download_dir``, so nothing is downloaded.
* LLM: Pipecat has no llama.cpp service; its docs point local models at an
  OpenAI-compatible server, here llama-cpp-python's (started by the benchmark on the same
  GGUF), behind ``OpenAILLMService`` with the benchmark's system prompt and sampling (the
  same as the Voxline sessions get: a reply's length is CPU, so it must not differ).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from pathlib import Path

import uvicorn
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner

#: 0.05 s polls for uvicorn to listen: a minute at most
STARTUP_POLLS = 1200


async def run_bot(websocket: WebSocket, args: argparse.Namespace) -> None:
    """One connection's pipeline, from its first audio frame to the socket's close."""
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=ProtobufFrameSerializer(),
        ),
    )
    stt = WhisperSTTService(
        device="cpu", compute_type="int8",
        settings=WhisperSTTService.Settings(model=args.whisper_model),
    )
    tts = PiperTTSService(
        download_dir=Path(args.piper_dir),
        settings=PiperTTSService.Settings(voice=args.piper_voice),
    )
    llm = OpenAILLMService(
        api_key="local", base_url=args.llm_url,
        settings=OpenAILLMService.Settings(
            model="gemma", system_instruction=args.system_prompt,
            temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed,
        ),
    )
    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()),
    )
    pipeline = Pipeline([
        transport.input(),
        stt,
        user_aggregator,
        llm,
        tts,
        transport.output(),
        assistant_aggregator,
    ])
    worker = PipelineWorker(pipeline, params=PipelineParams(enable_metrics=True))

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: object, client: object) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def app_for(args: argparse.Namespace) -> FastAPI:
    app = FastAPI()

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await run_bot(websocket, args)

    return app


def _exit_when_stdin_closes(server: uvicorn.Server) -> None:
    """The parent holds our stdin: when it goes (exit, crash), so do we."""
    sys.stdin.read()
    server.should_exit = True


async def serve(args: argparse.Namespace) -> None:
    config = uvicorn.Config(app_for(args), host="127.0.0.1", port=args.port,
                            log_level="warning", ws_ping_interval=None)
    server = uvicorn.Server(config)
    threading.Thread(target=_exit_when_stdin_closes, args=(server,), daemon=True).start()
    task = asyncio.create_task(server.serve())
    for _ in range(STARTUP_POLLS):  # bounded: the parent gives up on us anyway
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    print(f"READY http://127.0.0.1:{args.port}", flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--whisper-model", required=True, help="a CTranslate2 model folder")
    parser.add_argument("--piper-dir", required=True, help="the folder of <voice>.onnx")
    parser.add_argument("--piper-voice", required=True)
    parser.add_argument("--llm-url", required=True, help="an OpenAI-compatible /v1 URL")
    parser.add_argument("--system-prompt", required=True)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
