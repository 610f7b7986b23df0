"""``conversation.item.retrieve`` answered from the session's state: user items typed or
spoken, replies whole, cut short or text only, and items the session does not hold."""

from __future__ import annotations

import pytest

from pipeline.log import TurnState
from pipeline.openai_realtime import retrieved_item
from schemas import ErrorCode, ProtocolError

TURNS = {
    "turn_a": TurnState(turn_id="turn_a", source="audio", user_text="Hello there",
                        assistant_text="Hi! How", status="cancelled", audio_chunks=3),
    "turn_b": TurnState(turn_id="turn_b", source="text", user_text="Hi",
                        assistant_text="Hello.", status="completed"),
    "turn_c": TurnState(turn_id="turn_c", source="text", user_text="More", status="open"),
}


def test_user_items_are_as_said_or_typed() -> None:
    spoken = retrieved_item("item_turn_a_in", TURNS)
    assert spoken["type"] == "conversation.item.retrieved"
    assert spoken["item"]["id"] == "item_turn_a_in" and spoken["item"]["role"] == "user"
    assert spoken["item"]["content"] == [{"type": "input_audio", "transcript": "Hello there"}]
    typed = retrieved_item("item_turn_b_in", TURNS)["item"]
    assert typed["content"] == [{"type": "input_text", "text": "Hi"}]


def test_replies_hold_what_was_heard_spoken_or_written() -> None:
    cut = retrieved_item("item_turn_a_out", TURNS)["item"]
    assert cut["role"] == "assistant" and cut["status"] == "incomplete"
    assert cut["content"] == [{"type": "output_audio", "transcript": "Hi! How"}]
    text = retrieved_item("item_turn_b_out", TURNS)["item"]
    assert text["status"] == "completed"
    assert text["content"] == [{"type": "output_text", "text": "Hello."}]


@pytest.mark.parametrize("item_id", ["item_turn_c_out", "item_turn_z_in", "turn_a", ""])
def test_items_the_session_does_not_hold_are_not_found(item_id: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        retrieved_item(item_id, TURNS)
    assert caught.value.code == ErrorCode.NOT_FOUND
    assert caught.value.details["param"] == "item_id"
