"""A plain-text dialogue prompt for base (completion) models.

Instruction-tuned models bring a chat template; small *base* models such as the packaged
Gemma 3 270M do not, so the dialogue is written out the way such text appears in their
training data::

    You are Voxline, a friendly voice assistant. Answer briefly.

    User: What is the capital of France?
    Assistant:

The model continues after ``Assistant:`` and is stopped when it starts the next turn
(``\\nUser:``), which it does readily because the pattern is so common. The format lives
here, apart from any engine, so it is a pure function with its own tests and so a remote
completion engine can reuse it. :class:`StopScanner` applies the stop sequences to the
streamed reply; :class:`DialogueOptions` are the format's settings as an engine's options,
and :func:`reply_budget` fits the reply into the context window the prompt leaves.

Speaker labels inside message text are not escaped: a user who types ``\\nAssistant:``
can steer a base model however they like, but the prompt is not a security boundary (it
sees only this session's text, and a tool it calls runs only where the server allows
that tool), so readability wins. A tool call in the history is written with its output,
as a ``Tool:`` line (the call as the model writes one, :mod:`~pipeline.engines.llm.tool_calls`,
then what it returned).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from pipeline.engines.llm.tool_calls import calls_on_tool_lines
from schemas import ChatMessage, EngineError, ErrorCode

__all__ = [
    "VOICE_EXAMPLES",
    "DialogueFormat",
    "DialogueOptions",
    "DialoguePrompt",
    "StopScanner",
    "build_dialogue_prompt",
    "reply_budget",
]


@dataclass(frozen=True, slots=True)
class DialogueFormat:
    """The speaker labels of the transcript; change them to match a model's habits."""

    user_label: str = "User"
    assistant_label: str = "Assistant"
    system_label: str = "System"
    #: the label of a tool call's output (a ``tool`` message)
    tool_label: str = "Tool"
    #: Also end the reply at a blank line. Small base models rarely write a second
    #: paragraph that belongs to the answer: they repeat the preamble or start an
    #: unrelated text instead.
    paragraph_stop: bool = False
    #: Also end the reply at the end of its line. A spoken reply is one line; what a
    #: small base model writes after a newline is a list, a new question or its own
    #: next turn under a label nobody asked for.
    line_stop: bool = False
    #: Labels that end the reply *inside* a line too (``" You:"``): base models write
    #: the next speaker's turn on the same line ("Paris. You: Yes! ..."). Case-sensitive
    #: and after a space, so "thank you: ..." and "10:30" do not stop.
    inline_labels: tuple[str, ...] = ()
    #: Worked examples, ``(question, answer)``, written as the first turns of the
    #: dialogue: a base model copies the length and tone of what it has just read far
    #: more reliably than it follows an instruction.
    examples: tuple[tuple[str, str], ...] = ()

    def stops(self) -> tuple[str, ...]:
        """Sequences that mean the model has finished its turn and begun another one.

        Turn labels start with a newline so that a label inside a sentence ("the User:
        field") does not end the reply; ``inline_labels`` also stop after a space.
        """
        labels = (self.user_label, self.assistant_label, self.system_label)
        turns = tuple(f"\n{label}:" for label in labels)
        inline = tuple(f" {label}:" for label in self.inline_labels)
        newline = ("\n",) if self.line_stop else ("\n\n",) if self.paragraph_stop else ()
        return (*turns, *inline, *newline)


#: Two short, plain answers in the voice the assistant should have (kept off the
#: answer sheet's questions, loadtests/data/answer_sheet.json).
VOICE_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the capital of Norway?", "The capital of Norway is Oslo."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
)


