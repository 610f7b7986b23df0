"""Voxline under Locust: voice, text, SSE chat and auto-play users against a running server.

    .venv/bin/locust -f loadtests/locustfile.py --config loadtests/locust.conf  # 4 users, 60 s
    .venv/bin/locust -f loadtests/locustfile.py --host https://voxline.example.com \\
        -u 32 -r 2 -t 5m VoiceUser TextUser                          # a cluster, some classes

    .venv/bin/python -m loadtests.locustfile --smoke    # seconds, on scripted engines (CI)

Defaults (``--config loadtests/locust.conf``; or pass them on the command line):
headless, 4 users, 1 spawned per second, 60 s, ``http://127.0.0.1:8000``. Every run is
bounded: at most ``--voxline-max-users`` users (64) and a ``--run-time`` no longer than
``--voxline-max-run-time-s`` (1800); a run that asks for more stops at once, saying why.

Users (weights in brackets; pick classes by name on the command line):

* ``VoiceUser`` (3): a spoken conversation over the native WebSocket. Real speech, spoken
  once by the server's own voice (``POST /v1/audio/speech``) per question and cached, is
  streamed as 20 ms PCM16 frames in real time with the pauses a speaker leaves; VAD ends
  each utterance. Several turns per socket with think times, then a new session.
* ``TextUser`` (2): typed turns over the same socket, spoken back.
* ``ChatSseUser`` (2): ``POST /v1/chat/stream`` with ``audio: true``, continuing its thread.
* ``AutoPlayUser`` (1): a text-only chat turn on an ``auto_play`` session, then the
  session's event stream followed until the Narrator's ``narration.ready``.

Besides the HTTP/socket rows, each turn reports custom Locust entries, so they appear in
Locust's own statistics, charts and CSV (``response_time`` in ms):

* ``TTFA`` / ``voice`` etc.: time to first audio from the server's event timestamps
  (``input.speech_stopped`` or ``input.text`` → first ``response.audio.chunk``);
* ``V2V`` / ``voice``: voice-to-voice as the client hears it (end of its speech → first
  audio chunk received);
* ``TURN`` / kind: the whole turn; a turn that ends in an ``error`` event or without
  ``response.done`` is a failure with the server's code.

``--smoke`` (run as a module, not by ``locust``) starts the API on scripted engines in a
child process (``loadtests/_gateway.py``) and runs Locust headless against it for a few
seconds with one user of each class but ``AutoPlayUser`` (its narration comes from a worker
deployment that only the Serve app runs); any failure fails it. Locust's final stats are the
report (``locust_smoke.json``).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gevent
from gevent.lock import Semaphore
from locust import HttpUser, between, events, task
from locust.env import Environment
from websockets.sync.client import ClientConnection, connect

from voxline.client import SseDecoder

#: the questions users ask (short, so that the CPU profile's small LLM answers them)
QUESTIONS = (
    "What is the capital of France?",
    "What is the capital of Germany?",
    "What is the capital of Italy?",
    "What is the capital of Spain?",
    "What is the capital of Japan?",
    "What is the capital of Canada?",
)
RATE = 24000  # /v1/audio/speech's pcm rate; voice sessions take it as their input rate
FRAME_MS = 20
PAUSE_BEFORE_S, PAUSE_AFTER_S = 0.4, 1.2
SAMPLING = {"temperature": 0.0, "max_tokens": 40, "seed": 1}
TURN_TIMEOUT_S = 120.0
DEFAULT_HOST = "http://127.0.0.1:8000"


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--voxline-max-users", type=int, default=64, include_in_web_ui=False,
                        help="refuse to run with more users than this")
    parser.add_argument("--voxline-max-run-time-s", type=int, default=1800,
                        include_in_web_ui=False,
                        help="refuse a run longer than this (and a headless run without -t)")
    parser.add_argument("--voxline-turns-per-session", type=int, default=3,
                        help="turns a voice or text user holds on one socket")


@events.test_start.add_listener
def _bounded(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    why = None
    if options.num_users and options.num_users > options.voxline_max_users:
        why = f"{options.num_users} users is over --voxline-max-users {options.voxline_max_users}"
    elif options.headless and not options.run_time:
        why = "a headless run needs --run-time (-t)"
    elif options.run_time and options.run_time > options.voxline_max_run_time_s:
        why = f"--run-time {options.run_time} s is over --voxline-max-run-time-s"
    if why and environment.runner is not None:
        print(f"voxline locustfile: {why}; stopping")
        environment.process_exit_code = 2
        environment.runner.quit()


def record(kind: str, name: str, ms: float, error: str | None = None) -> None:
    """A custom entry in Locust's statistics (``kind`` is the "Type" column)."""
    events.request.fire(request_type=kind, name=name, response_time=ms, response_length=0,
                        exception=RuntimeError(error) if error else None, context={})


