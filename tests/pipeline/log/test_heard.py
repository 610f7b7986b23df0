"""What a listener heard of a reply, from the position its audio was played to."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import schemas as s
from pipeline.log import fold
from pipeline.log.heard import heard_text

SENTENCES = {0: "Paris is the capital.", 1: "It is lovely in spring, they say."}
ENDS = {0: 1000, 1: 2400}  # ms


def test_whole_sentences_then_words_in_proportion() -> None:
    assert heard_text(SENTENCES, ENDS, 0) == ""
    assert heard_text(SENTENCES, ENDS, 999) == "Paris is the"  # 4 words x 0.999: 3
    assert heard_text(SENTENCES, ENDS, 1000) == "Paris is the capital."
    # 7 words over 1400 ms: 700 ms in, 3 words heard
    assert heard_text(SENTENCES, ENDS, 1700) == "Paris is the capital. It is lovely"
    whole = "Paris is the capital. It is lovely in spring, they say."
    assert heard_text(SENTENCES, ENDS, 2400) == whole
    assert heard_text(SENTENCES, ENDS, 10_000) == heard_text(SENTENCES, ENDS, 2400)


def test_a_sentence_without_audio_ends_where_the_one_before_did() -> None:
    sentences = {0: "One.", 1: "Two.", 2: "Three four."}
    assert heard_text(sentences, {0: 500, 2: 1500}, 500) == "One. Two."
    assert heard_text(sentences, {0: 500, 2: 1500}, 1000) == "One. Two. Three"


@given(
    texts=st.lists(st.text(alphabet="ab .", min_size=0, max_size=30), min_size=1, max_size=6),
    durations=st.lists(st.integers(min_value=0, max_value=2000), min_size=6, max_size=6),
    first=st.integers(min_value=0, max_value=13_000),
    second=st.integers(min_value=0, max_value=13_000),
)
def test_heard_grows_with_the_position_and_is_a_prefix_of_the_whole(
    texts: list[str], durations: list[int], first: int, second: int
) -> None:
    sentences = dict(enumerate(texts))
    ends, at = {}, 0
    for index in sentences:
        at += durations[index]
        ends[index] = at
    whole = " ".join(t.strip() for t in texts if t.strip()).split()
    early, late = sorted((first, second))
    heard_early = heard_text(sentences, ends, early).split()
    heard_late = heard_text(sentences, ends, late).split()
    assert heard_late[: len(heard_early)] == heard_early
    assert whole[: len(heard_late)] == heard_late
    assert heard_text(sentences, ends, at).split() == whole


def _chunk(turn: str, sentence: int, index: int, **fields: object) -> s.ResponseAudioChunk:
    data = s.AudioChunkData(sample_rate=16000, sentence_index=sentence, chunk_index=index,
                            audio=bytes(3200), **fields)  # 100 ms of PCM16
    return s.ResponseAudioChunk(session_id="h", turn_id=turn, data=data)


def test_the_fold_places_chunks_and_the_history_holds_what_was_heard() -> None:
    events: list[s.EventBase] = [
        s.SessionCreated(session_id="h", data=s.SessionCreatedData(settings=s.SessionSettings())),
        s.InputText(session_id="h", turn_id="t1", data=s.InputTextData(text="Hi")),
        s.ResponseStarted(session_id="h", turn_id="t1"),
        *(s.ResponseSentence(session_id="h", turn_id="t1", data=s.SentenceData(index=i, text=t))
          for i, t in SENTENCES.items()),
        _chunk("t1", 0, 0, end_ms=1000),
        _chunk("t1", 1, 1),  # a log older than end_ms: 100 ms of PCM16 after the last
        s.ResponseDone(session_id="h", turn_id="t1",
                       data=s.ResponseDoneData(text=" ".join(SENTENCES.values()))),
        _chunk("t1", 0, 2, end_ms=9000),  # narration after response.done: not the reply
    ]
    state = fold("h", events)  # type: ignore[arg-type]
    turn = state.turns["t1"]
    assert (turn.sentence_ends_ms, turn.audio_ms) == ({0: 1000, 1: 1100}, 1100)
    assert turn.played_ms is None
    assert turn.heard(1000) == "Paris is the capital."
    truncated = s.ResponseTruncated(session_id="h", turn_id="t1", data=s.ResponseTruncatedData(
        audio_end_ms=1000, audio_ms=1100, text_heard=turn.heard(1000)))
    state = fold("h", [*events, truncated])  # type: ignore[list-item]
    assert state.history()[-1] == s.ChatMessage(role="assistant", content="Paris is the capital.")
    assert state.turns["t1"].played_ms == 1000