class DialogueOptions(BaseModel):
    """The dialogue format as options of an engine that prompts with it (validated,
    settable from the environment), with the defaults a small base model speaking short
    replies needs (measured with ``loadtests/bench_answers.py``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    paragraph_stop: bool = Field(
        default=True,
        description="end the reply at a blank line: small base models drift into unrelated "
        "text after one paragraph, and spoken replies are one paragraph anyway",
    )
    line_stop: bool = Field(
        default=True,
        description="end the reply at the end of its first line: a spoken reply is one "
        "line, and what the packaged base model writes after a newline is a list, a new "
        "question or the user's next turn",
    )
    inline_labels: tuple[str, ...] = Field(
        default=("User", "You", "Assistant", "Human", "AI", "Voxline"),
        description="speaker labels that end the reply inside a line too ('Paris. You: ...')",
    )
    examples: tuple[tuple[str, str], ...] = Field(
        default=VOICE_EXAMPLES,
        description="worked (question, answer) turns at the start of every dialogue: a "
        "270M base model copies their length and tone; () for an instruction-tuned model",
    )
    user_label: str = Field(default="User", min_length=1)
    assistant_label: str = Field(default="Assistant", min_length=1)

    def dialogue_format(self) -> DialogueFormat:
        return DialogueFormat(
            user_label=self.user_label,
            assistant_label=self.assistant_label,
            paragraph_stop=self.paragraph_stop,
            line_stop=self.line_stop,
            inline_labels=self.inline_labels,
            examples=self.examples,
        )


@dataclass(frozen=True, slots=True)
class DialoguePrompt:
    """The text to complete and the stop sequences that end the reply."""

    text: str
    stop: tuple[str, ...]
    #: True when the prompt ends inside an assistant message (prefill): the reply goes
    #: on from there, so its leading whitespace is part of the text.
    continuation: bool = False


def build_dialogue_prompt(
    messages: Sequence[ChatMessage],
    *,
    extra_stop: Iterable[str] = (),
    dialogue: DialogueFormat | None = None,
) -> DialoguePrompt:
    """Render ``messages`` as a transcript that ends where the assistant speaks next.

    * System messages go on top, in order, as plain paragraphs: a base model reads a
      preamble as the context of the conversation that follows, while a ``System:`` turn
      in the middle would look like a third speaker. A system message that arrives after
      the dialogue has begun is kept in place as a ``System:`` line so it still applies
      from that point on.
    * A trailing assistant message is an unfinished reply to continue (prefill), so the
      prompt ends with its text instead of a fresh ``Assistant:`` cue.
    * ``dialogue.examples`` come first in the dialogue, after the preamble, unless the
      preamble writes worked turns of its own (a line that starts with the user label):
      a caller who shows the model how to answer (a long answer, a style) is not
      overruled by the engine's examples, which come nearer the question and would win.
    * The cue has no trailing space: SentencePiece vocabularies fold the space into the
      next word's token, and a dangling space token makes base models write oddly. The
      engine strips the leading space of the reply instead.

    ``extra_stop`` (the request's own stop sequences) is appended after the turn stops,
    without duplicates and without empty strings.
    """
    fmt = dialogue or DialogueFormat()
    labels = {"user": fmt.user_label, "assistant": fmt.assistant_label}

    preamble: list[str] = []
    turns: list[str] = []
    started = False  # the session's own dialogue has begun
    for message in calls_on_tool_lines(messages):
        text = message.content.strip()
        if message.role == "system":
            if started:
                turns.append(f"{fmt.system_label}: {text}")
            elif text:
                preamble.append(text)
            continue
        started = True
        label = fmt.tool_label if message.role == "tool" else labels[message.role]
        turns.append(f"{label}: {text}")

    user_turn = f"{fmt.user_label}:"
    if not any(line.lstrip().startswith(user_turn) for text in preamble
               for line in text.splitlines()):
        turns[:0] = [line for q, a in fmt.examples
                     for line in (f"{user_turn} {q}", f"{fmt.assistant_label}: {a}")]

    if messages and messages[-1].role == "assistant":
        # Continue the unfinished reply; an empty prefill is just the bare cue.
        last = turns.pop()
        cue = last.rstrip()
    else:
        cue = f"{fmt.assistant_label}:"
    body = "\n".join([*turns, cue])
    text = "\n\n".join([*preamble, body]) if preamble else body

    stop: list[str] = []
    for candidate in (*fmt.stops(), *extra_stop):
        if candidate and candidate not in stop:
            stop.append(candidate)
    continuation = bool(messages) and messages[-1].role == "assistant"
    return DialoguePrompt(text=text, stop=tuple(stop), continuation=continuation)


def reply_budget(prompt_tokens: int, context_tokens: int, max_tokens: int) -> int:
    """The tokens the reply may use: ``max_tokens``, at most what the context window has
    left after the prompt. A prompt that leaves no room raises ``EngineError(llm_failed)``
    with ``details.reason == "context_overflow"`` (the API answers it as the client's
    ``context_length_exceeded``, not as a failure of the model)."""
    room = context_tokens - prompt_tokens
    if room < 1:
        raise EngineError(
            f"the conversation is too long for the model: {prompt_tokens} prompt "
            f"tokens, the context window holds {context_tokens}",
            code=ErrorCode.LLM_FAILED,
            stage="llm",
            transient=False,
            reason="context_overflow",
            prompt_tokens=prompt_tokens,
            n_ctx=context_tokens,
        )
    return min(max_tokens, room)


class StopScanner:
    """Cuts a streamed reply at its first stop sequence, without ever emitting part of one.

    Text arrives in token-sized pieces, so a stop sequence such as ``"\\nUser:"`` can be
    split over several pieces. The scanner holds back the longest tail that could still
    grow into a stop sequence and releases it once it cannot. It also trims the reply:

    * leading whitespace is dropped (the prompt ends at ``Assistant:`` and the model's
      first token is usually ``" The"``), unless ``strip_leading`` is off because the
      reply continues a prefilled text;
    * trailing whitespace is held until non-space text follows, so a reply that ends in
      ``"\\n\\n"`` before the next turn does not end in whitespace and no delta is pure
      whitespace at the end of the stream.

    Whitespace *inside* the reply is kept as the model wrote it.
    """

    __slots__ = ("_held", "_started", "_stopped", "_stops")

    def __init__(self, stops: Iterable[str], *, strip_leading: bool = True) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self._started = not strip_leading
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def feed(self, text: str) -> tuple[str, bool]:
        """Add ``text``; return what may be emitted now and whether a stop was reached.

        After a stop, further text is ignored.
        """
        if self._stopped:
            return "", True
        held = self._held + text
        cut = self._find_stop(held)
        # a longer stop may still be arriving that begins before the one found ("U:" of
        # "U::" when ":" is a stop too): the first stop is the one that begins first
        end = len(held) - self._partial_stop_length(held)
        if 0 <= cut <= end:
            self._held = ""
            self._stopped = True
            return self._emit(held[:cut].rstrip()), True
        while end > 0 and held[end - 1].isspace():
            end -= 1
        self._held = held[end:]
        return self._emit(held[:end]), False

    def flush(self) -> str:
        """The end of the stream: release what was held, without trailing whitespace, up
        to a stop it holds (one that waited for a longer stop that never came)."""
        held, self._held = self._held, ""
        if self._stopped:
            return ""
        if (cut := self._find_stop(held)) >= 0:
            self._stopped = True
            held = held[:cut]
        return self._emit(held.rstrip())

    def _find_stop(self, held: str) -> int:
        """Where the first stop begins in ``held``, or -1.

        Before the reply has started, a stop made of whitespace alone (``"\\n"``) does
        not count inside the leading whitespace: a reply that begins on a new line is a
        reply, not an empty one.
        """
        lead = 0 if self._started else len(held) - len(held.lstrip())
        found = (held.find(s, lead if s.isspace() else 0) for s in self._stops)
        return min((i for i in found if i >= 0), default=-1)

    def _emit(self, text: str) -> str:
        # Leading whitespace is dropped only at emission: a stop sequence may begin with
        # it ("\nUser:" as the very first output is an empty reply, not "User:").
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        return text

    def _partial_stop_length(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a stop."""
        best = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:k]):
                    best = k
                    break
        return best