# ---- speech, spoken once per question and process -------------------------------------------

_speech: dict[str, bytes] = {}
_speech_lock = Semaphore()


def spoken(user: HttpUser, question: str) -> bytes:
    """``question`` as PCM16 at 24 kHz with pauses around it, from the server's own voice."""
    with _speech_lock:
        if question not in _speech:
            with user.client.post("/v1/audio/speech", name="/v1/audio/speech (prepare)",
                                  json={"input": question, "response_format": "pcm"},
                                  catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"speech {response.status_code}")
                    raise gevent.GreenletExit
                _speech[question] = response.content
        speech = _speech[question]
    return bytes(2 * int(RATE * PAUSE_BEFORE_S)) + speech + bytes(2 * int(RATE * PAUSE_AFTER_S))


# ---- the WebSocket ------------------------------------------------------------------------------


class Turn:
    """What one response on the socket looked like (client clock: perf_counter seconds)."""

    def __init__(self) -> None:
        self.start_ts: int | None = None  # server ts of input.speech_stopped / input.text
        self.first_audio_ts: int | None = None
        self.first_audio_at: float | None = None
        self.error: str | None = None
        self.done = False
        self.event_count = 0


def ws_url(session: dict[str, Any]) -> str:
    return f"{session['ws_url']}?token={session['token']}"


def read_turn(ws: ClientConnection, turn: Turn, started: str) -> Iterator[dict[str, Any]]:
    """Events of the socket until the response ends (or an error without a log id)."""
    deadline = time.monotonic() + TURN_TIMEOUT_S
    while time.monotonic() < deadline:
        frame = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        event = json.loads(frame)
        kind = event.get("type")
        turn.event_count += 1
        yield event
        if kind == started and turn.start_ts is None:
            turn.start_ts = event["ts"]
        elif kind == "response.audio.chunk" and turn.first_audio_ts is None:
            turn.first_audio_ts = event["ts"]
            turn.first_audio_at = time.perf_counter()
        elif kind == "error":
            data = event.get("data", {})
            turn.error = str(data.get("code", "error"))
            if event.get("id") is None:  # refused before anything was logged
                return
        elif kind == "response.done":
            turn.done = data_status(event) == "completed" and turn.error is None
            if not turn.done and turn.error is None:
                turn.error = f"response {data_status(event)}"
            return
        elif kind == "response.cancelled":
            turn.error = "response cancelled"
            return
    turn.error = "timeout"


def data_status(event: dict[str, Any]) -> str:
    return str(event.get("data", {}).get("status", ""))


class SocketUser(HttpUser):
    """A session and its WebSocket, several turns on it, then a fresh session."""

    abstract = True
    host = DEFAULT_HOST
    wait_time = between(2, 6)  # think time between turns
    kind = "socket"
    settings: ClassVar[dict[str, Any]] = {"output_sample_rate": RATE, "sampling": SAMPLING}

    def on_start(self) -> None:
        self.ws: ClientConnection | None = None
        self.turns_left = 0

    def on_stop(self) -> None:
        self._close()

    def _close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def _socket(self) -> ClientConnection:
        if self.ws is None or self.turns_left <= 0:
            self._close()
            with self.client.post("/v1/sessions", json={"settings": self.settings},
                                  catch_response=True) as response:
                if not response.ok:
                    response.failure(f"{response.status_code} {response.text[:100]}")
                    raise _Refused
                session = response.json()
            start = time.perf_counter()
            try:
                self.ws = connect(ws_url(session), max_size=None, compression=None,
                                  open_timeout=30)
            except Exception as exc:
                record("WS", "connect", (time.perf_counter() - start) * 1000, repr(exc))
                raise _Refused from exc
            record("WS", "connect", (time.perf_counter() - start) * 1000)
            self.ws.recv(timeout=30)  # the greeting (session.created, not from the log)
            self.turns_left = self.environment.parsed_options.voxline_turns_per_session \
                if self.environment.parsed_options else 3
        self.turns_left -= 1
        return self.ws

    def finish(self, turn: Turn, began: float, end_of_input: float) -> None:
        total = (time.perf_counter() - began) * 1000
        record("TURN", self.kind, total, turn.error)
        if turn.error:
            self._close()  # start over on a fresh session
            return
        if turn.start_ts is not None and turn.first_audio_ts is not None:
            record("TTFA", self.kind, float(turn.first_audio_ts - turn.start_ts))
        if self.kind == "voice" and turn.first_audio_at is not None:
            record("V2V", self.kind, (turn.first_audio_at - end_of_input) * 1000)


