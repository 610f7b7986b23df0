"""The text end-of-turn engine on the packaged Gemma 3 270M: a whole request reads
complete and a cut-off one does not, in English and German; a clause that requests often
go on past is not taken for a whole request at the default threshold; no words are no turn; a
transcript of any length is read to its bounded end; an unloaded engine says so."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.engines import TextTurnDetector, create_engine
from pipeline.engines.turn_detection.llama_turn import LlamaTextTurnDetector
from schemas import EngineError, ErrorCode, SessionSettings


@pytest.fixture(scope="module")
def detector() -> LlamaTextTurnDetector:
    engine = create_engine("turn_text", "llama-cpp")
    assert isinstance(engine, LlamaTextTurnDetector) and isinstance(engine, TextTurnDetector)
    asyncio.run(engine.load())
    return engine


@pytest.mark.parametrize(("whole", "cut"), [
    ("What is the capital of France?", "I would like to know."),
    ("Why is the sky blue?", "I'd like to book a table for"),
    ("Was ist die Hauptstadt von Frankreich?", "Ich möchte wissen."),
])
async def test_a_whole_request_reads_more_complete_than_a_cut_off_one(
    detector: LlamaTextTurnDetector, whole: str, cut: str
) -> None:
    complete, unfinished = await detector.completion(whole), await detector.completion(cut)
    assert 0.0 <= unfinished < complete <= 1.0
    # the punctuation Whisper writes at any stop is not what decides
    assert await detector.completion(whole.rstrip("?.")) == pytest.approx(complete)


@pytest.mark.parametrize(("whole", "clause"), [
    # a list's first item, and a hallucinated end Whisper wrote after "… for," and a pause
    ("What is the capital of France?", "I need to buy eggs."),
    ("Please set a timer for 10 minutes.", "I'd like to book a table for it."),
])
async def test_a_clause_requests_often_go_on_past_is_not_a_whole_request(
    detector: LlamaTextTurnDetector, whole: str, clause: str
) -> None:
    # with only short requests in its lines the model read both clauses as whole (0.56
    # and 0.73), and a speaker pausing after them was cut off (bench_turn_taking)
    threshold = SessionSettings().turn_text_threshold
    assert await detector.completion(clause) < threshold <= await detector.completion(whole)


async def test_no_words_are_no_turn_and_a_long_transcript_is_read_to_its_end(
    detector: LlamaTextTurnDetector,
) -> None:
    assert await detector.completion("") == 0.0
    assert await detector.completion(" ... ") == 0.0
    long = "and then we went to the market " * 200 + "What is the capital of France?"
    assert await detector.completion(long) > 0.5  # its last max_text_tokens decide
    # the cached lines are intact after it: the same verdict as before
    assert await detector.completion("I would like to know.") < 0.5


async def test_an_unloaded_engine_says_so() -> None:
    with pytest.raises(EngineError) as caught:
        await LlamaTextTurnDetector().completion("What is the capital of France?")
    assert caught.value.code == ErrorCode.TURN_DETECTION_FAILED
    with pytest.raises(Exception, match="max_text_tokens"):
        LlamaTextTurnDetector(max_text_tokens=2)
