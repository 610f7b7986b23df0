"""Case table for the streaming sentence buffer (`pipeline.turn.sentences`).

Every case is checked three ways: all at once, one character at a time and one word at a
time, so each row also pins chunking invariance for its text.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.turn import SentenceBuffer, SentenceBufferConfig, split_stream, split_text
from pipeline.turn._markdown import speakable


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    pieces: list[str]
    language: str = "en"
    options: dict[str, Any] = field(default_factory=dict)

    def config(self) -> SentenceBufferConfig:
        return SentenceBufferConfig(language=self.language, **self.options)


DE = "de"
ONE = {"min_sentence_chars": 0}  # every sentence its own piece: shows each cut
LATE = {"early_first_piece": False}

CASES = [
    # -- English abbreviations and titles ------------------------------------------------
    Case("title-dr", "Dr. Smith will see you now. Please take a seat over there.",
         ["Dr. Smith will see you now.", "Please take a seat over there."]),
    Case("titles-mr-mrs-prof", "Mr. and Mrs. Jones arrived late. Prof. Miller was already there.",
         ["Mr. and Mrs. Jones arrived late.", "Prof. Miller was already there."]),
    Case("eg", "Bring fruit e.g. Apples and Pears to the party. It starts at noon.",
         ["Bring fruit e.g. Apples and Pears to the party.", "It starts at noon."]),
    Case("ie", "Use the big one, i.e. The red box on the left. Thanks a lot.",
         ["Use the big one, i.e. The red box on the left.", "Thanks a lot."], options=ONE),
    Case("vs", "It was Brazil vs. Germany in the final. Germany won the match.",
         ["It was Brazil vs. Germany in the final.", "Germany won the match."]),
    Case("usa-end", "It was made in the U.S.A. It is good and we like it.",
         ["It was made in the U.S.A.", "It is good and we like it."]),
    Case("us-lowercase", "The U.S. government said no. Then it said yes again later on.",
         ["The U.S. government said no.", "Then it said yes again later on."]),
    Case("etc-end", "We have apples, pears, etc. Then we go home and eat them all.",
         ["We have apples, pears, etc.", "Then we go home and eat them all."]),
    Case("etc-mid", "We bought apples, pears, etc. and went home happy. The end.",
         ["We bought apples, pears, etc. and went home happy.", "The end."]),
    Case("am-pm", "We meet at 9 a.m. sharp tomorrow. Please be there on time.",
         ["We meet at 9 a.m. sharp tomorrow.", "Please be there on time."]),
    Case("fig-digit", "The curve in Fig. 3 is steep. The one in Fig. 4 is flat.",
         ["The curve in Fig. 3 is steep.", "The one in Fig. 4 is flat."], options=ONE),
    Case("unknown-abbrev-lower", "It takes approx. five minutes to boil. Then serve it hot.",
         ["It takes approx. five minutes to boil.", "Then serve it hot."]),
    Case("no-sentence", "No. I don't think so, not at all today.",
         ["No.", "I don't think so, not at all today."]),
    Case("st-saint", "We visited St. Louis last year. It was hot and humid there.",
         ["We visited St. Louis last year.", "It was hot and humid there."]),
    # -- German abbreviations ------------------------------------------------------------
    Case("de-zb", "Wir brauchen z.B. Äpfel und Birnen. Das reicht für heute Abend.",
         ["Wir brauchen z.B. Äpfel und Birnen.", "Das reicht für heute Abend."], DE),
    Case("de-z-b-spaced", "Wir brauchen z. B. Äpfel und Birnen. Das reicht für heute Abend.",
         ["Wir brauchen z. B. Äpfel und Birnen.", "Das reicht für heute Abend."], DE),
    Case("de-ua-bzw", "Es gibt u.a. Tee bzw. Kaffee im Angebot. Der Kuchen ist auch gut.",
         ["Es gibt u.a. Tee bzw. Kaffee im Angebot.", "Der Kuchen ist auch gut."], DE),
    Case("de-nr", "Sie wohnt im Haus Nr. 5 am Markt. Dort ist es schön ruhig.",
         ["Sie wohnt im Haus Nr. 5 am Markt.", "Dort ist es schön ruhig."], DE),
    Case("de-ca", "Das kostet ca. Zehn Euro pro Stück. Das ist wirklich günstig.",
         ["Das kostet ca. Zehn Euro pro Stück.", "Das ist wirklich günstig."], DE),
    Case("de-usw-end", "Es gibt Äpfel, Birnen usw. Das ist gut für die Gesundheit.",
         ["Es gibt Äpfel, Birnen usw.", "Das ist gut für die Gesundheit."], DE),
    Case("de-usw-mid", "Äpfel, Birnen usw. sind gesund und lecker. Das weiß jeder.",
         ["Äpfel, Birnen usw. sind gesund und lecker.", "Das weiß jeder."], DE),
    Case("de-str-number", "Ich wohne in der Hauptstr. 5 in Berlin. Besuch mich doch mal.",
         ["Ich wohne in der Hauptstr. 5 in Berlin.", "Besuch mich doch mal."], DE),
    Case("de-str-end", "Er wohnt in der Goethestr. Dort ist es sehr ruhig und grün.",
         ["Er wohnt in der Goethestr.", "Dort ist es sehr ruhig und grün."], DE),
    Case("de-dh-prof", "Prof. Dr. Weber kommt später, d.h. Nach dem Essen. Wir warten.",
         ["Prof. Dr. Weber kommt später,", "d.h. Nach dem Essen.", "Wir warten."], DE),
    Case("de-vgl-ggf", "Vgl. Kapitel Zwei und ggf. Anhang B. Dort steht alles Wichtige.",
         ["Vgl. Kapitel Zwei und ggf. Anhang B. Dort steht alles Wichtige."], DE),
    # -- numbers, prices, dates, times, versions -------------------------------------------
    Case("decimal", "Pi is about 3.14 in most cases. That is a well known number.",
         ["Pi is about 3.14 in most cases.", "That is a well known number."]),
    Case("price-dollar", "It costs $4.99 today. Tomorrow it will cost a lot more.",
         ["It costs $4.99 today.", "Tomorrow it will cost a lot more."]),
    Case("de-price", "Das kostet 3,50 €. Das ist wirklich nicht teuer, oder?",
         ["Das kostet 3,50 €.", "Das ist wirklich nicht teuer, oder?"], DE),
    Case("thousands", "The total is 1,000.50 dollars. We accept all major cards.",
         ["The total is 1,000.50 dollars.", "We accept all major cards."]),
    Case("de-ordinal-month", "Am 3. Oktober ist Feiertag. Dann haben alle Leute frei.",
         ["Am 3. Oktober ist Feiertag.", "Dann haben alle Leute frei."], DE),
    Case("de-ordinal-noun", "Er kam am 3. Tag zurück. Alle haben sich sehr gefreut.",
         ["Er kam am 3. Tag zurück.", "Alle haben sich sehr gefreut."], DE),
    Case("de-number-end", "Er wurde im Rennen 3. Das war ein gutes Ergebnis für ihn.",
         ["Er wurde im Rennen 3.", "Das war ein gutes Ergebnis für ihn."], DE),
    Case("de-date", "Wir feiern am 24.12.2026 zu Hause. Alle kommen vorbei.",
         ["Wir feiern am 24.12.2026 zu Hause.", "Alle kommen vorbei."], DE),
    Case("de-short-date", "Am 24.12. Abends gibt es Geschenke. Dann wird gegessen.",
         ["Am 24.12. Abends gibt es Geschenke.", "Dann wird gegessen."], DE),
    Case("en-number-end", "She finished in place 3. Then she went home to rest a bit.",
         ["She finished in place 3.", "Then she went home to rest a bit."]),
    Case("time", "We meet at 7:30 tomorrow. Do not be late for it, please.",
         ["We meet at 7:30 tomorrow.", "Do not be late for it, please."]),
    Case("de-time", "Der Zug fährt um 7:30 Uhr ab. Wir sollten pünktlich sein.",
         ["Der Zug fährt um 7:30 Uhr ab.", "Wir sollten pünktlich sein."], DE),
    Case("versions", "Install Python 3.11 or v1.2.3 first. Then run the script again.",
         ["Install Python 3.11 or v1.2.3 first.", "Then run the script again."]),
    Case("year-end", "The war ended in 1945. Many things changed after that year.",
         ["The war ended in 1945.", "Many things changed after that year."]),
    # -- URLs, e-mail, initials ------------------------------------------------------------
    Case("url", "See https://example.com/a.b for details. It has everything you need.",
         ["See https://example.com/a.b for details.", "It has everything you need."]),
    Case("email", "Write to foo.bar@example.org today. We answer within a day.",
         ["Write to foo.bar@example.org today.", "We answer within a day."]),
    Case("url-sentence-end", "The docs live at docs.example.com. They are quite good.",
         ["The docs live at docs.example.com.", "They are quite good."]),
    Case("initials", "J. R. R. Tolkien wrote it. Great book, and very long too.",
         ["J. R. R. Tolkien wrote it.", "Great book, and very long too."]),
    Case("initial-middle", "The author is George R. Martin from New Mexico. He writes a lot.",
         ["The author is George R. Martin from New Mexico.", "He writes a lot."]),
    # -- ellipses ------------------------------------------------------------------------
    Case("ellipsis-i", "Well... I think so. Yes, that is what I believe is true.",
         ["Well... I think so.", "Yes, that is what I believe is true."]),
    Case("ellipsis-lower", "Well... maybe not, but perhaps tomorrow we can try again.",
         ["Well... maybe not, but perhaps tomorrow we can try again."]),
    Case("ellipsis-end", "I waited... Then he came back home after a long time away.",
         ["I waited...", "Then he came back home after a long time away."]),
    Case("ellipsis-unicode", "Hmm… let me think about that one. Okay, I have it now.",
         ["Hmm… let me think about that one.", "Okay, I have it now."]),
    Case("ellipsis-im", "Well... I'm not sure about this one. Let me check it again.",
         ["Well... I'm not sure about this one.", "Let me check it again."]),
    Case("de-ellipsis", "Na ja... ich weiß nicht so recht. Das muss ich mir überlegen.",
         ["Na ja... ich weiß nicht so recht.", "Das muss ich mir überlegen."], DE),
    # -- quotes and brackets ---------------------------------------------------------------
    Case("quote-exclaim", '"Stop!" she said. Then she left the building without a word.',
         ['"Stop!" she said.', "Then she left the building without a word."]),
    Case("quote-curly", "“Really?” he asked. Nobody answered him, so he left the room.",
         ["“Really?” he asked.", "Nobody answered him, so he left the room."]),
    Case("quote-two-sentences", 'He said "I am here. You are there." Then he left quietly.',
         ['He said "I am here. You are there."', "Then he left quietly."]),
    Case("de-quote", "„Halt!“, rief sie. Dann ging sie nach Hause, ohne ein Wort.",
         ["„Halt!“, rief sie.", "Dann ging sie nach Hause, ohne ein Wort."], DE),
    Case("de-guillemets", "»Komm mit. Schnell!« Er rannte los. Alle folgten ihm sofort.",
         ["»Komm mit. Schnell!«", "Er rannte los. Alle folgten ihm sofort."], DE),
    Case("bracket-fig", "The results (see Fig. 3.) are clear. Next we look at costs.",
         ["The results (see Fig. 3.) are clear.", "Next we look at costs."]),
    Case("bracket-aside", "It worked (Nobody expected it. Really.) in the end. Good news.",
         ["It worked (Nobody expected it. Really.) in the end.", "Good news."]),
    Case("bracket-sentence", "That is all. (More details follow later.) Thanks for reading.",
         ["That is all.", "(More details follow later.)", "Thanks for reading."], options=ONE),
    Case("stray-inch-quote", 'The screen is 27" wide. It fits on the desk quite nicely.',
         ['The screen is 27" wide.', "It fits on the desk quite nicely."]),
    # -- exclamations, questions, missing spaces -----------------------------------------
    Case("question", "Really? Yes, really, I mean it. Trust me on this one, friend.",
         ["Really?", "Yes, really, I mean it.", "Trust me on this one, friend."]),
    Case("exclaims", "Wow!!! That is amazing news for all of us. What?! No way!",
         ["Wow!!!", "That is amazing news for all of us.", "What?! No way!"]),
    Case("no-space-after", "Hello world!This is it. And another sentence follows here.",
         ["Hello world!This is it.", "And another sentence follows here."]),
    Case("exclaim-lower", "Hey! you over there, come here and help me. Please hurry.",
         ["Hey! you over there, come here and help me.", "Please hurry."]),
    # -- the early first piece ---------------------------------------------------------------
    Case("first-comma", "Sure thing, I can help you with that, and here is how it works.",
         ["Sure thing, I can help you with that,", "and here is how it works."]),
    Case("first-short-sentence", "Sure. I can help you with that, and here is how.",
         ["Sure.", "I can help you with that, and here is how."]),
    Case("first-too-few-words", "Yes, of course, that works. It is no problem at all.",
         ["Yes, of course, that works.", "It is no problem at all."]),
    Case("first-semicolon", "The weather is lovely today; we should go outside. Okay?",
         ["The weather is lovely today;", "we should go outside.", "Okay?"]),
    Case("first-colon", "Here are the three main options: red, green and blue.",
         ["Here are the three main options:", "red, green and blue."]),
    Case("first-dash", "I think the answer is simple - just ask her directly.",
         ["I think the answer is simple -", "just ask her directly."]),
    Case("first-en-dash", "I think the answer is simple – just ask her directly.",
         ["I think the answer is simple –", "just ask her directly."]),
    Case("first-em-dash-spaced", "I think the answer is simple — just ask her directly.",
         ["I think the answer is simple —", "just ask her directly."]),
    Case("first-em-dash", "I think the answer is simple—just ask her directly.",
         ["I think the answer is simple—", "just ask her directly."]),
    Case("first-hyphen-word", "It is a well-known fact that cats sleep a lot every day.",
         ["It is a well-known fact that cats sleep a lot every day."]),
    Case("first-number-comma", "The new car costs about 3,50 € per kilometre, they say.",
         ["The new car costs about 3,50 € per kilometre,", "they say."]),
    Case("first-thousands", "We counted 1,000 birds in the park yesterday, all different.",
         ["We counted 1,000 birds in the park yesterday,", "all different."]),
    Case("first-time-colon", "The train leaves today at 7:30 from platform two. Hurry.",
         ["The train leaves today at 7:30 from platform two.", "Hurry."]),
    Case("first-url-colon", "Open the page at https://example.com/x in a browser. Done.",
         ["Open the page at https://example.com/x in a browser.", "Done."]),
    Case("first-minus", "The result of 10 - 5 is five, as you know. That is maths.",
         ["The result of 10 - 5 is five,", "as you know. That is maths."]),
    Case("first-in-quotes", 'She said "yes, of course, I will come" and smiled. Nice.',
         ['She said "yes, of course, I will come" and smiled.', "Nice."]),
    Case("first-min-words-2", "Sure thing, I can help you with that, and here is how.",
         ["Sure thing,", "I can help you with that, and here is how."],
         options={"first_piece_min_words": 2}),
    Case("first-late", "Sure. I can help you with that, and here is how it works.",
         ["Sure. I can help you with that, and here is how it works."], options=LATE),
    Case("first-only-once", "Sure thing, I can help you with that, and more. Then, a, b, c.",
         ["Sure thing, I can help you with that,", "and more. Then, a, b, c."]),
    # the voice rule: a clause mark after 4 words, else a word boundary after 7
    Case("voice-short-answer", "The capital of France is Paris. It is lovely in spring.",
         ["The capital of France is Paris.", "It is lovely in spring."],
         options={"first_piece_min_words": 4, "first_piece_max_words": 7}),
    Case("voice-long-sentence",
         "The largest ocean on our planet is the Pacific Ocean by a very wide margin.",
         ["The largest ocean on our planet is", "the Pacific Ocean by a very wide margin."],
         options={"first_piece_min_words": 4, "first_piece_max_words": 7}),
    Case("voice-word-cut-counts-every-word", "One two three, four five six seven, eight nine.",
         ["One two three, four", "five six seven, eight nine."],
         options={"first_piece_min_words": 5, "first_piece_max_words": 4}),
    Case("voice-word-cut-not-in-quotes", 'He said "one two three four five six" and left.',
         ['He said "one two three four five six" and', "left."],
         options={"first_piece_max_words": 3}),
    Case("voice-word-cut-once", "One two three four five six seven eight nine ten eleven.",
         ["One two three", "four five six seven eight nine ten eleven."],
         options={"first_piece_max_words": 3}),
    # -- merging and hard cuts -------------------------------------------------------------
    Case("merge-short", "Hi. Yes. No. Maybe so. Fine, that is it then. Ok.",
         ["Hi.", "Yes. No. Maybe so. Fine, that is it then.", "Ok."]),
    Case("merge-off", "Hi. Yes. No. Maybe so. Fine.", ["Hi.", "Yes.", "No.", "Maybe so.", "Fine."],
         options=ONE),
    Case("merge-late", "Hi. Yes. That is a longer sentence here. Ok.",
         ["Hi. Yes. That is a longer sentence here.", "Ok."], options=LATE),
    Case("max-chars", "one two three four five six seven eight nine ten eleven twelve",
         ["one two three four five", "six seven eight nine ten", "eleven twelve"],
         options={"max_piece_chars": 24}),
    Case("max-chars-held", "Ok. Right. One two three four five six seven eight nine",
         ["Ok. Right.", "One two three four five six", "seven eight nine"],
         options={"max_piece_chars": 30, "early_first_piece": False}),
    Case("max-chars-long-word", "abcdefghijklmnopqrstuvwxyz and more",
         ["abcdefghij", "klmnopqrst", "uvwxyz and", "more"], options={"max_piece_chars": 10}),
    # -- markdown ----------------------------------------------------------------------------
    Case("md-emphasis", "This is **really** important and *quite* urgent. Act __now__ please.",
         ["This is really important and quite urgent.", "Act now please."]),
    Case("md-snake-case", "Call the my_helper_function from the module. It returns None.",
         ["Call the my_helper_function from the module.", "It returns None."]),
    Case("md-inline-code", "Run `pip install voxline` in a shell. Then start the server.",
         ["Run pip install voxline in a shell.", "Then start the server."]),
    Case("md-fence-dropped", "Here is the code:\n```python\nprint('hi. there')\n```\nRun it now.",
         ["Here is the code:", "Run it now."]),
    Case("md-heading", "# Getting started\nFirst install the package. Then run it.",
         ["Getting started.", "First install the package.", "Then run it."]),
    Case("md-bullets", "You need:\n- Apples\n- Pears\n- Plums and cherries\n",
         ["You need:", "Apples. Pears. Plums and cherries"]),
    Case("md-star-bullets", "* First point here\n* Second point here\n* Third",
         ["First point here.", "Second point here. Third"]),
    Case("md-numbered", "Steps:\n1. Preheat the oven\n2. Bake it for 20 minutes\n3. Enjoy",
         ["Steps:", "Preheat the oven. Bake it for 20 minutes.", "Enjoy"]),
    Case("md-link", "Read [the manual](https://example.com/manual.html) first. It helps.",
         ["Read the manual first.", "It helps."]),
    Case("md-image-autolink", "See ![a chart](c.png) and <https://example.com> now. Ok.",
         ["See a chart and https://example.com now.", "Ok."]),
    Case("md-brackets-not-link", "See [1] and [note] for more. The rest is obvious.",
         ["See [1] and [note] for more.", "The rest is obvious."]),
    Case("md-rule-quote", "Intro text here.\n\n---\n\n> Quoted line one.\n\nEnd of the reply.",
         ["Intro text here.", "Quoted line one. End of the reply."]),
    Case("md-table", "| Name | Age |\n|------|-----|\n| Bob | 42 |\n| Alice | 37 |",
         ["Name, Age.", "Bob, 42. Alice, 37"]),
    Case("md-escapes-html", "A \\*literal\\* star.<br>Next line here, my friend.",
         ["A *literal* star.", "Next line here, my friend."]),
    Case("md-html-attributes", 'It is <span class="x">the</span> capital of <b>Italy</b>. Yes.',
         ["It is the capital of Italy.", "Yes."]),
    Case("md-html-in-code", "It is `<em>the</em>` capital of Italy, as you know. Yes.",
         ["It is the capital of Italy,", "as you know. Yes."]),
    Case("md-not-a-tag", "If a <b and c> d holds, x < y and y > z. Fine.",
         ["If a <b and c> d holds,", "x < y and y > z. Fine."]),
    Case("md-strike", "This is ~~wrong~~ right, as you can all see. Good.",
         ["This is wrong right, as you can all see.", "Good."]),
    Case("md-wrapped-line", "This line is wrapped\nin the middle by the model. Next one.",
         ["This line is wrapped in the middle by the model.", "Next one."]),
    Case("md-lines", "Line one without a stop\nLine two without a stop",
         ["Line one without a stop.", "Line two without a stop"]),
    Case("md-only-markup", "**\n---\n", []),
    # -- other scripts and languages -------------------------------------------------------
    Case("zh", "你好。我是一个人工智能助手，很高兴认识你。今天天气很好！",
         ["你好。", "我是一个人工智能助手，很高兴认识你。", "今天天气很好！"], "zh"),
    Case("ja-quote", "「こんにちは。」と言った。それから帰った。",
         ["「こんにちは。」と言った。", "それから帰った。"], "ja", ONE),
    Case("zh-first-clause", "我们今天要去公园散步，然后去吃饭。",
         ["我们今天要去公园散步，", "然后去吃饭。"], "zh"),
    Case("unknown-language", "Dr. Müller kommt z.B. morgen. Das ist gut so, oder nicht?",
         ["Dr. Müller kommt z.B. morgen.", "Das ist gut so, oder nicht?"], "fr"),
    Case("language-region", "Mrs. Brown is here. She waits at the door for you.",
         ["Mrs. Brown is here.", "She waits at the door for you."], "en-GB"),
    Case("ordinal-language", "Han kom den 3. Maj hjem igen. Det var godt.",
         ["Han kom den 3. Maj hjem igen.", "Det var godt."], "da"),
    Case("hindi", "नमस्ते। आप कैसे हैं? मैं ठीक हूँ।", ["नमस्ते।", "आप कैसे हैं? मैं ठीक हूँ।"], "hi"),
    # -- edges ---------------------------------------------------------------------------------
    Case("empty", "", []),
    Case("whitespace", "   \n\n \t ", []),
    Case("no-punctuation", "just some words without any end", ["just some words without any end"]),
    Case("trailing-spaces", "  Hello there, my friend.   ", ["Hello there, my friend."]),
    Case("paragraphs", "First paragraph here.\n\nSecond paragraph here.",
         ["First paragraph here.", "Second paragraph here."]),
]


def _pieces(text: str, config: SentenceBufferConfig, chunks: list[str]) -> list[str]:
    buffer = SentenceBuffer(config)
    pieces = [piece for chunk in chunks for piece in buffer.push(chunk)]
    return pieces + buffer.flush()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_table(case: Case) -> None:
    config = case.config()
    assert split_text(case.text, config) == case.pieces
    assert _pieces(case.text, config, list(case.text)) == case.pieces
    assert _pieces(case.text, config, re.findall(r"\S+|\s+", case.text)) == case.pieces


def test_case_table_is_large_and_ids_unique() -> None:
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pieces_join_to_speakable_text(case: Case) -> None:
    pieces = split_text(case.text, case.config())
    assert all(p and p == p.strip() for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(speakable(case.text).split())


def test_pushes_return_pieces_as_soon_as_they_are_decided() -> None:
    buffer = SentenceBuffer()
    assert buffer.push("Sure thing, I can help you") == []
    assert buffer.push(" with that,") == []  # is the comma inside a number?
    assert buffer.push(" and") == ["Sure thing, I can help you with that,"]
    assert buffer.push(" here is how it works.") == []  # needs the next word
    assert buffer.push(" Then") == ["and here is how it works."]
    assert buffer.flush() == ["Then"]


def test_buffer_is_reusable_after_flush() -> None:
    buffer = SentenceBuffer()
    assert buffer.push("Hello there. How") == ["Hello there."]
    assert buffer.flush() == ["How"]
    assert buffer.push("Dr. Who is here, and he is fine. ") == []
    assert buffer.flush() == ["Dr. Who is here, and he is fine."]


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SentenceBufferConfig(first_piece_min_words=0)
    with pytest.raises(ValueError):
        SentenceBufferConfig(max_piece_chars=0)


async def _deltas(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_split_stream_yields_what_push_and_flush_return() -> None:
    text = "Sure thing, I can help you with that. Dr. Smith is in at 7:30. Bye."
    tokens = re.findall(r"\S+|\s+", text)
    pieces = [p async for p in split_stream(_deltas(tokens))]
    assert pieces == split_text(text)


async def test_split_stream_closes_its_source() -> None:
    closed = False

    async def source() -> AsyncIterator[str]:
        nonlocal closed
        try:
            yield "First sentence is here. "
            yield "Second sentence is here. "
            yield "Third."
        finally:
            closed = True

    stream = split_stream(source())
    assert await anext(stream) == "First sentence is here."
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed
