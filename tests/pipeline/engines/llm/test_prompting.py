"""The dialogue prompt for base models and the stop scanner are pure: pin their behaviour."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from pipeline.engines.llm.prompting import DialogueFormat, StopScanner, build_dialogue_prompt
from schemas import ChatMessage


def _m(role: str, content: str) -> ChatMessage:
    return ChatMessage.model_validate({"role": role, "content": content})


def test_system_on_top_and_assistant_cue_last() -> None:
    prompt = build_dialogue_prompt(
        [
            _m("system", "You are Voxline. Answer briefly."),
            _m("user", "Hi!"),
            _m("assistant", "Hello, how can I help?"),
            _m("user", "  What is the capital of France?\n"),
        ]
    )
    assert prompt.text == (
        "You are Voxline. Answer briefly.\n\n"
        "User: Hi!\n"
        "Assistant: Hello, how can I help?\n"
        "User: What is the capital of France?\n"
        "Assistant:"
    )
    assert prompt.stop == ("\nUser:", "\nAssistant:", "\nSystem:")


def test_without_system_prompt_starts_with_the_dialogue() -> None:
    prompt = build_dialogue_prompt([_m("user", "Hello")])
    assert prompt.text == "User: Hello\nAssistant:"


def test_several_system_messages_form_paragraphs_and_late_ones_stay_in_place() -> None:
    prompt = build_dialogue_prompt(
        [
            _m("system", "Rule one."),
            _m("system", "Rule two."),
            _m("user", "Hi"),
            _m("system", "Now answer in German."),
            _m("user", "Wie spät ist es?"),
        ]
    )
    assert prompt.text == (
        "Rule one.\n\nRule two.\n\n"
        "User: Hi\nSystem: Now answer in German.\nUser: Wie spät ist es?\nAssistant:"
    )


def test_trailing_assistant_message_is_continued_not_restarted() -> None:
    prompt = build_dialogue_prompt([_m("user", "Count to three."), _m("assistant", "One, two,")])
    assert prompt.text == "User: Count to three.\nAssistant: One, two,"
    assert prompt.continuation
    assert not build_dialogue_prompt([_m("user", "Hi")]).continuation
    empty = build_dialogue_prompt([_m("user", "Hi"), _m("assistant", "")])
    assert empty.text == "User: Hi\nAssistant:"


def test_request_stops_are_appended_once_and_empty_ones_dropped() -> None:
    prompt = build_dialogue_prompt([_m("user", "Hi")], extra_stop=["END", "", "\nUser:", "END"])
    assert prompt.stop == ("\nUser:", "\nAssistant:", "\nSystem:", "END")


def test_custom_labels_change_cues_and_stops() -> None:
    fmt = DialogueFormat(user_label="Q", assistant_label="A", system_label="Note")
    prompt = build_dialogue_prompt([_m("user", "2+2?")], dialogue=fmt)
    assert prompt.text == "Q: 2+2?\nA:"
    assert prompt.stop == ("\nQ:", "\nA:", "\nNote:")


def test_blank_system_message_adds_nothing() -> None:
    prompt = build_dialogue_prompt([_m("system", "   "), _m("user", "Hi")])
    assert prompt.text == "User: Hi\nAssistant:"


def _scan(
    pieces: list[str], stops: tuple[str, ...], *, strip_leading: bool = True
) -> tuple[list[str], bool]:
    scanner = StopScanner(stops, strip_leading=strip_leading)
    out: list[str] = []
    stopped = False
    for piece in pieces:
        text, stopped = scanner.feed(piece)
        out.append(text)
        if stopped:
            break
    out.append(scanner.flush())
    return [t for t in out if t], stopped or scanner.stopped


def test_stop_split_over_pieces_is_never_emitted() -> None:
    pieces = [" The capital", " is Paris.", "\n", "\nUs", "er:", " more"]
    deltas, stopped = _scan(pieces, ("\nUser:",))
    assert deltas == ["The capital", " is Paris."]
    assert stopped


def test_a_false_start_of_a_stop_is_released() -> None:
    deltas, stopped = _scan(["Hi", "\nUs", "ually", " yes"], ("\nUser:",))
    assert "".join(deltas) == "Hi\nUsually yes"
    assert deltas[0] == "Hi"  # "\nUs" waited until it could no longer become "\nUser:"
    assert not stopped


def test_stop_at_the_very_start_gives_an_empty_reply() -> None:
    assert _scan(["\n", "User: hello"], ("\nUser:",)) == ([], True)


def test_a_continued_reply_keeps_its_leading_space() -> None:
    assert _scan([" three", "."], (), strip_leading=False) == ([" three", "."], False)


def test_trailing_whitespace_is_held_then_dropped_at_the_end() -> None:
    scanner = StopScanner(())
    assert scanner.feed("  Hello") == ("Hello", False)
    assert scanner.feed(" \n") == ("", False)
    assert scanner.feed("world") == (" \nworld", False)
    assert scanner.feed("\n\n") == ("", False)
    assert scanner.flush() == ""


_ALPHABET = st.sampled_from(["a", "b", " ", "\n", "U", "s", "e", "r", ":", "é", "x"])


def test_a_longer_stop_that_begins_first_wins_over_a_shorter_one_inside_it() -> None:
    assert _scan(["U:", ":"], (":", "U::")) == ([], True)  # "U::" begins at 0
    assert _scan(["U:"], (":", "U::")) == (["U"], True)  # it never came: ":" stops


@given(
    text=st.text(_ALPHABET, max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=8),
    stops=st.lists(st.text(_ALPHABET, min_size=1, max_size=6), max_size=3),
)
def test_any_split_gives_the_text_up_to_the_first_stop(
    text: str, cuts: list[int], stops: list[str]
) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    # A stop of whitespace alone does not count inside the reply's leading whitespace.
    lead = len(text) - len(text.lstrip())
    found = [i for i in (text.find(s, lead if s.isspace() else 0) for s in stops) if i >= 0]
    expected = (text[: min(found)] if found else text).strip()
    deltas, stopped = _scan(pieces, tuple(stops))
    assert "".join(deltas) == expected
    assert stopped == bool(found)
    assert all(deltas)


def test_paragraph_stop_adds_a_blank_line_stop() -> None:
    prompt = build_dialogue_prompt([_m("user", "Hi")], dialogue=DialogueFormat(paragraph_stop=True))
    assert prompt.stop == ("\nUser:", "\nAssistant:", "\nSystem:", "\n\n")


def test_line_stop_ends_the_reply_at_its_first_newline() -> None:
    fmt = DialogueFormat(line_stop=True, paragraph_stop=True)
    prompt = build_dialogue_prompt([_m("user", "Hi")], dialogue=fmt)
    assert prompt.stop == ("\nUser:", "\nAssistant:", "\nSystem:", "\n")
    deltas, stopped = _scan([" Paris is", " the capital.\n", "1. Lyon"], prompt.stop)
    assert "".join(deltas) == "Paris is the capital."
    assert stopped


def test_a_reply_that_begins_on_a_new_line_is_not_empty() -> None:
    deltas, stopped = _scan(["\n", " \n", "Paris.", "\nMore"], ("\n",))
    assert "".join(deltas) == "Paris."
    assert stopped


def test_inline_labels_stop_a_reply_that_writes_the_next_turn() -> None:
    fmt = DialogueFormat(inline_labels=("You", "User"))
    prompt = build_dialogue_prompt([_m("user", "Name two colours.")], dialogue=fmt)
    assert " You:" in prompt.stop and " User:" in prompt.stop
    deltas, _ = _scan(["Red and", " blue. Y", "ou: Yes!"], prompt.stop)
    assert "".join(deltas) == "Red and blue."
    # lower case and a label that opens the reply are text, not a turn
    assert "".join(_scan(["Thank you: it is 10:30."], prompt.stop)[0]) == (
        "Thank you: it is 10:30."
    )


def test_examples_open_the_dialogue_after_the_preamble() -> None:
    fmt = DialogueFormat(examples=(("What is 1+1?", "It is two."),))
    prompt = build_dialogue_prompt(
        [_m("system", "Be brief."), _m("user", "Hi"), _m("system", "Late rule.")], dialogue=fmt
    )
    assert prompt.text == (
        "Be brief.\n\n"
        "User: What is 1+1?\nAssistant: It is two.\n"
        "User: Hi\nSystem: Late rule.\nAssistant:"
    )


def test_a_preamble_with_worked_turns_of_its_own_replaces_the_examples() -> None:
    fmt = DialogueFormat(examples=(("What is 1+1?", "It is two."),))
    own = "Answer at length.\n\nUser: What is 2+2?\nAssistant: Four, which is two twos."
    prompt = build_dialogue_prompt([_m("system", own), _m("user", "Hi")], dialogue=fmt)
    assert prompt.text == f"{own}\n\nUser: Hi\nAssistant:"
    assert "1+1" not in prompt.text
    # the word alone is no worked turn: the examples stay
    mentions = build_dialogue_prompt([_m("system", "The User: field is optional."),
                                      _m("user", "Hi")], dialogue=fmt)
    assert "User: What is 1+1?" in mentions.text


_LABELS = ("User", "You", "Assistant", "Human", "AI")
_REPLY_TEXT = st.lists(
    st.sampled_from(["Paris", " is", " the", " capital", ".", "\n", " ", "You:", "User:",
                     " You", ":", "<em>", "x", "\n\n", "Assistant:"]),
    max_size=14,
).map("".join)


@given(text=_REPLY_TEXT, cuts=st.lists(st.integers(0, 80), max_size=8))
def test_a_voice_reply_is_one_line_without_a_speaker_label(text: str, cuts: list[int]) -> None:
    fmt = DialogueFormat(line_stop=True, inline_labels=_LABELS)
    stops = build_dialogue_prompt([_m("user", "Hi")], dialogue=fmt).stop
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    reply = "".join(_scan([text[a:b] for a, b in itertools.pairwise(bounds)], stops)[0])
    assert "\n" not in reply
    assert not any(f" {label}:" in reply for label in _LABELS)
    assert reply == reply.strip()
