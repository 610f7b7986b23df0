"""The Pipecat side of bench_peers: its venv, its two processes, and what they spend.

Pipecat runs in a virtualenv of its own (``scripts/setup-peers.sh``, outside the checkout):
:func:`missing` says why it cannot run here (the test command's CI has no such venv, and
smoke mode then reports the side as not installed). :func:`running_pipecat` starts, on
loopback ports of its own, llama-cpp-python's server on the packaged Gemma GGUF
(``loadtests/peers/llama_server.py``) and the bot (``loadtests/peers/pipecat_bot.py``), each
given the weight files Voxline's catalogue prepares, and the llama.cpp settings Voxline's
engine runs with by default (threads, context, batch, OpenMP's passive wait): the same
model run the same way, so the frameworks are what differs.

:class:`PipecatMeter` reads their cumulative CPU time: the LLM server's process whole, and
the bot's process split by thread, since its models share it with the framework: its
event-loop thread (the process's main thread: transport, serializer, frame processors,
aggregators) and the rest (its executor threads, where faster-whisper, Piper, Silero and
Smart Turn run, and their native pools). Threads that exited still count: the process's
total includes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from loadtests._process_cpu import process_cpu_s

ROOT = Path(__file__).resolve().parent.parent
BOT = ROOT / "loadtests" / "peers" / "pipecat_bot.py"
LLM_SERVER = ROOT / "loadtests" / "peers" / "llama_server.py"
PEERS_ENV = "VOXLINE_PEERS_DIR"
NOT_INSTALLED = "not installed: run scripts/setup-peers.sh"
START_TIMEOUT_S = 120.0
#: CPU groups; the first two hold the models (the module docstring)
LLM_GROUP, BOT_WORKERS, BOT_LOOP = "llm_server", "bot_worker_threads", "bot_event_loop"
MODEL_GROUPS = frozenset({LLM_GROUP, BOT_WORKERS})


def pipecat_python() -> Path:
    peers = Path(os.environ.get(PEERS_ENV) or Path.home() / ".cache" / "voxline" / "peers")
    return peers / "pipecat-venv" / "bin" / "python"


def missing() -> str | None:
    """Why the Pipecat side cannot run here, or None."""
    python = pipecat_python()
    if not python.is_file():
        return NOT_INSTALLED
    probe = subprocess.run([str(python), "-c", "import pipecat, llama_cpp.server, piper"],
                           capture_output=True, text=True, timeout=120)
    return None if probe.returncode == 0 else f"{NOT_INSTALLED} ({probe.stderr.strip()[-200:]})"


@dataclass(frozen=True)
class PipecatSide:
    url: str
    bot_pid: int
    llm_pid: int
    settings: dict[str, Any]


def weights() -> dict[str, Path]:
    """The files Voxline's CPU profile loads, from its packaged-model catalogue."""
    from pipeline.engines.weights import prepare

    return {"stt": prepare("whisper-tiny.en"), "tts": prepare("piper-en_US-joe-medium"),
            "llm": prepare("gemma3-270m")}


def llama_settings() -> dict[str, Any]:
    """Voxline's llama.cpp engine defaults, and the dialogue it prompts the base model with."""
    from pipeline.engines.llm.llama_cpp import LlamaCppOptions

    options = LlamaCppOptions()
    fmt = options.dialogue_format()
    return {"n_threads": options.threads(), "n_ctx": options.n_ctx, "n_batch": options.n_batch,
            "omp_passive_wait": options.omp_passive_wait,
            "dialogue": {"user": fmt.user_label, "assistant": fmt.assistant_label,
                         "examples": [list(e) for e in fmt.examples],
                         "stop": list(fmt.stops())}}


@contextlib.contextmanager
def running_pipecat(system_prompt: str, sampling: dict[str, Any],
                    timeout_s: float = START_TIMEOUT_S) -> Iterator[PipecatSide]:
    """The LLM server and the bot, started here and stopped on exit."""
    from voxline.redis_server import free_port

    python = str(pipecat_python())
    files, llama = weights(), llama_settings()
    workdir = Path(tempfile.mkdtemp(prefix="voxline-peers-"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"TMPDIR": str(workdir), "HOME": os.environ.get("HOME", str(workdir))})
    if llama["omp_passive_wait"]:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    llm_port, bot_port = free_port(), free_port()
    llm_cmd = [python, str(LLM_SERVER), "--dialogue", json.dumps(llama["dialogue"]),
               "--model", str(files["llm"]), "--model_alias", "gemma",
               "--host", "127.0.0.1", "--port", str(llm_port),
               "--n_threads", str(llama["n_threads"]), "--n_ctx", str(llama["n_ctx"]),
               "--n_batch", str(llama["n_batch"]), "--verbose", "False"]
    bot_cmd = [python, str(BOT), "--port", str(bot_port),
               "--whisper-model", str(files["stt"]), "--piper-dir", str(files["tts"].parent),
               "--piper-voice", files["tts"].name.removesuffix(".onnx"),
               "--llm-url", f"http://127.0.0.1:{llm_port}/v1", "--system-prompt", system_prompt,
               "--temperature", str(sampling["temperature"]),
               "--max-tokens", str(sampling["max_tokens"]), "--seed", str(sampling["seed"])]
    deadline = time.monotonic() + timeout_s
    with open(workdir / "llm.log", "w") as llm_log, open(workdir / "bot.log", "w") as bot_log:
        llm = subprocess.Popen(llm_cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=llm_log, stderr=subprocess.STDOUT)
        bot = subprocess.Popen(bot_cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=bot_log, text=True)
        try:
            url = _bot_ready(bot, deadline, workdir)
            _llm_ready(llm_port, llm, deadline, workdir)
            yield PipecatSide(url, bot.pid, llm.pid, {
                "llama_cpp": {k: v for k, v in llama.items() if k != "dialogue"},
                "weights": {k: str(v) for k, v in files.items()}, "logs": str(workdir)})
        finally:
            for proc in (bot, llm):
                _stop(proc)


def _bot_ready(bot: subprocess.Popen[str], deadline: float, workdir: Path) -> str:
    assert bot.stdout is not None
    while time.monotonic() < deadline and bot.poll() is None:
        ready, _, _ = select.select([bot.stdout], [], [], 0.5)
        if ready and (line := bot.stdout.readline()).startswith("READY "):
            return line.split()[1]
    raise RuntimeError(f"the Pipecat bot did not start: {_tail(workdir / 'bot.log')}")


def _llm_ready(port: int, llm: subprocess.Popen[bytes], deadline: float, workdir: Path) -> None:
    while time.monotonic() < deadline and llm.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"the LLM server did not start: {_tail(workdir / 'llm.log')}")


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-800:]
    return ""


def _stop(proc: subprocess.Popen[Any]) -> None:
    """Ours only, by its pid: stdin closed (the bot leaves), then terminate, then kill."""
    with contextlib.suppress(Exception):
        if proc.stdin is not None:
            proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class PipecatMeter:
    """Cumulative CPU-seconds of the Pipecat side's groups (the module docstring)."""

    def __init__(self, side: PipecatSide) -> None:
        self.bot = psutil.Process(side.bot_pid)
        self.llm = psutil.Process(side.llm_pid)

    def read(self) -> dict[str, float]:
        bot_total = process_cpu_s(self.bot)
        main = next((t for t in self.bot.threads() if t.id == self.bot.pid), None)
        loop = main.user_time + main.system_time if main is not None else 0.0
        return {LLM_GROUP: process_cpu_s(self.llm), BOT_WORKERS: bot_total - loop, BOT_LOOP: loop}


