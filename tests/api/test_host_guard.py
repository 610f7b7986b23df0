"""The ``Host`` check (DNS rebinding), beside the origin check (plain uvicorn, scripted
engines): a page whose name was re-resolved to this machine sends its own name as
``Host`` and as ``Origin``, so the origin check alone takes it for the server's own page.
Every request and upgrade whose ``Host`` names no host this server answers for is
``421 host_not_allowed``, before anything runs; addresses, loopback names, the public
URL's and allowed origins' hosts, and ``VOXLINE_API__ALLOWED_HOSTS`` are served."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from deployments.api._origin import host_allowed
from schemas import ApiSettings, EventLogSettings, Settings
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS

REBOUND = "rebind.attacker.example"


@pytest.mark.parametrize(("host", "allowed"), [
    (None, True),  # HTTP/1.0: not a browser
    ("127.0.0.1:8000", True), ("[::1]:8000", True), ("10.0.0.5", True),  # addresses
    ("203.0.113.9:8000", True),
    ("localhost:8000", True), ("app.localhost", True), ("LOCALHOST", True),
    ("localhost.:8000", True),  # the absolute form of a name
    ("rebind.attacker.example:8000", False),
    ("localhost.attacker.example", False),
    ("127.0.0.1.attacker.example", False),
    ("voice.example.attacker.example", False),
    ("", False), ("[::1", False), ("a b", False),
])
def test_the_default_allow_list(host: str | None, allowed: bool) -> None:
    assert host_allowed(host) is allowed


def test_configured_hosts_origins_and_the_public_url_are_allowed() -> None:
    assert host_allowed("voice.example:443", ["voice.example"])
    assert host_allowed("VOICE.example", ["voice.example"])
    assert not host_allowed("other.example", ["voice.example"])
    assert host_allowed("a.corp.example", [".corp.example"])
    assert host_allowed("corp.example", ["*.corp.example"])
    assert not host_allowed("evilcorp.example", [".corp.example"])
    assert host_allowed("anything.example", ["*"])
    assert host_allowed("app.example:8443", allowed_origins=["https://app.example"])
    assert host_allowed("voice.example", public_url="https://voice.example/base")
    assert not host_allowed(f"{REBOUND}:8000", allowed_origins=["https://app.example"],
                            public_url="https://voice.example")


def test_the_setting_is_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXLINE_API__ALLOWED_HOSTS", json.dumps(["voice.example"]))
    assert Settings().api.allowed_hosts == ("voice.example",)
    assert ApiSettings().allowed_hosts == ()


# ---- through the API ---------------------------------------------------------------------


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    api = ApiSettings(allowed_hosts=("voice.example",))
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Hi", "!"]), tts=ScriptedTTS(), api=api) as harness:
        yield harness


def refused(answer: httpx.Response) -> None:
    assert answer.status_code == 421, answer.text
    assert answer.json()["error"]["code"] == "host_not_allowed"
    assert REBOUND in answer.json()["error"]["message"]


@pytest.mark.redis
async def test_a_rebound_page_is_refused_on_every_door(harness: Harness) -> None:
    port = int(harness.url.rsplit(":", 1)[1])
    rebound = f"http://{REBOUND}:{port}"
    as_page = {"Host": f"{REBOUND}:{port}", "Origin": rebound}
    async with httpx.AsyncClient(base_url=harness.url, timeout=30) as http:
        refused(await http.post("/v1/sessions", json={}, headers=as_page))
        refused(await http.post("/v1/chat/stream", json={"message": "hi"}, headers=as_page))
        refused(await http.post("/v1/realtime/calls", content="v=0\r\n",
                                headers={**as_page, "Content-Type": "application/sdp"}))
        refused(await http.post("/v1/twilio/voice", data={"CallSid": "CA1"}, headers=as_page))
        refused(await http.get("/v1/models", headers=as_page))  # reading answers too
        # the same requests to a name it answers for are served
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "voice.example"):
            made = await http.post("/v1/sessions", json={}, headers={"Host": host})
            assert made.status_code == 201, (host, made.text)
    for path in ("/v1/realtime", "/v1/twilio/media"):
        with pytest.raises(InvalidStatus) as upgrade:
            # the URL names the rebound host (so Host does); the socket goes to loopback
            async with connect(f"ws://{REBOUND}:{port}{path}", host="127.0.0.1", port=port,
                               origin=Origin(rebound)):
                pass
        assert upgrade.value.response.status_code == 421, path
        body = json.loads(upgrade.value.response.body or b"{}")
        assert body["error"]["code"] == "host_not_allowed"
    # nothing was opened or admitted on the refused doors
    assert not harness.services.connections.live
    assert harness.services.admission.in_use("sessions") == 0
