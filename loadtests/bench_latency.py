"""Latency of the running app, driven over its WebSocket like real clients.

Prints a table and writes ``reports/bench_latency.json``:

* **text-in TTFA, streaming against sequential**: the same typed questions on the same
  engines in one run, the mode chosen per session (``speech_mode``). TTFA from the
  server's event timestamps (``input.text`` → first ``response.audio.chunk``) and from the
  client (send → first chunk received). Goal: streaming p50 ≤ 0.25 × sequential p50.
  The ratio says little unless replies have several pieces: see SEVERAL_SENTENCES.
* **voice-to-voice**: each question spoken once by the server's TTS, streamed back in real
  time as 20 ms frames with a pause after it; from the end of the speech to the first
  reply audio the client receives, and the server-side stage split (STT, LLM first token,
  first piece cut, TTS first chunk); what is left is the VAD tail plus the audio's way in
  and the chunk's way out. Goal: p50 ≤ 1.0 s on 2 cores.
* **preemptive turns**: the voice turns alternate between sessions with
  ``preemptive_turns`` on and off, so both see the same load; reported: each one's
  voice-to-voice p50/p95, on ÷ off (goal ≤ 0.75) and the rate of discarded speculations
  (``speculation.discarded`` events per turn). The spoken questions have no inner pause,
  so a few *hesitant* turns follow (a question said in two parts, HESITATION_S apart:
  shorter than the silence that ends a turn), whose pause starts a reply that must be
  dropped: their discards per turn are the wasted work a hesitating speaker costs. With
  preemptive turns the stage split after the endpoint is what was still to wait for: an
  adopted speculation's transcript comes at once, and its LLM first token is stamped
  when the prepared reply goes out (the wait shows there), not when it was written.
* **answer sheet**: the questions of ``loadtests/data/answer_sheet.json`` as typed turns
  (text only) on the running LLM, each reply's spoken text scored as bench_answers.py
  does. Goal ≥ 80 % with no markup spoken.
* **STT per model**: the spoken questions transcribed in this process by Whisper tiny.en
  (what English sessions get) and base (every other language), after the app's turns.
* **orchestration overhead**: what a typed turn's critical path spends outside the engines:
  client send → ``input.text`` ts (ingress) + ``input.text`` → ``response.started``
  (dispatch) + first chunk's ts → client receipt (delivery). Client and server clocks are
  the same ``time.time()`` (loopback only); ``ts`` is whole ms, so each part is ±1 ms.
  Not counted: the hops inside the engine stages (Ray handle calls, the sentence buffer;
  see bench_pipeline.py for the latter). Goal: p50 ≤ 20 ms.
* **OpenAI Realtime against native**: the same spoken questions, alternately through the
  native socket and through ``/v1/realtime`` with the official SDK (``_realtime_sdk.py``):
  end of speech → first audio (``response.audio.chunk`` / ``response.output_audio.delta``)
  on the client's clock. Goal: realtime p50 ≤ 1.05 × native p50.
* **telephony against native**: the same, as phone calls: the TwiML webhook, then Twilio's
  Media Streams socket with the question in μ-law at 8 kHz (``_twilio_call.py``); end of
  speech → first ``media`` frame. Goal: telephony p50 ≤ 1.15 × native p50.
* **WebRTC against native**: the same, as WebRTC calls (``POST /v1/realtime/calls`` from
  an aiortc peer on loopback, the question said into its microphone track:
  ``_webrtc_call.py``); end of speech → the first reply frame with sound. Goal: WebRTC
  p50 ≤ 1.1 × native p50.

    .venv/bin/python -m loadtests.bench_latency [--url http://127.0.0.1:8000] [--turns 5]
        [--port 8000] [--stt-model whisper-tiny.en] [--budget-s 600] [--only PHASE] [--smoke]

Without ``--url`` it starts the app (Redis if VOXLINE_REDIS_URL is unset, Ray, Serve) and
stops it at the end. Turns run one at a time, one session each, sampling at temperature 0
with a fixed seed; each measure starts with a warm-up turn (caches, the LLM's prompt
prefix). Bounded: at most 50 turns of a kind, and the whole run (server start included)
within ``--budget-s``; what the budget cut short is reported as such. ``--smoke`` runs
every phase once against the API on scripted engines (``loadtests/_gateway.py``, a child
process; STT per model: tiny.en only): the figures mean nothing, the code paths all run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from websockets.exceptions import WebSocketException

from loadtests._gateway import local_app
from loadtests._paired_turns import paired_turns
from loadtests._realtime_sdk import sdk_voice_turn
from loadtests._report import (
    add_settings_flag,
    add_smoke_flag,
    mean_parts,
    percentiles_ms,
    smoke_reports,
    write_report,
)
from loadtests._twilio_call import phone_voice_turn
from loadtests._webrtc_call import webrtc_voice_turn
from pipeline.workers import LatencyParts, TurnTimeline, playback_stalls
from schemas import Event
from voxline.client import FINAL_TYPES, VoxlineAPIError, VoxlineClient
from voxline.demo import RATE, TurnResult, text_turn, voice_turn, with_pauses

QUESTIONS = (
    "What is the capital of France?",
    "What is the capital of Germany?",
    "What is the capital of Italy?",
    "What is the capital of Spain?",
    "What is the capital of Japan?",
    "What is the capital of Canada?",
    "What is the capital of Egypt?",
    "What is the capital of Brazil?",
)
WARMUP_QUESTION = "What is the capital of Portugal?"
#: a question said in two parts with a hesitation between them (see the docstring)
HESITANT = ("What is the capital", "of Austria?")
HESITANT_QUESTION = " … ".join(HESITANT)
HESITATION_S = 0.3
HESITANT_TURNS = 3  # of each kind, at most
SAMPLING = {"temperature": 0.0, "max_tokens": 60, "seed": 1}
#: SAMPLING as a WebRTC call's offer can say it (OpenAI's ``session``: no seed; greedy
#: needs none)
CALL_SESSION = {"temperature": SAMPLING["temperature"],
                "max_output_tokens": SAMPLING["max_tokens"]}
#: the typed turns are asked for a spoken paragraph: the ratio is a function of length
PARAGRAPH_SAMPLING = {**SAMPLING, "max_tokens": 140}
#: Streaming can only start before sequential when a reply has more than one piece, and
#: the CPU profile's small base model answers a capital question in one sentence. Two
#: worked examples in the system prompt (a plain preamble to it) make it answer with a
#: short spoken paragraph (five or six pieces), the length of a typical assistant answer;
#: the voice and overhead turns keep the default prompt. The ratio falls as replies grow
#: (sequential waits for all of it): the report gives pieces per reply beside it.
SEVERAL_SENTENCES = (
    "You are Voxline, a friendly voice assistant. You answer in five sentences.\n\n"
    "User: What is the capital of Austria?\n"
    "Assistant: The capital of Austria is Vienna, a city on the river Danube. It is famous for "
    "its palaces, its coffee houses and its music. Millions of people visit it every year. "
    "The old town is small enough to walk across in an hour. In summer, people swim in the "
    "Danube and sit in the wine gardens on the hills.\n"
    "User: What is the capital of Norway?\n"
    "Assistant: The capital of Norway is Oslo, at the end of a long fjord. It is known for its "
    "museums, its parks and the opera house by the water. In winter, people go skiing just "
    "outside the city. Ferries take visitors to the small islands in the fjord. The city is "
    "green, with forests that reach almost to its centre."
)
MODES = ("streaming", "sequential")
MAX_TURNS = 50  # per kind of turn, whatever --turns says
TURN_TIMEOUT_S = 90.0
PAUSE_BEFORE_S, PAUSE_AFTER_S = 0.5, 2.5  # silence around the spoken question (after:
# room for a turn the end-of-turn model judges unfinished; the sender stops with the reply)
STAGES = ("stt", "llm_first_token", "first_piece_cut", "tts_first_chunk", "time_to_first_audio")
GOALS = {
    "ttfa_ratio_streaming_over_sequential_p50": 0.25,
    "voice_to_voice_p50_ms": 1000.0,  # was 1.2 s before preemptive turns
    "preemptive_on_over_off_p50": 0.75,
    "orchestration_overhead_p50_ms": 20.0,
    "realtime_over_native_voice_p50": 1.05,
    "telephony_over_native_voice_p50": 1.15,
    "webrtc_over_native_voice_p50": 1.1,
}
#: the phases that time another way in against the native socket: (phase, its name in
#: the figures, what it is, its row's label, its goal)
AGAINST_NATIVE = (
    ("realtime_vs_native", "openai_realtime", "/v1/realtime (OpenAI SDK)",
     "/v1/realtime: end of speech → first delta", "realtime_over_native_voice_p50"),
    ("telephony_vs_native", "telephony", "a phone call (Twilio Media Streams, μ-law 8 kHz)",
     "phone: end of speech → first media", "telephony_over_native_voice_p50"),
    ("webrtc_vs_native", "webrtc", "a WebRTC call (OpenAI's flow, Opus)",
     "WebRTC: end of speech → first sound", "webrtc_over_native_voice_p50"),
)
#: goals met from above (the others are "at most")
GOALS_AT_LEAST = {"answer_sheet_score": 0.8}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STT_MODELS = ("whisper-tiny.en", "whisper-base")

T = TypeVar("T")


class Budget:
    """The run's deadline; each turn gets what is left of it (at most TURN_TIMEOUT_S)."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + seconds
        self.exhausted = False
        self.errors: list[str] = []  # turns that raised, for the report

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    async def run(self, turn: Awaitable[T]) -> T | None:
        """``turn`` within the budget; None if it ran out (the budget marked spent) or failed.

        A turn that fails with an API, socket or timeout error counts as a failed turn and the
        run goes on; its error is kept for the report.
        """
        left = self.left()
        if left < 5:
            self.exhausted = True
            if asyncio.iscoroutine(turn):
                turn.close()
            return None
        try:
            return await asyncio.wait_for(turn, timeout=min(TURN_TIMEOUT_S, left))
        except TimeoutError:
            if left <= TURN_TIMEOUT_S:  # the budget's end, not a stuck turn
                self.exhausted = True
            else:
                self.errors.append(f"a turn took over {TURN_TIMEOUT_S:.0f} s")
            return None
        except (VoxlineAPIError, WebSocketException, httpx.HTTPError, OSError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return None


def completed(result: TurnResult | None) -> bool:
    """The turn ended with ``response.done`` (completed) and some audio reached the client."""
    if result is None or not result.events or not result.audio:
        return False
    last: Any = result.events[-1]
    return bool(last.type == "response.done" and last.data.status == "completed")


def first_sentence(result: TurnResult) -> str | None:
    data: Any = next((e.data for e in result.events if e.type == "response.sentence"), None)
    return data.text if data is not None else None


def stage_medians(turns: list[dict[str, float]]) -> dict[str, float | None]:
    """The p50 of each server-side stage over ``turns``."""
    return {name: round(statistics.median(v), 1) if (v := [t[name] for t in turns if name in t])
            else None for name in ("llm_first_token", "first_piece_cut", "tts_first_chunk")}


# ---- text-in TTFA, streaming against sequential ----------------------------------------------


def ask(client: VoxlineClient, question: str, mode: str) -> Awaitable[TurnResult]:
    return text_turn(client, question, speech_mode=mode, system_prompt=SEVERAL_SENTENCES,
                     sampling=PARAGRAPH_SAMPLING)


async def text_ttfa(client: VoxlineClient, turns: int, budget: Budget) -> dict[str, Any]:
    server: dict[str, list[float]] = {mode: [] for mode in MODES}
    client_side: dict[str, list[float]] = {mode: [] for mode in MODES}
    done: dict[str, list[float]] = {mode: [] for mode in MODES}
    failed = dict.fromkeys(MODES, 0)
    pieces: dict[str, list[int]] = {mode: [] for mode in MODES}
    stages_seen: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    samples: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    # silence a listener hears inside a reply: a short first piece must be followed in time
    waits: dict[str, list[float]] = {mode: [] for mode in MODES}
    warmed = [completed(await budget.run(ask(client, WARMUP_QUESTION, mode))) for mode in MODES]
    for i in range(turns):
        question = QUESTIONS[i % len(QUESTIONS)]
        # alternate which mode goes first: a prompt cache favours the second of a pair
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            result = await budget.run(ask(client, question, mode))
            if budget.exhausted:
                break
            if result is None or not completed(result):
                failed[mode] += 1
                continue
            stages = result.stages
            stages_seen[mode].append(stages)
            pieces[mode].append(sum(e.type == "response.sentence" for e in result.events))
            server[mode].append(stages["time_to_first_audio"])
            client_side[mode].append(stages["client_first_audio"])
            if "response_done" in stages:
                done[mode].append(stages["response_done"])
            waits[mode].append(sum(playback_stalls(result.events)))
            samples[mode].append({
                "question": question,
                "reply": result.reply.strip()[:200],
                "pieces": pieces[mode][-1],
                "first_piece": first_sentence(result),
                "ttfa_ms": stages["time_to_first_audio"],
                "playback_wait_ms": waits[mode][-1],
            })
        if budget.exhausted:
            break
    figures: dict[str, Any] = {"warmup_completed": all(warmed)}
    for mode in MODES:
        figures[mode] = {
            "turns": len(server[mode]),
            "failed": failed[mode],
            "server_ttfa_ms": percentiles_ms(server[mode]),
            "client_ttfa_ms": percentiles_ms(client_side[mode]),
            "response_done_ms": percentiles_ms(done[mode]),
            "pieces_per_reply_p50": statistics.median(pieces[mode]) if pieces[mode] else None,
            "stages_p50_ms": stage_medians(stages_seen[mode]),
            "replies_with_playback_wait": sum(w > 0 for w in waits[mode]),
            "playback_wait_ms": percentiles_ms(waits[mode]),
            "samples": samples[mode],
        }
    for side in ("server", "client"):
        stream = figures["streaming"][f"{side}_ttfa_ms"]
        seq = figures["sequential"][f"{side}_ttfa_ms"]
        figures[f"ratio_p50_{side}"] = (
            round(stream["p50"] / seq["p50"], 3) if stream and seq and seq["p50"] > 0 else None
        )
    return figures


# ---- voice-to-voice --------------------------------------------------------------------------


class FirstChunkClock:
    """An ``on_event`` callback: the first audio chunk's server ts and when it arrived (ms)."""

    def __init__(self) -> None:
        self.ts: int | None = None
        self.received_ms: float | None = None

    def __call__(self, event: Event) -> None:
        if event.type == "response.audio.chunk" and self.ts is None:
            self.received_ms = time.time() * 1000
            self.ts = event.ts

    @property
    def delivery_ms(self) -> float | None:
        if self.ts is None or self.received_ms is None:
            return None
        return self.received_ms - self.ts


def say_question(
    client: VoxlineClient, pcm: bytes, on_event: Callable[[Event], None] | None = None
) -> Awaitable[TurnResult]:
    """A voice turn: ``pcm`` (24 kHz) between pauses, streamed like a microphone."""
    return voice_turn(client, with_pauses(pcm, RATE, PAUSE_BEFORE_S, PAUSE_AFTER_S),
                      speech_end_s=PAUSE_BEFORE_S + len(pcm) / 2 / RATE, realtime=True,
                      on_event=on_event, speech_mode="streaming", sampling=SAMPLING)


class _VoiceFigures:
    """What the voice turns of one kind (preemptive on or off) measured."""

    def __init__(self) -> None:
        self.heard: list[float] = []
        self.split: dict[str, list[float]] = {name: [] for name in STAGES}
        self.rest: list[float] = []
        self.delivery: list[float] = []
        self.failed = 0
        self.discarded = 0
        self.samples: list[dict[str, Any]] = []
        #: each turn's end of speech → first audio in parts that add up to it
        self.parts: list[LatencyParts] = []


async def voice_to_voice(
    client: VoxlineClient, speech: dict[str, bytes], turns: int, budget: Budget,
    pause_ms: int | None = None, settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Voice turns alternating between preemptive turns on and off (the same load);
    ``pause_ms``: the preemptive sessions' ``preemptive_pause_ms`` (None: the default);
    ``settings``: more session settings for every voice session (``--settings``)."""
    kinds = {True: _VoiceFigures(), False: _VoiceFigures()}
    warmed = completed(await budget.run(say_question(client, speech[WARMUP_QUESTION])))
    for i in range(turns):
        for preemptive, figures in kinds.items():
            if not budget.exhausted:
                await _voice_turn(client, speech, QUESTIONS[i % len(QUESTIONS)], preemptive,
                                  figures, budget, pause_ms, settings)
    hesitant = {True: _VoiceFigures(), False: _VoiceFigures()}
    for _ in range(min(turns, HESITANT_TURNS)):
        for preemptive, figures in hesitant.items():
            if not budget.exhausted:
                await _voice_turn(client, speech, HESITANT_QUESTION, preemptive, figures,
                                  budget, pause_ms, settings)
    on, off = (_voice_summary(kinds[flag], warmed) for flag in (True, False))
    on_p50 = (on["voice_to_voice_ms"] or {}).get("p50")
    off_p50 = (off["voice_to_voice_ms"] or {}).get("p50")
    return {
        **on,
        "preemptive_pause_ms": pause_ms,
        "settings": settings or {},
        "preemptive_off": off,
        "preemptive_on_over_off_p50": round(on_p50 / off_p50, 3) if on_p50 and off_p50 else None,
        "hesitant": {
            "question": HESITANT_QUESTION, "hesitation_s": HESITATION_S,
            "preemptive_on": _voice_summary(hesitant[True], warmed),
            "preemptive_off": _voice_summary(hesitant[False], warmed),
        },
    }


def trimmed(pcm: bytes, floor: int = 300) -> bytes:
    """``pcm`` (PCM16) without the quiet the TTS leaves before and after the words."""
    samples = memoryview(pcm).cast("h")
    loud = [i for i, v in enumerate(samples) if abs(v) > floor]
    return pcm[2 * loud[0] : 2 * (loud[-1] + 1)] if loud else pcm


async def hesitant_speech(client: VoxlineClient) -> bytes:
    """HESITANT spoken by the server's TTS, its parts HESITATION_S of silence apart."""
    first, second = [trimmed(await client.speech(part, response_format="pcm"))
                     for part in HESITANT]
    return first + bytes(2 * int(RATE * HESITATION_S)) + second


async def _voice_turn(
    client: VoxlineClient,
    speech: dict[str, bytes],
    question: str,
    preemptive: bool,
    figures: _VoiceFigures,
    budget: Budget,
    pause_ms: int | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    clock = FirstChunkClock()
    discards: list[Event] = []

    def on_event(event: Event) -> None:
        clock(event)
        if event.type == "speculation.discarded":
            discards.append(event)

    pcm = with_pauses(speech[question], RATE, PAUSE_BEFORE_S, PAUSE_AFTER_S)
    pause = {"preemptive_pause_ms": pause_ms} if preemptive and pause_ms is not None else {}
    result = await budget.run(voice_turn(
        client, pcm, speech_end_s=PAUSE_BEFORE_S + len(speech[question]) / 2 / RATE,
        realtime=True, on_event=on_event, speech_mode="streaming", sampling=SAMPLING,
        preemptive_turns=preemptive, **pause, **(settings or {})))
    figures.discarded += len(discards)
    _add_voice_result(figures, question, result, clock, budget)


def _add_voice_result(
    figures: _VoiceFigures,
    question: str,
    result: TurnResult | None,
    clock: FirstChunkClock,
    budget: Budget,
) -> None:
    heard, split, rest, delivery, samples = (
        figures.heard, figures.split, figures.rest, figures.delivery, figures.samples)
    if budget.exhausted:
        return
    if result is None or not completed(result) or "stt" not in result.stages:
        figures.failed += 1
        return
    stages = result.stages
    heard.append(stages["client_first_audio"])
    for name in STAGES:
        split[name].append(stages[name])
    if (parts := TurnTimeline.of(result.events).parts()) is not None:
        figures.parts.append(parts)
    if clock.delivery_ms is not None:
        delivery.append(clock.delivery_ms)
        # end of speech → speech_stopped ts: the VAD's silence tail and the audio's way in
        rest.append(stages["client_first_audio"] - stages["time_to_first_audio"]
                    - clock.delivery_ms)
    samples.append({"question": question, "heard": result.transcript,
                    "reply": result.reply.strip()[:200],
                    "voice_to_voice_ms": round(stages["client_first_audio"], 1)})


def _voice_summary(figures: _VoiceFigures, warmed: bool) -> dict[str, Any]:
    heard, split, rest, delivery = figures.heard, figures.split, figures.rest, figures.delivery
    turns = len(heard) + figures.failed
    return {
        "warmup_completed": warmed,
        "turns": len(heard),
        "failed": figures.failed,
        "speculations_discarded": figures.discarded,
        "discarded_per_turn": round(figures.discarded / turns, 3) if turns else None,
        "voice_to_voice_ms": percentiles_ms(heard),
        "server_ttfa_ms": percentiles_ms(split["time_to_first_audio"]),
        "stages_p50_ms": {
            "vad_tail_and_audio_in": round(statistics.median(rest), 1) if rest else None,
            **{name: round(statistics.median(v), 1) if v else None for name, v in split.items()},
            "chunk_delivery": round(statistics.median(delivery), 1) if delivery else None,
        },
        "first_audio_parts": mean_parts(figures.parts),
        "samples": figures.samples,
    }


# ---- OpenAI Realtime (SDK) against the native socket --------------------------------------------


async def realtime_vs_native(
    client: VoxlineClient, url: str, speech: dict[str, bytes], turns: int, budget: Budget
) -> dict[str, Any]:
    """Voice turns alternately over both sockets, same questions, same engines, one run."""

    async def sdk_turn(pcm: bytes) -> float | None:
        audio = with_pauses(pcm, RATE, PAUSE_BEFORE_S, PAUSE_AFTER_S)
        turn = await sdk_voice_turn(url, audio, PAUSE_BEFORE_S + len(pcm) / 2 / RATE,
                                    max_output_tokens=SAMPLING["max_tokens"])
        return turn.heard_ms if turn.status == "completed" else None

    return await against_native(client, speech, turns, budget, "openai_realtime", sdk_turn)


async def telephony_vs_native(
    client: VoxlineClient, url: str, speech: dict[str, bytes], turns: int, budget: Budget
) -> dict[str, Any]:
    """Voice turns alternately over the native socket and as phone calls (Twilio Media
    Streams, μ-law at 8 kHz: ``_twilio_call.py``), same questions, same engines. A call's
    sampling is the server's ``VOXLINE_TELEPHONY__SESSION`` (the bench sets SAMPLING when
    it starts the server)."""

    def phone_turn(pcm: bytes) -> Awaitable[float | None]:
        silence = bytes(2 * int(RATE * PAUSE_BEFORE_S))
        return phone_voice_turn(url, silence + pcm, rate=RATE, timeout_s=TURN_TIMEOUT_S)

    return await against_native(client, speech, turns, budget, "telephony", phone_turn)


async def webrtc_vs_native(
    client: VoxlineClient, url: str, speech: dict[str, bytes], turns: int, budget: Budget
) -> dict[str, Any]:
    """Voice turns alternately over the native socket and as WebRTC calls (OpenAI's flow,
    an aiortc peer on loopback: ``_webrtc_call.py``), same questions, same engines; end of
    speech → the first reply frame with sound on the call's track. A call samples as the
    native turns do (greedy, as many tokens): its offer carries the ``session`` part
    OpenAI's clients may send; without it a call would sample at the session's default
    temperature, other replies with other first pieces to say."""

    def call_turn(pcm: bytes) -> Awaitable[float | None]:
        silence = bytes(2 * int(RATE * PAUSE_BEFORE_S))
        tail = bytes(2 * int(RATE * PAUSE_AFTER_S))
        return webrtc_voice_turn(url, silence + pcm + tail, rate=RATE,
                                 speech_s=PAUSE_BEFORE_S + len(pcm) / 2 / RATE,
                                 session=CALL_SESSION, timeout_s=TURN_TIMEOUT_S)

    return await against_native(client, speech, turns, budget, "webrtc", call_turn)


def against_native(
    client: VoxlineClient, speech: dict[str, bytes], turns: int, budget: Budget, name: str,
    other: Callable[[bytes], Awaitable[float | None]],
) -> Awaitable[dict[str, Any]]:
    """The same spoken questions alternately through the native socket and through
    ``other`` (end of speech → first audio on the client's clock, ``None`` if none):
    :func:`loadtests._paired_turns.paired_turns`, each turn within the budget."""

    async def native(pcm: bytes) -> float | None:
        result = await budget.run(say_question(client, pcm))
        return result.stages.get("client_first_audio") if completed(result) else None

    async def theirs(pcm: bytes) -> float | None:
        return await budget.run(other(pcm))

    questions = [speech[QUESTIONS[i % len(QUESTIONS)]] for i in range(turns)]
    return paired_turns(native, theirs, name, questions, speech[WARMUP_QUESTION],
                        lambda: budget.exhausted)


# ---- answer sheet and STT per model ---------------------------------------------------------


async def answer_sheet(client: VoxlineClient, limit: int, budget: Budget) -> dict[str, Any]:
    """The answer sheet as typed, text-only turns; scored on the spoken text."""
    from loadtests.bench_answers import LABEL, MARKUP, is_right, load_sheet
    from pipeline.reply import SentenceBufferConfig, split_text

    rows: list[dict[str, Any]] = []
    failed = 0
    for item in load_sheet()[:limit]:
        result = await budget.run(text_turn(client, item["q"], realtime_tts=False,
                                            sampling={"seed": 1}))
        if budget.exhausted:
            break
        last: Any = result.events[-1] if result is not None and result.events else None
        if last is None or last.type != "response.done" or last.data.status != "completed":
            failed += 1  # text only: no audio to wait for
            continue
        assert result is not None
        spoken = " ".join(split_text(result.reply, SentenceBufferConfig(language="en")))
        rows.append({"question": item["q"], "spoken": spoken,
                     "right": is_right(spoken, item["expected"]),
                     "markup_spoken": bool(MARKUP.search(spoken)),
                     "label_spoken": bool(LABEL.search(spoken))})
    n = len(rows)
    return {
        "questions": n,
        "failed": failed,
        "score": round(sum(r["right"] for r in rows) / n, 3) if n else None,
        "markup_spoken": sum(r["markup_spoken"] for r in rows),
        "label_spoken": sum(r["label_spoken"] for r in rows),
        "wrong": [r for r in rows if not r["right"]][:20],
    }


async def stt_models(speech: dict[str, bytes], budget: Budget,
                     models: tuple[str, ...] = STT_MODELS) -> dict[str, Any]:
    """Each spoken question transcribed by tiny.en and by base, here (int8, warm)."""
    from pipeline.engines import Transcriber, create_engine
    from schemas import TranscriptionRequest

    figures: dict[str, Any] = {}
    for model in models:
        if budget.left() < 30:
            figures[model] = None
            continue
        stt = create_engine("stt", "faster-whisper", {"model": model, "cpu_threads": 2})
        assert isinstance(stt, Transcriber)
        await stt.load()
        seconds: list[float] = []
        heard: dict[str, str] = {}
        try:
            for question in QUESTIONS:
                if question not in speech:
                    continue
                started = time.perf_counter()
                request = TranscriptionRequest(audio=speech[question], sample_rate=RATE,
                                               language="en")
                text = " ".join([s.text async for s in stt.transcribe(request)])
                seconds.append((time.perf_counter() - started) * 1000)
                heard[question] = text
        finally:
            await stt.close()
        figures[model] = {"transcribe_ms": percentiles_ms(seconds), "heard": heard}
    return figures


# ---- orchestration overhead ------------------------------------------------------------------


async def overhead_turn(client: VoxlineClient, question: str) -> dict[str, float] | None:
    """One streaming text turn on an open session, every relevant moment on one clock (ms).

    The socket is known to be served (a ``session.update`` came back as ``session.updated``)
    before the send is stamped, so opening the session is not counted as the turn's.
    """
    session = await client.create_session(output_sample_rate=RATE, sampling=SAMPLING)
    events_seen: list[Event] = []
    sent: float | None = None
    first_audio_received: float | None = None
    first_chunk_ms = 0.0
    async with client.connect(session) as conn:
        await conn.send({"type": "session.update", "settings": {"speech_mode": "streaming"}})
        async for event in conn.events():
            if sent is None:  # not yet asked
                if event.type == "error":
                    return None
                if event.type == "session.updated":
                    sent = time.time() * 1000
                    await conn.send_text(question)
                continue
            if event.type == "response.audio.chunk" and first_audio_received is None:
                first_audio_received = time.time() * 1000
                data: Any = event.data
                first_chunk_ms = len(data.audio) / 2 / data.sample_rate * 1000
            events_seen.append(event)
            if event.type in FINAL_TYPES or (event.type == "error" and event.id is None):
                break
    first = TurnTimeline.of(events_seen).first
    needed = {"input.text", "response.started", "response.audio.chunk"}
    if sent is None or first_audio_received is None or not needed <= first.keys():
        return None
    parts = {
        "ingress_ms": first["input.text"] - sent,
        "dispatch_ms": float(first["response.started"] - first["input.text"]),
        "delivery_ms": first_audio_received - first["response.audio.chunk"],
    }
    parts["total_ms"] = sum(parts.values())
    parts["first_chunk_audio_ms"] = first_chunk_ms  # what the delivery carried
    return parts


async def overhead(client: VoxlineClient, turns: int, budget: Budget) -> dict[str, Any]:
    parts: dict[str, list[float]] = {}
    failed = 0
    warmed = await budget.run(overhead_turn(client, WARMUP_QUESTION)) is not None
    for i in range(turns):
        measured = await budget.run(overhead_turn(client, QUESTIONS[i % len(QUESTIONS)]))
        if budget.exhausted:
            break
        if measured is None:
            failed += 1
            continue
        for name, value in measured.items():
            parts.setdefault(name, []).append(value)
    return {
        "warmup_completed": warmed,
        "turns": len(parts.get("total_ms", [])),
        "failed": failed,
        **{name: percentiles_ms(parts.get(name, [])) for name in
           ("total_ms", "ingress_ms", "dispatch_ms", "delivery_ms", "first_chunk_audio_ms")},
    }


# ---- the run ---------------------------------------------------------------------------------


async def bench(url: str, turns: int, budget: Budget, say: Callable[[str], None],
                only: str | None = None, answers: int = 36,
                pause_ms: int | None = None,
                models: tuple[str, ...] = STT_MODELS,
                settings: dict[str, Any] | None = None) -> dict[str, Any]:
    figures: dict[str, Any] = {"turns_per_kind": turns}
    async with VoxlineClient(url) as client:
        try:
            ready = await client.ready()
        except (httpx.HTTPError, ValueError) as exc:
            raise SystemExit(f"no Voxline server answers at {url}: {exc}") from None
        if not ready.get("ready"):
            raise SystemExit(f"the server at {url} is not ready: {ready}")
        figures["engines"] = {s: ready.get(s) for s in ("vad", "stt", "llm", "tts")}
        say("speaking the questions (the server's TTS, once each)")
        speech = {q: await client.speech(q, response_format="pcm")
                  for q in (WARMUP_QUESTION, *QUESTIONS[:turns])}
        if only in (None, "voice_to_voice"):
            speech[HESITANT_QUESTION] = await hesitant_speech(client)
        figures["speech_s"] = {q: round(len(pcm) / 2 / RATE, 2) for q, pcm in speech.items()}
        phases: tuple[tuple[str, Callable[[], Awaitable[dict[str, Any]]]], ...] = (
            ("text_ttfa", lambda: text_ttfa(client, turns, budget)),
            ("voice_to_voice", lambda: voice_to_voice(client, speech, turns, budget, pause_ms,
                                                      settings)),
            ("orchestration_overhead", lambda: overhead(client, turns, budget)),
            ("realtime_vs_native", lambda: realtime_vs_native(client, url, speech, turns,
                                                              budget)),
            ("telephony_vs_native", lambda: telephony_vs_native(client, url, speech, turns,
                                                                budget)),
            ("webrtc_vs_native", lambda: webrtc_vs_native(client, url, speech, turns,
                                                          budget)),
            ("answer_sheet", lambda: answer_sheet(client, answers, budget)),
            ("stt_models", lambda: stt_models(speech, budget, models)),
        )
        for name, phase in phases:
            if budget.exhausted or only not in (None, name):
                figures[name] = None
                continue
            say(f"measuring {name.replace('_', ' ')}, after a warm-up turn "
                f"({budget.left():.0f} s of budget left)")
            load = os.getloadavg()[0]
            figures[name] = await phase()
            # other work on the machine shows here: the app alone keeps ~2 cores busy
            figures[name]["loadavg_1m"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return figures


def judge(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal with what was measured; ``pass`` is None where nothing was."""
    text = figures.get("text_ttfa") or {}
    voice = figures.get("voice_to_voice") or {}
    cost = figures.get("orchestration_overhead") or {}
    measured = {
        "ttfa_ratio_streaming_over_sequential_p50": text.get("ratio_p50_server"),
        "voice_to_voice_p50_ms": (voice.get("voice_to_voice_ms") or {}).get("p50"),
        "preemptive_on_over_off_p50": voice.get("preemptive_on_over_off_p50"),
        "orchestration_overhead_p50_ms": (cost.get("total_ms") or {}).get("p50"),
        **{goal: (figures.get(phase) or {}).get("ratio_p50")
           for phase, _, _, _, goal in AGAINST_NATIVE},
    }
    goals: dict[str, dict[str, Any]] = {
        name: {"at_most": GOALS[name], "measured": value,
               "pass": None if value is None else value <= GOALS[name]}
        for name, value in measured.items()
    }
    sheet = figures.get("answer_sheet") or {}
    score = sheet.get("score")
    goals["answer_sheet_score"] = {
        "at_least": GOALS_AT_LEAST["answer_sheet_score"], "measured": score,
        "markup_spoken": sheet.get("markup_spoken"),
        "pass": None if score is None else (
            score >= GOALS_AT_LEAST["answer_sheet_score"] and not sheet.get("markup_spoken")),
    }
    pieces = (text.get("streaming") or {}).get("pieces_per_reply_p50")
    if pieces is not None and pieces <= 1:
        goals["ttfa_ratio_streaming_over_sequential_p50"]["note"] = (
            "replies were one piece: streaming cannot start before sequential")
    return goals


def print_table(figures: dict[str, Any]) -> None:
    def row(label: str, p: dict[str, float] | None, note: str = "") -> None:
        if p is None:
            print(f"  {label:44} (not measured)")
        else:
            print(f"  {label:44} p50 {p['p50']:7.0f} ms   p95 {p['p95']:7.0f} ms  {note}")

    engines = ", ".join(
        f"{s}: {v.get('engine') if isinstance(v, dict) else v}"
        for s, v in figures["engines"].items())
    print(f"\nengines: {engines}")
    if text := figures.get("text_ttfa"):
        print("text in → first audio (TTFA)")
        for mode in MODES:
            f = text[mode]
            row(f"{mode}, server ts ({f['turns']} turns, {f['failed']} failed)",
                f["server_ttfa_ms"])
            row(f"{mode}, client", f["client_ttfa_ms"])
            row(f"{mode}, whole response (server)", f["response_done_ms"])
            split = ", ".join(f"{k} {v:.0f}" for k, v in f["stages_p50_ms"].items()
                              if v is not None)
            print(f"    pieces per reply p50 {f['pieces_per_reply_p50']}; stage p50 ms: {split}")
            if (wait := f.get("playback_wait_ms")) is not None:
                print(f"    silence inside a reply (a player without a buffer): "
                      f"{f['replies_with_playback_wait']} of {f['turns']} replies, "
                      f"p50 {wait['p50']:.0f} ms, p95 {wait['p95']:.0f} ms a reply")
        print(f"  streaming / sequential p50: server {text['ratio_p50_server']}, "
              f"client {text['ratio_p50_client']}  (goal ≤ 0.25)")
    if voice := figures.get("voice_to_voice"):
        print(f"voice to voice ({voice['turns']} turns, {voice['failed']} failed)")
        row("end of speech → first audio (client)", voice["voice_to_voice_ms"], "(goal p50 ≤ 1000)")
        off = voice["preemptive_off"]
        row(f"same, preemptive turns off ({off['turns']} turns)", off["voice_to_voice_ms"])
        print(f"  preemptive on / off p50: {voice['preemptive_on_over_off_p50']} (goal ≤ 0.75); "
              f"speculations discarded per turn: {voice['discarded_per_turn']}")
        hesitant = voice["hesitant"]
        for kind in ("preemptive_on", "preemptive_off"):
            f = hesitant[kind]
            row(f"hesitant, {kind.replace('_', ' ')} ({f['turns']} turns)", f["voice_to_voice_ms"],
                f"discarded per turn {f['discarded_per_turn']}")
        row("speech_stopped → first audio (server)", voice["server_ttfa_ms"])
        print("  stage split, p50:")
        for name, value in voice["stages_p50_ms"].items():
            shown = "-" if value is None else f"{value:7.0f} ms"
            print(f"    {name:42} {shown}")
        if split := voice["first_audio_parts"]:
            sum_text = " + ".join(f"{k} {v:.0f}" for k, v in split["parts_mean_ms"].items())
            print(f"  speech_stopped → first audio, mean, in parts that add up: {sum_text} = "
                  f"{split['total_mean_ms']:.0f} ms (preemptive head start, mean: "
                  f"{split['head_start_mean_ms']:.0f} ms)")
    if cost := figures.get("orchestration_overhead"):
        print(f"orchestration overhead, typed turn ({cost['turns']} turns, "
              f"{cost['failed']} failed)")
        row("total (critical path outside engines)", cost["total_ms"], "(goal p50 ≤ 20)")
        row("send → input.text", cost["ingress_ms"])
        row("input.text → response.started", cost["dispatch_ms"])
        row("first chunk ts → received", cost["delivery_ms"])
        if chunk := cost["first_chunk_audio_ms"]:
            print(f"    (a first chunk holds {chunk['p50']:.0f} ms of audio, p50)")
    for phase, name, title, label, goal in AGAINST_NATIVE:
        if found := figures.get(phase):
            print(f"voice turn, {title} against the native socket "
                  f"(turns {found['turns']}, failed {found['failed']})")
            row("native: end of speech → first audio", found["native_ms"])
            row(label, found[f"{name}_ms"],
                f"(ratio p50 {found['ratio_p50']}, goal ≤ {GOALS[goal]})")
            if (paired := found.get("paired") or {}).get("added_p50_ms") is not None:
                print(f"  each pair, {name} - native (the same question, one after the "
                      f"other): p50 {paired['added_p50_ms']:+.0f} ms of "
                      f"{len(paired['added_ms'])}")
    if sheet := figures.get("answer_sheet"):
        print(f"answer sheet: {sheet['score']} of {sheet['questions']} questions right, "
              f"markup spoken in {sheet['markup_spoken']}")
    for model, stt in (figures.get("stt_models") or {}).items():
        if isinstance(stt, dict):
            row(f"STT {model} (this process, warm)", stt["transcribe_ms"])
    for name, goal in figures["goals"].items():
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[goal["pass"]]
        bound = f"≥ {goal['at_least']}" if "at_least" in goal else f"≤ {goal['at_most']}"
        print(f"goal {name}: {goal['measured']} ({bound}): {verdict}")
    for error in figures["turn_errors"]:
        print(f"failed turn: {error}")
    if not figures["complete"]:
        print(f"the budget of {figures['budget_s']:.0f} s ran out: figures are partial")


def loopback_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK:
        raise SystemExit(f"--url must be an http URL on this machine (127.0.0.1/localhost): {url}")
    return url.rstrip("/")


async def _on_scripted_app(
    measure: Callable[[str], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """``measure`` against the API on scripted engines in a child process (smoke mode)."""
    from loadtests._gateway import child_gateway
    from voxline.redis_server import redis_url_or_server

    with redis_url_or_server(os.environ.get("VOXLINE_REDIS_URL")) as redis_url, \
            child_gateway(redis_url) as (url, _pid):
        return await measure(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server on this machine; default: start one")
    parser.add_argument("--port", type=int, help="the started server's (default: a free one)")
    parser.add_argument("--turns", type=int, default=5, help=f"turns of each kind (≤ {MAX_TURNS})")
    parser.add_argument("--budget-s", type=float, default=600,
                        help="seconds for the whole run, server start included")
    parser.add_argument("--stt-model", help="VOXLINE_STT__MODEL of the started server")
    parser.add_argument("--only", choices=("text_ttfa", "voice_to_voice",
                                           "orchestration_overhead", "realtime_vs_native",
                                           "telephony_vs_native", "webrtc_vs_native",
                                           "answer_sheet", "stt_models"),
                        help="measure this one phase (the others are reported as not run)")
    parser.add_argument("--answers", type=int, default=36,
                        help="questions of the answer sheet to ask (0: none)")
    parser.add_argument("--pause-ms", type=int,
                        help="preemptive_pause_ms of the preemptive voice sessions "
                        "(default: the session default)")
    add_settings_flag(parser, "the voice sessions")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.url, args.turns, args.answers = None, 1, 2
        args.budget_s = min(args.budget_s, 150)
    if not 1 <= args.turns <= MAX_TURNS:
        parser.error(f"--turns must be between 1 and {MAX_TURNS}")
    if args.url and (args.stt_model or args.port):
        parser.error("--stt-model and --port apply to a server the bench starts, not to --url")
    budget = Budget(args.budget_s)
    load_start = os.getloadavg()

    def say(text: str) -> None:
        print(text, flush=True)

    def measure(url: str) -> dict[str, Any]:
        return asyncio.run(bench(url, args.turns, budget, say, args.only,
                                 max(0, args.answers), args.pause_ms,
                                 settings=args.settings))

    if args.smoke:
        figures = asyncio.run(_on_scripted_app(lambda url: bench(
            url, args.turns, budget, say, args.only, args.answers, models=STT_MODELS[:1])))
        figures["server"] = {"started_by_bench": True, "engines": "scripted (smoke mode)"}
    elif args.url:
        figures = measure(loopback_url(args.url))
        figures["server"] = {"url": args.url, "started_by_bench": False}
    else:
        if args.stt_model:  # before Settings(): the replicas read the same environment
            os.environ["VOXLINE_STT__MODEL"] = args.stt_model
        # phone calls take their settings from the server: the same sampling as the others
        os.environ.setdefault("VOXLINE_TELEPHONY__SESSION", json.dumps({"sampling": SAMPLING}))
        # every WebRTC turn is a new call from this one address: local_app allows for it
        port = {"port": args.port} if args.port else {}
        with local_app(say, ready_timeout_s=max(budget.left(), 30), **port) as server:
            say(f"app ready after {budget.elapsed():.0f} s")
            figures = measure(server.url)
        figures["server"] = {"url": server.url, "started_by_bench": True,
                             "stt_model": args.stt_model}
    figures["budget_s"] = args.budget_s
    figures["elapsed_s"] = round(budget.elapsed(), 1)
    figures["complete"] = not budget.exhausted
    figures["turn_errors"] = budget.errors[:20]
    figures["machine_load"] = {"cpus": os.cpu_count(), "loadavg_1m_start": load_start[0],
                               "loadavg_1m_end": os.getloadavg()[0]}
    figures["goals"] = judge(figures)
    print_table(figures)
    print(f"report: {write_report('bench_latency', figures)}")
    if args.smoke and (missing := unmeasured(figures)):
        raise SystemExit(f"smoke: nothing measured for {', '.join(missing)}")


def unmeasured(figures: dict[str, Any]) -> list[str]:
    """The phases that measured no turn (smoke mode: each must measure one)."""
    text, voice = figures.get("text_ttfa") or {}, figures.get("voice_to_voice") or {}
    turns = {
        "text_ttfa": min((text.get(mode) or {}).get("turns", 0) for mode in MODES),
        "voice_to_voice": min(voice.get("turns", 0),
                              (voice.get("preemptive_off") or {}).get("turns", 0)),
        "orchestration_overhead": (figures.get("orchestration_overhead") or {}).get("turns", 0),
        **{phase: min(((figures.get(phase) or {}).get("turns") or {"": 0}).values())
           for phase, *_ in AGAINST_NATIVE},
        "answer_sheet": (figures.get("answer_sheet") or {}).get("questions", 0),
        "stt_models": len(figures.get("stt_models") or {}),
    }
    return [name for name, count in turns.items() if not count]


if __name__ == "__main__":
    main()
