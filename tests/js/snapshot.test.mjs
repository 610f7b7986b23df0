// `window.voxline.snapshot()`: the page's state as plain, copied data (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Conversation } from "../../deployments/api/static/conversation.js";
import { pageSnapshot } from "../../deployments/api/static/snapshot.js";

test("before any session: zeros and empties", () => {
  const snap = pageSnapshot({ session: null, status: "", connection: null,
    conversation: new Conversation(), context: null, player: null });
  assert.deepEqual(snap, {
    sessionId: null, token: null, status: "", connected: false, transport: "none", reconnects: 0, duplicates: 0,
    eventIds: [], events: [], audioTime: 0, audioState: "none", played: 0, started: 0,
    playing: false, scheduledAhead: 0, stops: [], settings: null, turns: [],
  });
});

test("a session in play: its counters, events and turns, copied", () => {
  const conversation = new Conversation();
  conversation.record({ id: "1-0", type: "input.text", turn_id: "t1", ts: 1 });
  Object.assign(conversation.turn("t1"), { user: "q", reply: "a", mode: "streaming",
    status: "completed", chunks: 2, expected: 2 });
  const connection = { open_: true, kind: "webrtc", reconnects: 1,
                       cursor: { duplicates: 0, ids: ["1-0"] } };
  const player = {
    played: 2, started: 2, playing: false, stops: [{ reason: "user", cut: 0 }],
    playedByTurn: new Map([["t1", 2]]), schedule: { remaining: (now) => (now === 3 ? 0.5 : -1) },
  };
  const session = { session_id: "s1", token: "tok", settings: { voice: null } };
  const snap = pageSnapshot({ session, status: "Connected.", connection, conversation,
    context: { currentTime: 3, state: "running" }, player });
  assert.deepEqual(snap, {
    sessionId: "s1", token: "tok", status: "Connected.", connected: true, transport: "webrtc",
    reconnects: 1,
    duplicates: 0, eventIds: ["1-0"], events: [{ id: "1-0", type: "input.text", turn_id: "t1" }],
    audioTime: 3, audioState: "running", played: 2, started: 2, playing: false,
    scheduledAhead: 0.5, stops: [{ reason: "user", cut: 0 }], settings: { voice: null },
    turns: [{ id: "t1", user: "q", reply: "a", mode: "streaming", status: "completed",
      chunks: 2, expected: 2, narrated: false, played: 2 }],
  });
  snap.events[0].type = "changed";
  snap.eventIds.push("2-0");
  snap.stops[0].reason = "changed";
  assert.equal(conversation.events[0].type, "input.text");
  assert.deepEqual(connection.cursor.ids, ["1-0"]);
  assert.equal(player.stops[0].reason, "user");
});
