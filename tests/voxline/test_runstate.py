"""Where a running server is: ``voxline serve`` records it, the other commands find it,
records of servers that are gone are not used; ``voxline talk`` says its session."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from schemas import EventLogSettings
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS
from voxline.cli import serve_summary
from voxline.inspect import inspect_settings
from voxline.redis_server import free_port
from voxline.runstate import ServerRecord, find_server, recorded, remove_record, write_record
from voxline.talk import talk


def a_record(redis_url: str, *, port: int = 8000, pid: int | None = None,
             prefix: str = "voxline") -> ServerRecord:
    return ServerRecord(url=f"http://127.0.0.1:{port}", redis_url=redis_url, key_prefix=prefix,
                        port=port, pid=os.getpid() if pid is None else pid)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.redis
def test_a_record_is_found_while_its_server_lives_and_removed_after(
    redis_url: str, tmp_path: Path
) -> None:
    record = a_record(redis_url)
    with recorded(record, tmp_path) as path:
        assert find_server(directory=tmp_path) == record
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a Redis URL may hold a password
        assert [p.name for p in tmp_path.iterdir()] == ["server-8000.json"]  # no temp left
    assert find_server(directory=tmp_path) is None
    assert not list(tmp_path.iterdir())


@pytest.mark.redis
def test_records_of_servers_that_are_gone_are_skipped(redis_url: str, tmp_path: Path) -> None:
    write_record(a_record(redis_url, port=8001, pid=dead_pid()), tmp_path)
    write_record(a_record(f"redis://127.0.0.1:{free_port()}/0", port=8002), tmp_path)
    (tmp_path / "server-8003.json").write_text("{not json")
    assert find_server(directory=tmp_path) is None
    assert not (tmp_path / "server-8001.json").exists()  # its process is gone: removed
    live = a_record(redis_url, port=8004)
    write_record(live, tmp_path)
    assert find_server(directory=tmp_path) == live


@pytest.mark.redis
def test_a_record_of_a_cluster_or_the_sentinels_is_live_while_one_host_answers(
    redis_url: str, tmp_path: Path
) -> None:
    live = f"127.0.0.1:{urlsplit(redis_url).port}"
    gone = f"127.0.0.1:{free_port()}"
    for url in (f"redis+cluster://{gone},{live}/", f"redis+sentinel://{gone},{live}/mymaster"):
        record = a_record(url)
        with recorded(record, tmp_path):
            assert find_server(directory=tmp_path) == record
    write_record(a_record(f"redis+sentinel://{gone}/mymaster"), tmp_path)
    assert find_server(directory=tmp_path) is None


@pytest.mark.redis
def test_the_configured_port_is_preferred_and_a_newer_server_keeps_its_record(
    redis_url: str, tmp_path: Path
) -> None:
    mine, other = a_record(redis_url, port=8000), a_record(redis_url, port=9000)
    write_record(mine, tmp_path)
    write_record(other, tmp_path)
    assert find_server(8000, tmp_path) == mine
    assert find_server(9000, tmp_path) == other
    remove_record(9000, pid=os.getpid() + 1, directory=tmp_path)  # not its own: kept
    assert find_server(9000, tmp_path) == other


@pytest.mark.redis
def test_inspect_settings_take_the_option_then_the_variable_then_the_record(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOXLINE_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("VOXLINE_REDIS_URL", raising=False)
    monkeypatch.delenv("VOXLINE_LOG__KEY_PREFIX", raising=False)
    write_record(a_record(redis_url, prefix="voxserve:abc"), tmp_path)
    found = inspect_settings()
    assert (found.redis_url, found.log.key_prefix) == (redis_url, "voxserve:abc")
    monkeypatch.setenv("VOXLINE_LOG__KEY_PREFIX", "mine")
    assert inspect_settings().log.key_prefix == "mine"  # set: the user's prefix wins
    monkeypatch.setenv("VOXLINE_REDIS_URL", "redis://elsewhere:6379/0")
    assert inspect_settings().redis_url == "redis://elsewhere:6379/0"
    assert inspect_settings("redis://option:6379/0").redis_url == "redis://option:6379/0"


def test_the_serve_summary_names_every_entry_point() -> None:
    from schemas import Settings

    text = serve_summary(Settings(metrics_port=9464), "http://127.0.0.1:8000",
                         "redis://127.0.0.1:4242/0")
    for where in ("http://127.0.0.1:8000/docs", "http://127.0.0.1:8000/redoc",
                  "http://127.0.0.1:8000/docs/protocol",
                  "ws://127.0.0.1:8000/v1/sessions/{id}/ws", "ws://127.0.0.1:8000/v1/realtime",
                  "http://127.0.0.1:9464/metrics", "redis://127.0.0.1:4242/0"):
        assert where in text, where
    assert "native socket" in text and "OpenAI realtime" in text
    assert "metrics" not in serve_summary(Settings(metrics_port=None), "http://h:1", "r")


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Paris", "."]),
                         tts=ScriptedTTS(chunks_per_piece=1)) as harness:
        yield harness


@pytest.mark.redis
async def test_talk_says_the_session_it_used(harness: Harness, tmp_path: Path) -> None:
    said: list[str] = []
    await talk(harness.url, text="What is the capital of France?", wav=None,
               out=tmp_path / "reply.wav", say=lambda text, end="\n": said.append(text))
    session_line = next(line for line in said if line.startswith("session:"))
    session_id = session_line.split()[-1]
    assert await harness.services.log.read_all(session_id)  # the id of a logged session
    assert any(line.startswith("token:") for line in said)
    assert any(f"voxline stats {session_id}" in line for line in said)


@pytest.mark.redis
def test_serve_records_where_it_is_while_it_serves_and_removes_it_on_stop(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``voxline serve`` (its app stubbed): the record is there while it serves, with the
    server's Redis and key prefix, and gone once Ctrl-C stopped it."""
    import contextlib
    import threading

    from typer.testing import CliRunner

    import voxline.cli as cli
    import voxline.server as server

    seen: list[ServerRecord | None] = []

    @contextlib.contextmanager
    def fake_server(settings: object, **_: object) -> Iterator[server.RunningServer]:
        yield server.RunningServer(url="http://127.0.0.1:8123", redis_url=redis_url,
                                   profile="cpu")

    waiting = threading.Event.wait

    def serving(self: threading.Event, timeout: float | None = None) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return waiting(self, timeout)  # another thread's wait (Ray's, in a full run)
        seen.append(find_server(8123, tmp_path))
        raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(server, "running_server", fake_server)
    monkeypatch.setattr(threading.Event, "wait", serving)
    result = CliRunner().invoke(cli.app, ["serve", "--no-demo", "--port", "8123"], env={
        "VOXLINE_RUN_DIR": str(tmp_path), "VOXLINE_LOG__KEY_PREFIX": "voxtest:served",
        "VOXLINE_METRICS_PORT": "9999"})
    assert result.exit_code == 0, result.output
    assert seen == [ServerRecord(url="http://127.0.0.1:8123", redis_url=redis_url,
                                 key_prefix="voxtest:served", port=8123, pid=os.getpid())]
    assert "ws://127.0.0.1:8123/v1/realtime" in result.output
    assert "http://127.0.0.1:9999/metrics" in result.output
    assert find_server(8123, tmp_path) is None and not list(tmp_path.iterdir())
