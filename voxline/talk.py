"""``voxline talk``: one turn against a running server, from text or a WAV file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.audio import decode_audio
from schemas import Event
from voxline.client import VoxlineClient
from voxline.demo import RATE, text_turn, voice_turn, with_pauses, write_wav


async def talk(
    url: str, *, text: str | None, wav: Path | None, out: Path, say: Callable[..., None],
    **settings: Any,
) -> None:
    """One turn on a new session (``settings`` are its session settings); says the
    session's id and token, which ``voxline stats``/``replay`` and the API take."""
    def show(event: Event) -> None:
        data: Any = event.data
        if event.type == "transcript.final":
            say(f"heard: {data.text!r}")
        elif event.type == "response.text.delta":
            say(data.delta, end="")
        elif event.type in ("response.done", "response.cancelled"):
            say("")
        elif event.type == "error":
            say(f"error: {data.code}: {data.message}")

    async with VoxlineClient(url) as client:
        if wav is not None:
            data = await asyncio.to_thread(wav.read_bytes)
            pcm = await asyncio.to_thread(decode_audio, data, sample_rate=RATE)
            result = await voice_turn(client, with_pauses(pcm, RATE, before_s=0.2),
                                      speech_end_s=0.2 + len(pcm) / 2 / RATE, on_event=show,
                                      **settings)
        else:
            assert text is not None
            result = await text_turn(client, text, on_event=show, **settings)
    if not result.audio:
        say("the reply had no audio (nothing speakable, or an error above)")
    write_wav(out, bytes(result.audio), RATE)
    say(f"reply audio: {out} ({len(result.audio) / 2 / RATE:.1f} s)")
    session = result.session
    say(f"session: {session.session_id}")
    say(f"token:   {session.token}  (for its API calls: Authorization: Bearer ...)")
    say(f"look back: voxline stats {session.session_id}; "
        f"voxline replay {session.session_id}")
