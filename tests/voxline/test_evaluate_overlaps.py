"""``voxline evaluate``'s speech over replies: two logged sessions, one whose listener
said "mm-hm" over the reply (a backchannel) and one who interrupted (a barge-in), tried
on a candidate that allows shorter backchannels and one whose transcriber hears the
interruption as a hum. The expected counts follow from the live session's rule, by hand."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.engines.registry import ENGINES
from pipeline.log import EventLog
from schemas import EventLogSettings, SessionSettings, Settings
from tests.support.audio_fixtures import tone
from tests.support.engines import ScriptedSTT
from tests.support.sessions import spoken_over_reply
from voxline.candidates import parse_candidate
from voxline.evaluate_run import run_evaluation

pytestmark = pytest.mark.redis
CONFIRMED = SessionSettings(interruptions="confirmed")


class HearsAHum(ScriptedSTT):
    """A candidate's transcriber that hears every utterance as a hum."""

    last: HearsAHum | None = None

    def __init__(self, **_: Any) -> None:
        super().__init__("Mm-hmm.")
        HearsAHum.last = self


class HearsTheLog(ScriptedSTT):
    """The server's transcriber here: it hears what the interruption was logged as."""

    def __init__(self, **_: Any) -> None:
        super().__init__("Wait, what about Rome?")


@pytest.fixture
def scripted_stt(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, cls in (("hears-a-hum", HearsAHum), ("hears-the-log", HearsTheLog)):
        monkeypatch.setitem(ENGINES["stt"], name, f"{__name__}:{cls.__name__}")


async def test_backchannels_and_barge_ins_judged_again_by_each_candidate(
    event_log: EventLog, key_prefix: str, redis_url: str, scripted_stt: None,
) -> None:
    nod = await spoken_over_reply(event_log, "eo-nod", "Mm-hmm.",
                                  tone(0.4, True) + tone(0.8, False), CONFIRMED,
                                  until="input.speech_stopped")
    cut = await spoken_over_reply(event_log, "eo-cut", "Wait, what about Rome?",
                                  tone(0.4, True) + tone(0.8, False), CONFIRMED)
    assert nod and cut
    settings = Settings(redis_url=redis_url, log=EventLogSettings(key_prefix=key_prefix),
                        stt={"engine": "hears-the-log"}, turn={"engine": "none"})
    candidates = [parse_candidate("strict=backchannel_max_ms=300"),
                  parse_candidate('hum={"stt_model": "any", "stt_engine": "hears-a-hum"}')]

    report = await run_evaluation(["eo-nod", "eo-cut"], candidates, settings, in_process=True)

    logged = report["logged"]["turn_taking"]
    # both sessions' overlaps, though only the barge-in's session has audio to replay
    assert report["skipped"] == {"eo-nod": "no audio in its log (none spoken, or not kept)"}
    assert (logged["overlaps"], logged["backchannels"], logged["barge_ins"]) == (2, 1, 1)
    strict, hum = (report["candidates"][n]["turn_taking"] for n in ("strict", "hum"))
    # 0.4 s of "mm-hm" is longer than 300 ms: it would have cut the reply
    assert (strict["backchannels"], strict["barge_ins"], strict["overlaps_changed"]) == (0, 2, 1)
    # heard as a hum, the interruption (0.4 s, under 1.2 s) would have let the reply go on
    assert (hum["backchannels"], hum["barge_ins"], hum["overlaps_changed"]) == (2, 0, 1)
    assert hum["turns"] == logged["turns"]  # no turn patch: the rest is as logged
    heard = HearsAHum.last
    assert heard is not None
    prompted = [r for r in heard.requests if r.prompt]
    assert len(prompted) == 1 and prompted[0].quick  # the barge-in's audio, as live judges it
