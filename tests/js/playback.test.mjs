// The playback schedule: chunk order, gapless starts, stop at once (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { PlaybackSchedule, pcm16Duration } from "../../deployments/api/static/playback.js";

const chunk = (index, { turn = "t1", duration = 0.5, sentence = 0 } = {}) =>
  ({ turn, index, duration, sentence });

test("the first chunk starts at once, the next ones back to back", () => {
  const s = new PlaybackSchedule({ lead: 0.01 });
  const [a] = s.add(chunk(0), 10);
  assert.equal(a.when, 10.01);
  const [b] = s.add(chunk(1), 10.2); // arrives while the first still plays
  assert.equal(b.when, a.end); // gapless
  const [c] = s.add(chunk(2, { duration: 0.25 }), 10.3);
  assert.equal(c.when, b.end);
  assert.equal(s.remaining(10.3), c.end - 10.3);
});

test("a chunk that arrives after the queue ran dry starts now, not in the past", () => {
  const s = new PlaybackSchedule({ lead: 0.02 });
  s.add(chunk(0), 0);
  const [b] = s.add(chunk(1), 5);
  assert.equal(b.when, 5.02);
});

test("chunks that arrive out of order play in index order", () => {
  const s = new PlaybackSchedule({ lead: 0 });
  assert.deepEqual(s.add(chunk(1), 0), []);
  assert.deepEqual(s.add(chunk(2), 0), []);
  const ready = s.add(chunk(0), 0);
  assert.deepEqual(ready.map((e) => e.index), [0, 1, 2]);
  assert.deepEqual(ready.map((e) => e.when), [0, 0.5, 1]);
});

test("a repeated chunk is dropped", () => {
  const s = new PlaybackSchedule();
  assert.equal(s.add(chunk(0), 0).length, 1);
  assert.equal(s.add(chunk(0), 0).length, 0);
  s.add(chunk(2), 0);
  assert.equal(s.add(chunk(2), 0).length, 0);
});

test("stop empties the schedule and drops the stopped turn's late chunks", () => {
  const s = new PlaybackSchedule({ lead: 0 });
  s.add(chunk(0), 0);
  s.add(chunk(1), 0);
  const cut = s.stop(0.2);
  assert.deepEqual(cut.map((e) => e.index), [0, 1]);
  assert.equal(s.remaining(0.2), 0);
  assert.deepEqual(s.scheduled(0.2), []);
  assert.deepEqual(s.add(chunk(2), 0.3), []);
  const [next] = s.add(chunk(0, { turn: "t2" }), 1); // the next turn plays normally
  assert.equal(next.when, 1);
});

test("a new turn queues after what is still playing; the old turn's stragglers are dropped", () => {
  const s = new PlaybackSchedule({ lead: 0 });
  const [a] = s.add(chunk(0), 0);
  const [b] = s.add(chunk(0, { turn: "t2" }), 0.1);
  assert.equal(b.when, a.end);
  assert.deepEqual(s.add(chunk(1), 0.2), []);
});

test("current() names the sentence being spoken", () => {
  const s = new PlaybackSchedule({ lead: 0 });
  s.add(chunk(0, { sentence: 0 }), 0);
  s.add(chunk(1, { sentence: 1 }), 0);
  assert.equal(s.current(0.25).sentence, 0);
  assert.equal(s.current(0.75).sentence, 1);
  assert.equal(s.current(2), null);
  s.prune(0.6);
  assert.deepEqual(s.entries.map((e) => e.index), [1]);
});

test("pcm16Duration", () => {
  assert.equal(pcm16Duration(48000, 24000), 1);
});

test("position: how far a turn played, in its chunks' end_ms", () => {
  const s = new PlaybackSchedule({ lead: 0 });
  const at = (index, endMs) => ({ ...chunk(index), endMs });
  s.add(at(0, 500), 0); // plays 0 → 0.5 s
  s.add(at(1, 1000), 0); // 0.5 → 1 s
  assert.equal(s.position(0), 0);
  assert.equal(s.position(0.25), 250);
  assert.equal(s.position(0.75), 750);
  s.prune(0.6); // chunk 0 ended and is forgotten; its end is remembered
  assert.equal(s.position(0.6), 600);
  assert.equal(s.position(2), 1000); // all played
  assert.equal(s.position(0.3, "another turn"), 0);
  s.stop(0.75);
  assert.equal(s.position(0.75), 500); // stopped: only what ended before
});

test("position: chunks without end_ms (an older server) count as not played", () => {
  const s = new PlaybackSchedule({ lead: 0 });
  s.add(chunk(0), 0);
  assert.equal(s.position(0.4), 0);
});

test("pause holds the clock; resume moves what is left later and cuts in where it stopped", () => {
  const s = new PlaybackSchedule({ lead: 0 });
  const at = (index, endMs) => ({ ...chunk(index), endMs });
  s.add(at(0, 500), 0); // 0 → 0.5 s
  s.add(at(1, 1000), 0); // 0.5 → 1 s
  s.pause(0.7);
  assert.ok(s.paused);
  assert.equal(s.position(3), 700); // the clock stopped at 0.7 s
  assert.equal(s.remaining(3).toFixed(3), "0.300");
  const [late] = s.add(at(2, 1500), 2); // arrives while paused: after the rest, as if at 0.7
  assert.equal(late.when, 1);
  s.prune(5); // nothing ended while paused
  const start = s.resume(5);
  assert.ok(!s.paused);
  assert.deepEqual(start.map(({ entry, offset }) => [entry.index, +(entry.when + offset).toFixed(3),
                                                     +offset.toFixed(3)]),
                   [[1, 5, 0.2], [2, 5.3, 0]]); // chunk 1 goes on 0.2 s in; chunk 2 after it
  assert.equal(s.position(5.1), 800);
  assert.deepEqual(s.resume(6), []); // not paused: nothing to do
});
