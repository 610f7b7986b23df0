"""What the serve tests know of the running app (the ``app`` fixture in conftest)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from schemas import Settings


@dataclass(frozen=True)
class App:
    url: str
    settings: Settings

    def speak(self, text: str) -> bytes:
        """``text`` in the server's own voice, as 24 kHz PCM16 (``/v1/audio/speech``)."""
        response = httpx.post(f"{self.url}/v1/audio/speech",
                              json={"input": text, "response_format": "pcm"}, timeout=120)
        assert response.status_code == 200, response.text
        return response.content