class _Refused(Exception):
    """The session or socket could not be opened (already recorded)."""


class VoiceUser(SocketUser):
    """Real speech at real time over the socket, several turns per session."""

    weight = 3
    kind = "voice"
    settings: ClassVar[dict[str, Any]] = {**SocketUser.settings, "input_sample_rate": RATE}

    @task
    def talk(self) -> None:
        question = random.choice(QUESTIONS)
        audio = spoken(self, question)
        try:
            ws = self._socket()
        except _Refused:
            return
        turn = Turn()
        frame = 2 * RATE * FRAME_MS // 1000
        began = time.perf_counter()
        end_of_speech = began + len(audio) / 2 / RATE - PAUSE_AFTER_S

        def microphone() -> None:
            for n, offset in enumerate(range(0, len(audio), frame)):
                ws.send(audio[offset:offset + frame])
                delay = began + (n + 1) * FRAME_MS / 1000 - time.perf_counter()
                if delay > 0:
                    gevent.sleep(delay)

        sender = gevent.spawn(microphone)
        try:
            for _ in read_turn(ws, turn, "input.speech_stopped"):
                pass
        except Exception as exc:  # the socket dropped or timed out
            turn.error = turn.error or type(exc).__name__
        finally:
            sender.kill()
        self.finish(turn, began, end_of_speech)


class TextUser(SocketUser):
    """Typed questions over the socket, spoken back."""

    weight = 2
    kind = "text"

    @task
    def ask(self) -> None:
        try:
            ws = self._socket()
        except _Refused:
            return
        turn = Turn()
        began = time.perf_counter()
        try:
            ws.send(json.dumps({"type": "input.text", "text": random.choice(QUESTIONS)}))
            for _ in read_turn(ws, turn, "input.text"):
                pass
        except Exception as exc:
            turn.error = turn.error or type(exc).__name__
        self.finish(turn, began, began)


def sse_messages(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    decoder = SseDecoder()
    for line in lines:
        if (message := decoder.feed(line)) is not None:
            yield message


class ChatSseUser(HttpUser):
    """``POST /v1/chat/stream`` with audio, continuing one thread for a few turns."""

    host = DEFAULT_HOST
    weight = 2
    wait_time = between(2, 6)

    def on_start(self) -> None:
        self.thread: tuple[str, str] | None = None
        self.turns = 0

    def chat(self, body: dict[str, Any], name: str) -> tuple[float | None, str | None, int]:
        """(first audio ms, error, events) of one streamed chat turn."""
        headers = {}
        if self.thread is not None:
            body["session_id"] = self.thread[0]
            headers["X-Voxline-Token"] = self.thread[1]
        began = time.perf_counter()
        first_audio, error, count = None, None, 0
        with self.client.post("/v1/chat/stream", json=body, headers=headers, stream=True,
                              name=name, catch_response=True,
                              timeout=TURN_TIMEOUT_S) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code} {response.text[:100]}")
                return None, f"http {response.status_code}", 0
            for event, data in sse_messages(response.iter_lines(decode_unicode=True)):
                count += 1
                if event == "session":
                    self.thread = (data["thread_id"], data["token"])
                elif event == "audio" and first_audio is None:
                    first_audio = (time.perf_counter() - began) * 1000
                elif event == "error":
                    error = str(data.get("code", "error"))
                elif event == "done":
                    if data.get("status") not in (None, "completed"):
                        error = error or f"response {data.get('status')}"
                    break
            if error:
                response.failure(error)
        return first_audio, error, count

    @task
    def ask(self) -> None:
        if self.turns >= 3:
            self.thread, self.turns = None, 0
        self.turns += 1
        body = {"message": random.choice(QUESTIONS), "audio": True,
                "settings": {"sampling": SAMPLING}}
        first_audio, error, _ = self.chat(body, "/v1/chat/stream (audio)")
        if error:
            self.thread = None
        elif first_audio is not None:
            record("TTFA", "sse chat (client)", first_audio)


