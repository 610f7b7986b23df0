"""The turn policy seam on its own: which policy the factory builds from the settings and
the engines, and what each decides at a pause (the thresholds and the fallbacks). The
live session and the replay (test_turn_detection, test_turn_judge_text, test_evaluation)
show the same decisions end to end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pipeline.audio import SpeechPause
from pipeline.turntaking import (
    AudioModelPolicy,
    SilencePolicy,
    SmartPolicy,
    TextJudgePolicy,
    turn_policy,
)
from schemas import SessionSettings
from tests.support.engines import HeardAudio, ScriptedTextTurn, ScriptedTurn

RATE = 16000
PAUSE = SpeechPause(audio_ms=900, audio=b"\0\0" * 1600, duration_s=0.1, start_ms=800,
                    end_bytes=3200)


def words(text: str | Exception) -> Callable[[bytes, int], Awaitable[str]]:
    async def transcribe(audio: bytes, sample_rate: int) -> str:
        if isinstance(text, Exception):
            raise text
        return text
    return transcribe


def test_the_factory_builds_silence_without_a_model_or_when_asked() -> None:
    settings = SessionSettings()
    assert isinstance(turn_policy(lambda: settings, None, RATE), SilencePolicy)
    silence = SessionSettings(turn_detection="silence")
    policy = turn_policy(lambda: silence, ScriptedTurn(), RATE)
    assert isinstance(policy, SilencePolicy) and policy.judge is None
    assert not policy.judges_pauses and policy.take() is None


def test_the_factory_builds_the_combination_where_there_is_a_model() -> None:
    settings = SessionSettings()
    policy = turn_policy(lambda: settings, ScriptedTurn(), RATE)
    assert isinstance(policy, SmartPolicy) and policy.judge is policy
    assert isinstance(policy.sound, AudioModelPolicy) and policy.words is None  # no text model
    policy = turn_policy(lambda: settings, ScriptedTurn(), RATE, transcribe=words("Hi."),
                         text=ScriptedTextTurn())
    assert isinstance(policy, SmartPolicy) and isinstance(policy.words, TextJudgePolicy)


async def test_the_audio_model_decides_by_its_threshold_and_falls_back_on_failure() -> None:
    settings = SessionSettings(turn_judge="audio")
    policy = turn_policy(lambda: settings, ScriptedTurn(0.9, 0.1, None), RATE)
    assert await policy(PAUSE) == settings.turn_complete_ms and policy.take() == 0.9
    assert await policy(PAUSE) is None and policy.take() == 0.1
    assert await policy(PAUSE) == settings.end_of_speech_ms and policy.take() is None


async def test_text_cues_keep_a_complete_sounding_turn_open() -> None:
    settings = SessionSettings(turn_judge="audio", turn_text_cues=True)
    policy = turn_policy(lambda: settings, ScriptedTurn(0.9), RATE,
                         transcribe=words("I'd like a table for"))
    assert await policy(PAUSE) is None and policy.take() == 0.9
    policy = turn_policy(lambda: settings, ScriptedTurn(0.9), RATE,
                         transcribe=words(RuntimeError("no words")))
    assert await policy(PAUSE) == settings.turn_complete_ms  # the model's verdict stands


async def test_the_words_judge_where_the_settings_say_so_at_each_pause() -> None:
    current = SessionSettings(turn_judge="text")
    turn, text = ScriptedTurn(0.1), ScriptedTextTurn(0.9)
    policy = turn_policy(lambda: current, turn, RATE, transcribe=words("Book it."), text=text)
    assert await policy(PAUSE) == current.turn_complete_ms and policy.take() == 0.9
    assert text.read == ["Book it."] and not turn.heard
    current = SessionSettings(turn_judge="audio")  # changed between two pauses
    assert await policy(PAUSE) is None and policy.take() == 0.1


async def test_the_text_judge_falls_back_without_words() -> None:
    settings = SessionSettings(turn_judge="text")
    policy = turn_policy(lambda: settings, ScriptedTurn(), RATE, transcribe=words("  "),
                         text=ScriptedTextTurn())
    assert await policy(PAUSE) == settings.end_of_speech_ms and policy.take() is None
    policy = turn_policy(lambda: settings, ScriptedTurn(), RATE, transcribe=words("Can you?"),
                         text=ScriptedTextTurn())
    assert await policy(PAUSE) is None and policy.take() == 0.0  # reads unfinished


async def test_the_words_judged_at_a_pause_are_of_the_utterance_as_long_as_its_end() -> None:
    """The judges hear what a preemptive reply hears and the end will carry: the pause's
    audio with the post-padding still to come as silence (SpeechPause.padded_audio)."""
    pause = SpeechPause(audio_ms=900, audio=b"\1\0" * 1600, duration_s=0.1, start_ms=800,
                        end_bytes=6400)
    transcribe = HeardAudio("I'd like a table for")
    for settings in (SessionSettings(turn_judge="audio", turn_text_cues=True),
                     SessionSettings(turn_judge="text")):
        policy = turn_policy(lambda settings=settings: settings, ScriptedTurn(0.9), RATE,
                             transcribe=transcribe, text=ScriptedTextTurn())
        assert await policy(pause) is None
    heard = transcribe.heard
    assert heard == [pause.padded_audio] * 2 and len(heard[0]) == pause.end_bytes
