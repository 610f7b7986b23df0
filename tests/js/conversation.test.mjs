// The conversation's state: turns made on first mention, a bounded record of events
// (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Conversation, newTurn } from "../../deployments/api/static/conversation.js";

test("a turn is made on first mention, then the same one", () => {
  const c = new Conversation();
  const t = c.turn("t1");
  assert.deepEqual({ ...t, sentences: [...t.sentences] }, { ...newTurn(), sentences: [] });
  t.reply = "x";
  assert.equal(c.turn("t1").reply, "x");
  assert.deepEqual([...c.turns.keys()], ["t1"]);
});

test("events are recorded in order, bounded, and feed the latency figures", () => {
  const c = new Conversation({ maxEvents: 2 });
  assert.equal(c.record({ id: "1-0", type: "input.text", turn_id: "t1", ts: 100 }), "t1");
  assert.equal(c.record({ type: "session.created" }), null);
  assert.equal(c.record({ id: "2-0", type: "response.text.delta", turn_id: "t1", ts: 150 }), "t1");
  assert.deepEqual(c.events, [
    { id: null, type: "session.created", turn_id: null },
    { id: "2-0", type: "response.text.delta", turn_id: "t1" },
  ]);
  assert.equal(c.timings.figures("t1").firstToken, 50);
});

test("clear forgets turns, events and timings", () => {
  const c = new Conversation();
  c.turn("t1");
  c.record({ id: "1-0", type: "input.text", turn_id: "t1", ts: 1 });
  c.clear();
  assert.equal(c.turns.size, 0);
  assert.deepEqual(c.events, []);
  assert.equal(c.timings.turns.size, 0);
});
