"""The fallback voice: espeak-ng's command-line synthesizer, one process per piece.

Piper ships one packaged voice (US English); espeak-ng speaks about a hundred languages
with a robotic but intelligible formant voice, and it is a Debian package rather than a
model file, so it is the CPU default for every language without a neural voice (German
first of all). :class:`~pipeline.engines.tts.routing.LanguageRoutingSynthesizer` sends
pieces here by language.

Why a subprocess and not a library binding: the CLI is what the distribution packages and
keeps stable, it needs no GPL code imported into our process, and a process is the one
thing that can be stopped at once — cancelling a stream kills it (``SIGKILL``) and reaps
it in ``finally``, so no synthesis outlives its consumer.

How one piece runs: ``espeak-ng --stdout --stdin -b 1 -v <voice> -s <wpm>`` is started
with :func:`asyncio.create_subprocess_exec` (no shell; the text goes through stdin, so it
can never be read as an option). espeak-ng writes a streaming WAV: its header carries a
placeholder length, so the header is parsed by hand (the ``fmt`` chunk gives the sample
rate) and the ``data`` chunk is read until end of file, in slices of ``chunk_ms``, each
yielded as soon as it is complete.

Install: ``apt-get install espeak-ng`` (Debian/Ubuntu); a missing binary is a
``ModelMissingError`` from :meth:`EspeakSynthesizer.load`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import struct
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.engines.base import Synthesizer
from schemas import (
    AudioChunk,
    EngineError,
    ErrorCode,
    ModelMissingError,
    ProtocolError,
    SynthesisRequest,
)

__all__ = [
    "ESPEAK_INSTALL_HINT",
    "EspeakOptions",
    "EspeakSynthesizer",
    "EspeakVoices",
    "espeak_text",
    "has_speakable_text",
]

#: What to run when the binary is missing.
ESPEAK_INSTALL_HINT = "apt-get install espeak-ng"
_OPTIONS_SETTING = "VOXLINE_TTS__OPTIONS"
#: espeak-ng's own default speaking rate, words per minute.
_DEFAULT_WPM = 175


class EspeakOptions(BaseModel):
    """Options of the ``espeak`` TTS engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    binary: str = Field(default="espeak-ng", min_length=1, description="name or path")
    words_per_minute: int = Field(
        default=_DEFAULT_WPM, ge=80, le=450, description="rate at speed 1.0 (espeak's -s)"
    )
    chunk_ms: int = Field(
        default=200, ge=10, le=5000, description="audio per yielded chunk (the last is shorter)"
    )


@dataclass(frozen=True)
class EspeakVoices:
    """What the installed espeak-ng can speak, parsed from ``espeak-ng --voices``.

    ``by_language`` maps every language code espeak-ng answers to (its own codes such as
    ``de`` or ``en-us`` and the generic ones it lists as "other languages", such as
    ``en``) to the voice it would pick, by espeak's priority.
    """

    by_language: dict[str, str]
    names: dict[str, str]  # lower-case voice name ("english_(america)") -> language code

    @classmethod
    def parse(cls, listing: str) -> EspeakVoices:
        best: dict[str, tuple[int, str]] = {}
        names: dict[str, str] = {}
        for line in listing.splitlines()[1:]:  # the first line is the column header
            fields = line.split()
            if len(fields) < 5 or not fields[0].isdigit():
                continue
            priority, code, name = int(fields[0]), fields[1].lower(), fields[3]
            names[name.lower()] = code
            candidates = [(code, priority)]
            # "Other Languages" look like "(en 2)(en-gb 4)": a code and its priority.
            others = " ".join(fields[5:]).replace("(", " ").replace(")", " ").split()
            candidates += [
                (other.lower(), int(rank))
                for other, rank in zip(others[::2], others[1::2], strict=False)
                if rank.isdigit()
            ]
            for lang, rank in candidates:
                if lang not in best or rank < best[lang][0]:
                    best[lang] = (rank, code)
        return cls({lang: code for lang, (_, code) in best.items()}, names)

    def resolve(self, language: str) -> str | None:
        """The voice for a BCP-47-ish tag ("de", "de-DE", "en_US"), or None."""
        tag = language.strip().lower().replace("_", "-")
        while tag:
            if tag in self.by_language:
                return self.by_language[tag]
            tag = tag.rpartition("-")[0]
        return None


