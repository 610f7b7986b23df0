// What each server event does to the page: the turns, the transcript, the audio and the
// status line, with every port faked (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Conversation } from "../../deployments/api/static/conversation.js";
import { EventHandler } from "../../deployments/api/static/events.js";

/** A handler whose ports write down what they were asked, in order. */
function handler() {
  const calls = [];
  const note = (name) => (...args) => calls.push([name, ...args]);
  const view = {
    partial: note("partial"), userLine: note("userLine"), replyLine: note("replyLine"),
    reply: note("reply"), cancelled: note("cancelled"), toolCall: note("toolCall"),
    toolResult: note("toolResult"),
  };
  const conversation = new Conversation();
  const events = new EventHandler(conversation, {
    view, audio: { play: note("play"), stop: note("stop"), pause: note("pause"),
                   resume: note("resume") }, say: note("say"),
    settings: note("settings"), latency: note("latency"),
  });
  const only = (...names) => calls.filter(([name]) => names.includes(name));
  return { events, conversation, calls, only };
}

const ev = (type, data = {}, extra = {}) => ({ type, turn_id: "t1", data, ...extra });

test("a voice turn: partial lines, the user's line, the reply written and played", () => {
  const { events, conversation, only } = handler();
  events.handle({ type: "input.speech_started", data: {} });
  events.handle({ type: "input.speech_stopped", data: {} });
  events.handle(ev("transcript.partial", { text: "hel" }));
  events.handle(ev("transcript.final", { text: "hello" }));
  events.handle(ev("response.started", { mode: "streaming" }));
  events.handle(ev("response.text.delta", { delta: "Hi" }));
  events.handle(ev("response.text.delta", { delta: " there." }));
  events.handle(ev("response.sentence", { index: 0, text: "Hi there." }));
  const chunk = { audio: "AAAA", chunk_index: 0, sentence_index: 0 };
  events.handle(ev("response.audio.chunk", chunk));
  events.handle(ev("response.audio.done", { chunk_count: 1 }));
  events.handle(ev("response.done", { status: "completed", text: "Hi there!" }));
  const turn = conversation.turn("t1");
  assert.equal(turn.user, "hello");
  assert.equal(turn.mode, "streaming");
  assert.equal(turn.reply, "Hi there!"); // the final text wins
  assert.equal(turn.status, "completed");
  assert.equal(turn.sentences.get(0), "Hi there.");
  assert.equal(turn.chunks, 1);
  assert.equal(turn.expected, 1);
  assert.deepEqual(only("partial", "userLine", "replyLine", "reply"), [
    ["partial", "…"], ["partial", "(transcribing)"], ["partial", "hel"], ["partial", ""],
    ["userLine", "t1", "hello"], ["replyLine", "t1"], ["reply", "t1", "Hi"],
    ["reply", "t1", "Hi there."], ["reply", "t1", "Hi there!"],
  ]);
  assert.deepEqual(only("play", "stop"), [["stop", "speech"], ["play", "t1", chunk]]);
  assert.equal(conversation.events.length, 11);
});

test("a reply without final text keeps what was written", () => {
  const { events, conversation } = handler();
  events.handle(ev("response.text.delta", { delta: "partial reply" }));
  events.handle(ev("response.done", { status: "incomplete", text: "" }));
  assert.equal(conversation.turn("t1").reply, "partial reply");
});

test("a typed turn, a narration and a refined transcript", () => {
  const { events, conversation, only } = handler();
  events.handle(ev("input.text", { text: "typed" }));
  events.handle(ev("narration.ready", { chunk_count: 3 }));
  events.handle(ev("transcript.refined", { text: "typed, refined" }));
  const turn = conversation.turn("t1");
  assert.equal(turn.narrated, true);
  assert.equal(turn.expected, 3);
  assert.equal(turn.user, "typed, refined");
  assert.deepEqual(only("userLine"), [["userLine", "t1", "typed"], ["userLine", "t1", "typed, refined"]]);
});

test("a cancelled reply is marked and silenced; replayed, only marked", () => {
  const { events, conversation, only } = handler();
  events.handle(ev("response.cancelled", { reason: "barge_in" }));
  assert.equal(conversation.turn("t1").status, "cancelled");
  events.replaying = true;
  events.handle(ev("response.cancelled", { reason: "user" }, { turn_id: "t2" }));
  events.handle({ type: "input.speech_started", data: {} });
  assert.deepEqual(only("cancelled", "stop"), [
    ["cancelled", "t1"], ["stop", "cancelled:barge_in", "t1"], ["cancelled", "t2"],
  ]);
});

