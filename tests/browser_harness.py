"""Debian's Chromium driven by Playwright, with a WAV file as the microphone.

Playwright's own browser download does not work offline, so the tests launch the system
``chromium`` (``scripts/setup.sh`` installs it with the dev extra). Chrome's fake media
devices stand in for a microphone: ``--use-file-for-fake-audio-capture`` plays a WAV file
into ``getUserMedia`` (``%noloop`` after the path: once, then silence), and the autoplay
policy is lifted so an ``AudioContext`` runs without a click.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from voxline import demo

CHROMIUM = "/usr/bin/chromium"
REPORTS = Path(__file__).resolve().parent.parent / "reports"
#: generous: a turn on the 2-core CPU profile takes seconds, more when the machine is busy
TIMEOUT_MS = 90_000

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str:
    """The system Chromium, or skip (with how to get it) where it is not installed."""
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it with "
                    "the dev extra: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the dev extra's playwright is missing")
    return path


def write_wav(path: Path, pcm16: bytes, rate: int) -> Path:
    """``pcm16`` as a mono WAV file at ``path`` (the fake microphone's input)."""
    demo.write_wav(path, pcm16, rate)
    return path


@contextlib.contextmanager
def browser_page(
    url: str, *, microphone: Path | None = None, loop: bool = False,
    viewport: dict[str, int] | None = None, ready: str | None = "window.voxline !== undefined",
    init_script: str | None = None,
) -> Iterator[Any]:
    """A fresh Chromium with ``microphone`` as its audio input, on ``url``. Every request
    the page makes is recorded on ``page.requests`` (the page must load nothing from the
    internet), console errors on ``page.errors``, what its Content-Security-Policy refused on
``page.csp``. ``init_script`` runs before the page's
    own scripts (to slow a request down, say)."""
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if microphone is not None:
        args.append(f"--use-file-for-fake-audio-capture={microphone}{'' if loop else '%noloop'}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=args,
                                             headless=True)
        try:
            context = browser.new_context(viewport=viewport or {"width": 1000, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            page.requests = []  # type: ignore[attr-defined]
            page.errors = []  # type: ignore[attr-defined]
            page.blocked = []  # type: ignore[attr-defined]
            page.on("request", lambda r: page.requests.append(r.url))
            # refused by the page's Content-Security-Policy: never left the browser
            page.on("requestfailed", lambda r: r.failure == "csp" and page.blocked.append(r.url))
            page.on("pageerror", lambda e: page.errors.append(str(e)))
            # what the page's Content-Security-Policy refused, as the console reports it
            page.csp = []  # type: ignore[attr-defined]
            page.on("console", lambda m: "Content Security Policy" in m.text
                    and page.csp.append(m.text))
            if init_script is not None:
                page.add_init_script(init_script)
            page.goto(url)
            if ready is not None:
                page.wait_for_function(f"() => {ready}", timeout=TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> Path:
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / f"browser-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def snapshot(page: Any) -> dict[str, Any]:
    return page.evaluate("() => window.voxline.snapshot()")  # type: ignore[no-any-return]


def wait_for(page: Any, condition: str, arg: Any = None, timeout_ms: int = TIMEOUT_MS) -> Any:
    """Wait until ``condition`` (JS, given ``s`` = the page's snapshot and ``arg``) holds."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return page.wait_for_function(
            f"([arg]) => {{ const s = window.voxline.snapshot(); return ({condition}); }}",
            arg=[arg], timeout=timeout_ms, polling=100,
        )
    except PlaywrightTimeout:  # say what the page knew, and keep a picture of it
        screenshot(page, "timeout")
        state = snapshot(page)
        state["events"] = [e["type"] for e in state["events"]]
        state.pop("eventIds", None)
        raise AssertionError(f"waited in vain for {condition}; the page: {state}") from None


def off_host_requests(page: Any, base_url: str) -> list[str]:
    """Requests the page sent anywhere but ``base_url``'s host (those its own
    Content-Security-Policy refused do not count: they never left the browser)."""
    host = urlsplit(base_url).netloc
    return [u for u in page.requests
            if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != host
            and u not in page.blocked]