#: C0 and C1 control characters (tab and line ends kept) become spaces.
_CONTROL = {c: " " for c in (*range(0x20), *range(0x7F, 0xA0)) if chr(c) not in "\t\n\r"}
_PHONEME_OPEN, _PHONEME_CLOSE = re.compile(r"\[{2,}"), re.compile(r"\]{2,}")


def espeak_text(text: str) -> str:
    """Text as espeak-ng must receive it: words to read, never codes it would obey.

    espeak-ng reads ``[[...]]`` as raw phoneme codes, and so does Piper's phonemizer
    (which is espeak-ng too), so an LLM reply could make either voice say anything;
    the double brackets are made single. Control characters become spaces (a NUL ends a
    C string: piper fails on it, espeak-ng stops reading).
    """
    text = text.translate(_CONTROL)
    return _PHONEME_CLOSE.sub("]", _PHONEME_OPEN.sub("[", text))


def has_speakable_text(text: str) -> bool:
    """True when the text has a letter or digit: bare punctuation is read as silence
    (espeak-ng) or as a breath of noise (Piper), so it is not synthesized at all."""
    return any(ch.isalnum() for ch in text)


class EspeakSynthesizer(Synthesizer):
    """Speaks any language espeak-ng knows by running its CLI once per piece.

    ``request.language`` picks the voice; ``request.voice``, when set, must be one of
    :attr:`voices` (an espeak language code or voice name, e.g. ``de`` or
    ``German``) and wins over the language. ``request.speed`` scales the words per
    minute. Processes run concurrently, one per request: espeak-ng is light
    (single-threaded, a few MB), so there is no queue here.
    """

    name = "espeak"
    Options = EspeakOptions
    options: EspeakOptions
    sample_rate = 22050  # espeak-ng's native rate; every chunk states the real one

    def __init__(self, options: EspeakOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._binary: str | None = None
        self._voices: EspeakVoices | None = None
        #: Process ids of the espeak-ng processes running now (tests check cleanup).
        self.running_pids: set[int] = set()

    @property
    def ready(self) -> bool:
        return self._voices is not None

    async def load(self) -> None:
        """Find the binary and list its voices; fails early when espeak-ng is missing."""
        if self._voices is not None:
            return
        binary = shutil.which(self.options.binary)
        if binary is None:
            raise ModelMissingError(
                f"the espeak TTS engine needs the espeak-ng program ({self.options.binary!r} "
                f"is not on PATH): {ESPEAK_INSTALL_HINT}",
                stage="tts",
                recoverable=False,
                setting=_OPTIONS_SETTING,
                package="espeak-ng",
            )
        proc = await asyncio.create_subprocess_exec(
            binary,
            "--voices",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        voices = EspeakVoices.parse(out.decode("utf-8", "replace"))
        if proc.returncode != 0 or not voices.by_language:
            raise ModelMissingError(
                f"{binary} --voices failed (exit {proc.returncode}): "
                f"{err.decode('utf-8', 'replace').strip()}; reinstall: {ESPEAK_INSTALL_HINT}",
                stage="tts",
                recoverable=False,
                package="espeak-ng",
            )
        self._binary, self._voices = binary, voices
        # What ``request.voice`` may take: espeak's language codes and voice names.
        self.voices = tuple(sorted({*voices.by_language, *voices.names}))

    def language_tags(self) -> tuple[str, ...]:
        return tuple(self._voices.by_language) if self._voices is not None else ()

    def voice_for(self, request: SynthesisRequest) -> str:
        """The ``-v`` argument for a request; ``ProtocolError(invalid_settings)`` if none."""
        voices = self._voices
        if voices is None:
            raise EngineError(
                "the espeak TTS engine is not loaded", code=ErrorCode.TTS_FAILED, stage="tts"
            )
        if request.voice is not None:
            wanted = request.voice.strip().lower()
            voice = voices.names.get(wanted) or voices.resolve(wanted)
            if voice is None:
                raise ProtocolError(
                    f"espeak-ng has no voice {request.voice!r}; use a language code such "
                    f"as 'de' or 'en-us' (see espeak-ng --voices)",
                    code=ErrorCode.INVALID_SETTINGS,
                    stage="tts",
                    voice=request.voice,
                )
            return voice
        voice = voices.resolve(request.language)
        if voice is None:
            raise ProtocolError(
                f"espeak-ng cannot speak language {request.language!r}",
                code=ErrorCode.INVALID_SETTINGS,
                stage="tts",
                language=request.language,
            )
        return voice

    async def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        """Yield the piece as PCM16 chunks of ``chunk_ms`` while espeak-ng writes it.

        Raises ``ProtocolError(invalid_settings)`` for a language or voice espeak-ng does
        not have, ``EngineError(tts_failed)`` when the process fails. Cancelling the
        consumer kills the process.
        """
        voice = self.voice_for(request)
        if not has_speakable_text(request.text):
            return
        assert self._binary is not None  # set together with _voices
        rate = max(80, min(450, round(self.options.words_per_minute * request.speed)))
        proc = await asyncio.create_subprocess_exec(
            self._binary,
            "--stdout",
            "--stdin",
            "-b",
            "1",  # the input is UTF-8
            "-v",
            voice,
            "-s",
            str(rate),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.running_pids.add(proc.pid)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            # At most MAX_SYNTHESIS_CHARS of text: it fits the pipe buffer, so writing it
            # all before reading cannot deadlock.
            proc.stdin.write(espeak_text(request.text).encode("utf-8"))
            await proc.stdin.drain()
            proc.stdin.close()
            sample_rate = await _read_wav_header(proc.stdout)
            chunk_bytes = 2 * max(1, sample_rate * self.options.chunk_ms // 1000)
            while True:
                try:
                    data = await proc.stdout.readexactly(chunk_bytes)
                except asyncio.IncompleteReadError as end:
                    data = end.partial[: len(end.partial) // 2 * 2]
                    if data:
                        yield AudioChunk(audio=data, sample_rate=sample_rate)
                    break
                yield AudioChunk(audio=data, sample_rate=sample_rate)
            await _check_exit(proc)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            # A broken pipe or a truncated header means espeak-ng died: report why.
            await _check_exit(proc)
            raise EngineError(
                "espeak-ng failed", code=ErrorCode.TTS_FAILED, stage="tts"
            ) from exc
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()  # reap it: no zombie, and the pid is really gone
            self.running_pids.discard(proc.pid)

    async def close(self) -> None:
        """Nothing to release: every process belongs to (and dies with) its stream."""


async def _read_wav_header(stream: asyncio.StreamReader) -> int:
    """Consume a RIFF/WAVE header up to the ``data`` chunk; return the sample rate.

    The stdlib ``wave`` module reads synchronously and trusts the length fields, which
    espeak-ng fills with a placeholder when writing to a pipe, so the chunks are walked
    here instead. Only what espeak-ng writes is accepted: PCM, mono, 16-bit.
    """
    riff, _, wave_id = struct.unpack("<4sI4s", await stream.readexactly(12))
    if riff != b"RIFF" or wave_id != b"WAVE":
        raise ValueError("espeak-ng did not write a WAV stream")
    sample_rate: int | None = None
    while True:
        chunk_id, size = struct.unpack("<4sI", await stream.readexactly(8))
        if chunk_id == b"data":
            if sample_rate is None:
                raise ValueError("WAV data before its fmt chunk")
            return sample_rate
        body = await stream.readexactly(size + (size & 1))  # chunks are word-aligned
        if chunk_id == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if (fmt, channels, bits) != (1, 1, 16):
                raise ValueError(f"unexpected WAV format {fmt}/{channels} ch/{bits} bit")
            sample_rate = rate


async def _check_exit(proc: asyncio.subprocess.Process) -> None:
    """Raise ``EngineError`` with espeak-ng's stderr when it exited with an error."""
    returncode = await proc.wait()
    if returncode == 0:
        return
    stderr = b""
    if proc.stderr is not None:
        stderr = await proc.stderr.read()
    raise EngineError(
        f"espeak-ng exited with {returncode}: {stderr.decode('utf-8', 'replace').strip()}",
        code=ErrorCode.TTS_FAILED,
        stage="tts",
        exit_code=returncode,
    )