class AutoPlayUser(ChatSseUser):
    """A text-only turn on an ``auto_play`` session, then its narration from the log."""

    weight = 1

    @task
    def ask(self) -> None:
        self.thread = None
        body = {"message": random.choice(QUESTIONS), "audio": False,
                "settings": {"sampling": SAMPLING, "auto_play": True}}
        _, error, _ = self.chat(body, "/v1/chat/stream (auto_play)")
        if error or self.thread is None:
            return
        session_id, token = self.thread
        began = time.perf_counter()
        error = "no narration"
        with self.client.get(f"/v1/sessions/{session_id}/events", stream=True,
                             params={"follow": "true"}, headers={"X-Voxline-Token": token},
                             name="/v1/sessions/{id}/events (narration)", catch_response=True,
                             timeout=TURN_TIMEOUT_S) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}")
                return
            deadline = time.monotonic() + TURN_TIMEOUT_S
            for event, data in sse_messages(response.iter_lines(decode_unicode=True)):
                kind = data.get("type", event) if isinstance(data, dict) else event
                if kind == "narration.ready":
                    error = None
                    break
                if kind == "error":  # a logged error event, or the stream's own payload
                    error = str(data.get("data", data).get("code", "error"))
                    break
                if time.monotonic() > deadline:
                    break
            if error:
                response.failure(error)
            else:
                response.success()
        record("NARRATION", "auto_play", (time.perf_counter() - began) * 1000, error)


def loopback(host: str) -> bool:
    return (urlsplit(host).hostname or "") in {"127.0.0.1", "localhost", "::1"}


if os.environ.get("VOXLINE_LOCUST_LOOPBACK_ONLY") == "1":  # for CI: never leave the machine
    @events.test_start.add_listener
    def _loopback_only(environment: Environment, **_: Any) -> None:
        if environment.host and not loopback(environment.host) and environment.runner:
            print(f"voxline locustfile: {environment.host} is not loopback; stopping")
            environment.runner.quit()


SMOKE_CLASSES = ("VoiceUser", "TextUser", "ChatSseUser")


def main() -> None:
    """``python -m loadtests.locustfile --smoke`` (see the module docstring)."""
    import argparse
    import subprocess
    import sys

    from loadtests._gateway import child_gateway
    from loadtests._report import add_smoke_flag, smoke_reports, write_report
    from voxline.redis_server import redis_url_or_server

    parser = argparse.ArgumentParser(
        description="Locust's users against the API on scripted engines, for a few seconds; "
        "real runs use the locust command (see this file's docstring)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if not args.smoke:
        parser.error("run the users with locust -f loadtests/locustfile.py, or --smoke here")
    smoke_reports()
    with redis_url_or_server(os.environ.get("VOXLINE_REDIS_URL")) as redis_url, \
            child_gateway(redis_url) as (url, _pid):
        proc = subprocess.run(
            [sys.executable, "-m", "locust", "-f", __file__, "--headless", "--host", url,
             "-u", str(len(SMOKE_CLASSES)), "-r", str(len(SMOKE_CLASSES)), "-t", "6s",
             "--stop-timeout", "20", "--only-summary", "--json", "--loglevel", "WARNING",
             "--voxline-turns-per-session", "2", *SMOKE_CLASSES],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "VOXLINE_LOCUST_LOOPBACK_ONLY": "1"})
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    stats = json.loads(proc.stdout) if proc.stdout.strip().startswith("[") else []
    rows = {f"{s['method']} {s['name']}": {"requests": s["num_requests"],
                                           "failures": s["num_failures"]} for s in stats}
    path = write_report("locust_smoke", {"exit_code": proc.returncode, "entries": rows})
    for name, row in rows.items():
        print(f"{name:48} {row}")
    print(f"report: {path}")
    turns = {name.split(" ", 1)[1] for name, row in rows.items()
             if name.startswith("TURN ") and row["requests"]}
    if proc.returncode != 0 or turns != {"voice", "text"} or not any(
            "/v1/chat/stream" in name and row["requests"] for name, row in rows.items()):
        raise SystemExit(f"smoke: locust exited {proc.returncode}; turns seen: {sorted(turns)}")


if __name__ == "__main__":
    main()
