// Resume bookkeeping: the page keeps the newest log id and drops repeats (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventCursor, compareIds } from "../../deployments/api/static/cursor.js";

test("ids compare as numbers, not strings", () => {
  assert.ok(compareIds("9-0", "10-0") < 0);
  assert.ok(compareIds("10-2", "10-10") < 0);
  assert.equal(compareIds("5-1", "5-1"), 0);
  assert.ok(compareIds("1700000000001-0", "1700000000000-99") > 0);
});

test("new events move the cursor; repeats are dropped and counted", () => {
  const c = new EventCursor("1-0");
  assert.ok(c.accept({ id: "1-1" }));
  assert.ok(c.accept({ id: "2-0" }));
  assert.equal(c.accept({ id: "1-1" }), false);
  assert.equal(c.accept({ id: "2-0" }), false);
  assert.equal(c.duplicates, 2);
  assert.equal(c.lastId, "2-0");
  assert.deepEqual(c.ids, ["1-1", "2-0"]);
});

test("frames without an id pass and leave the cursor alone", () => {
  const c = new EventCursor();
  assert.ok(c.accept({ type: "session.created" }));
  assert.equal(c.lastId, null);
});

test("the reconnect query resumes after the newest id", () => {
  const c = new EventCursor();
  assert.equal(c.query("tok"), "token=tok");
  c.accept({ id: "3-4" });
  assert.equal(c.query("tok"), "token=tok&last_event_id=3-4");
});

test("the id list is bounded", () => {
  const c = new EventCursor(null, { keep: 2 });
  for (const id of ["1-0", "2-0", "3-0"]) c.accept({ id });
  assert.deepEqual(c.ids, ["2-0", "3-0"]);
});
