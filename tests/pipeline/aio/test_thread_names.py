"""Worker threads carry their names where the operating system shows them (Linux's
``/proc/<pid>/task/<tid>/comm``), so a process's CPU can be split by thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from pipeline.aio import iterate_in_thread, name_os_thread
from pipeline.engines._worker import ModelWorker

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(),
                                reason="reads Linux's /proc")


def os_name(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def named_in(target_name: str) -> str:
    seen: list[str] = []

    def run() -> None:
        name_os_thread(target_name)
        seen.append(os_name(threading.get_native_id()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0]


def test_a_thread_gets_its_name_cut_to_what_the_kernel_keeps() -> None:
    assert named_in("piper-tts") == "piper-tts"
    assert named_in("voxline-turn-text") == "voxline-turn-te"  # 15 bytes
    assert os_name(threading.get_native_id()) != "piper-tts"  # only the caller's own


async def test_a_stream_s_worker_thread_is_named_as_asked() -> None:
    def names():
        yield os_name(threading.get_native_id())

    got = [name async for name in iterate_in_thread(names, thread_name="stream-worker")]
    assert got == ["stream-worker"]


async def test_an_engine_s_model_thread_carries_the_engine_s_thread_name() -> None:
    worker = ModelWorker("llama-cpp", "llm", thread_name="llama-cpp")
    worker.start()
    try:
        name = await worker.call(lambda: os_name(threading.get_native_id()))
    finally:
        await worker.close()
    assert name == "llama-cpp"
    assert await asyncio.to_thread(lambda: os_name(threading.get_native_id())) != "llama-cpp"