test("settings from the server are shown; an update is reported unless replayed", () => {
  const { events, only } = handler();
  const settings = { voice: "amy" };
  events.handle({ type: "session.created", data: { settings } });
  events.handle({ type: "session.updated", data: { settings, changed: ["voice", "language"] } });
  events.replaying = true;
  events.handle({ type: "session.updated", data: { settings, changed: ["voice"] } });
  assert.deepEqual(only("settings", "say"), [
    ["settings", settings], ["settings", settings],
    ["say", "Settings applied (voice, language)."], ["settings", settings],
  ]);
});

test("errors, closing and a trimmed log are said", () => {
  const { events, only } = handler();
  events.handle({ type: "error", data: { message: "too long", code: "input_too_long" } });
  events.handle({ type: "session.closed", data: {} });
  events.handle({ type: "session.resync_required" }); // no data at all
  events.handle({ type: "something.new", data: {} }); // unknown: recorded, nothing else
  assert.deepEqual(only("say"), [
    ["say", "Error: too long (input_too_long)"], ["say", "The session is closed."],
    ["say", "Events were trimmed from the log: open the session again."],
  ]);
});

test("the latency port hears of each turn whose figures changed", () => {
  const { events, only } = handler();
  events.handle(ev("input.text", { text: "q" }, { ts: 100 }));
  events.handle(ev("response.sentence", { index: 0, text: "a" }, { ts: 120 }));
  events.handle(ev("response.text.delta", { delta: "a" }, { ts: 150 }));
  // the sentence too: it ends a part of the first audio
  assert.deepEqual(only("latency"), [["latency", "t1"], ["latency", "t1"], ["latency", "t1"]]);
});

test("speech over a paused reply: a backchannel resumes it, an interruption stops it", () => {
  const { events, only } = handler();
  events.handle(ev("response.paused", { audio_ms: 900 }));
  events.handle({ type: "input.speech_started", data: { audio_ms: 900 } });
  events.handle({ type: "input.speech_stopped", data: { audio_ms: 1300 } });
  events.handle(ev("response.resumed", { audio_ms: 1300, transcript: "mm-hm" }));
  assert.deepEqual(only("pause", "resume", "stop"), [["pause", "t1"], ["resume", "t1"]]);
  // the next speech over it is a real interruption: the new turn's audio stops the reply
  events.handle(ev("response.paused", { audio_ms: 2000 }));
  events.handle({ type: "input.speech_started", data: { audio_ms: 2000 } });
  events.handle(ev("input.audio", { duration_ms: 900 }, { turn_id: "t2" }));
  assert.deepEqual(only("pause", "resume", "stop").slice(2),
                   [["pause", "t1"], ["stop", "interrupted", "t1"]]);
  // with nothing paused, speech stops the reply at once, as before
  events.handle({ type: "input.speech_started", data: { audio_ms: 5000 } });
  assert.deepEqual(only("stop").at(-1), ["stop", "speech"]);
});

test("a turn's tool calls and their results go to the transcript", () => {
  const { events, only } = handler();
  events.handle(ev("response.started", { mode: "text" }));
  events.handle(ev("tool.call.started", { call_id: "c1", name: "get_weather",
                                          arguments: '{"city":"Oslo"}', runs_on: "server" }));
  events.handle(ev("tool.call.output", { call_id: "c1", output: "grey" }));
  events.handle(ev("tool.call.started", { call_id: "c2", name: "book", arguments: "{}",
                                          runs_on: "server" }));
  events.handle(ev("tool.call.failed", { call_id: "c2", code: "tool_timeout", message: "slow" }));
  assert.deepEqual(only("toolCall", "toolResult"), [
    ["toolCall", "t1", "c1", "get_weather", '{"city":"Oslo"}', "server"],
    ["toolResult", "c1", "output", "grey"],
    ["toolCall", "t1", "c2", "book", "{}", "server"],
    ["toolResult", "c2", "failed (tool_timeout): slow"],
  ]);
});
