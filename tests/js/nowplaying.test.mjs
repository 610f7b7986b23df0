// The now-playing box: the sentence sounding now and the last turn's progress
// (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Conversation } from "../../deployments/api/static/conversation.js";
import { NowPlaying } from "../../deployments/api/static/nowplaying.js";

function player({ current = null, played = 0, playedByTurn = [] } = {}) {
  return { currentSentence: () => current, played, playedByTurn: new Map(playedByTurn) };
}

test("nothing played yet: nothing shown but the count", () => {
  const box = new NowPlaying(new Conversation());
  assert.deepEqual(box.update(player()), { played: "0", sentence: "nothing", progress: null });
});

test("the sentence sounding now, by its text or its number; progress against the chunks expected", () => {
  const conversation = new Conversation();
  const turn = conversation.turn("t1");
  turn.sentences.set(0, "Paris is the capital.");
  turn.chunks = 2;
  turn.expected = 4;
  const box = new NowPlaying(conversation);
  assert.deepEqual(box.update(player({ current: { turn: "t1", sentence: 0 }, played: 1, playedByTurn: [["t1", 1]] })),
    { played: "1", sentence: "Paris is the capital.", progress: { value: 0.25, text: "25%" } });
  assert.equal(box.update(player({ current: { turn: "t1", sentence: 1 } })).sentence, "sentence 2");
});

test("once played out, the last turn's progress stays shown", () => {
  const conversation = new Conversation();
  conversation.turn("t1").chunks = 3; // expected not known yet: the chunks received count
  const box = new NowPlaying(conversation);
  box.update(player({ current: { turn: "t1", sentence: 0 } }));
  const shown = box.update(player({ played: 3, playedByTurn: [["t1", 3]] }));
  assert.equal(box.lastTurn, "t1");
  assert.deepEqual(shown, { played: "3", sentence: "nothing", progress: { value: 1, text: "100%" } });
});
