// A past session's log read back from its SSE body (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { replay, streamEvents } from "../../deployments/api/static/replay.js";

const sse = (...blocks) => blocks.join("\n\n") + "\n\n";

test("each block's data lines are one event; comments and typeless data are skipped", () => {
  const text = sse(
    ": keep-alive",
    'id: 1-0\nevent: input.text\ndata: {"id": "1-0", "type": "input.text",\ndata: "turn_id": "t1"}',
    'data: {"id": "2-0"}',
    'id: 3-0\ndata:{"id":"3-0","type":"response.done"}',
  );
  assert.deepEqual([...streamEvents(text)], [
    { id: "1-0", type: "input.text", turn_id: "t1" },
    { id: "3-0", type: "response.done" },
  ]);
});

test("replay hands over every event in order and says where to resume", () => {
  const handled = [];
  const text = sse('data: {"id": "1-0", "type": "session.created"}',
                   'data: {"type": "session.resync_required"}',
                   'data: {"id": "2-0", "type": "response.done"}');
  assert.deepEqual(replay(text, (e) => handled.push(e.type)), { lastId: "2-0", closed: false });
  assert.deepEqual(handled, ["session.created", "session.resync_required", "response.done"]);
});

test("a closed session is said closed; an empty log resumes from the start", () => {
  const closed = sse('data: {"id": "1-0", "type": "session.closed"}');
  assert.deepEqual(replay(closed, () => {}), { lastId: "1-0", closed: true });
  assert.deepEqual(replay("", () => {}), { lastId: null, closed: false });
});

test("a broken event stops the replay there, after the events before it", () => {
  const handled = [];
  const text = sse('data: {"id": "1-0", "type": "input.text"}', "data: {not json",
                   'data: {"id": "2-0", "type": "response.done"}');
  assert.throws(() => replay(text, (e) => handled.push(e.id)), SyntaxError);
  assert.deepEqual(handled, ["1-0"]);
});
