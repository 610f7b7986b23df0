// The session socket's resume logic, with a fake WebSocket (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";

class FakeSocket {
  static OPEN = 1;
  static all = [];
  constructor(url, protocols = []) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  open() { this.readyState = FakeSocket.OPEN; this.onopen(); }
  receive(event) { this.onmessage({ data: JSON.stringify(event) }); }
  send(data) { this.sent.push(data); }
  close(code = 1000, reason = "") { this.readyState = 3; this.onclose({ code, reason }); }
}
globalThis.WebSocket = FakeSocket;
const { SessionConnection } = await import("../../deployments/api/static/connection.js");

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function connection() {
  const events = [];
  const statuses = [];
  const conn = new SessionConnection({
    baseUrl: "http://127.0.0.1:8000", sessionId: "s1", token: "tok", lastEventId: "1-0",
    onEvent: (e) => events.push(e.id), onStatus: (kind) => statuses.push(kind),
  });
  return { conn, events, statuses };
}

test("a dropped socket reconnects after the newest id seen; repeats are dropped", async () => {
  FakeSocket.all = [];
  const { conn, events, statuses } = connection();
  conn.open();
  const first = FakeSocket.all[0];
  assert.equal(first.url, "ws://127.0.0.1:8000/v1/sessions/s1/ws?token=tok&last_event_id=1-0");
  first.open();
  first.receive({ id: "1-1", type: "input.text" });
  first.receive({ id: "2-0", type: "response.started" });
  conn.send({ type: "input.text", text: "sent while open" });
  first.close(1006, "network");
  conn.send({ type: "response.cancel" }); // while reconnecting: queued
  await wait(300);
  const second = FakeSocket.all[1];
  assert.ok(second.url.endsWith("last_event_id=2-0"));
  second.open();
  assert.deepEqual(second.sent, [JSON.stringify({ type: "response.cancel" })]);
  second.receive({ id: "2-0", type: "response.started" }); // a repeat: dropped
  second.receive({ id: "3-0", type: "response.done" });
  assert.deepEqual(events, ["1-1", "2-0", "3-0"]);
  assert.equal(conn.cursor.duplicates, 1);
  assert.equal(conn.reconnects, 1);
  assert.deepEqual(statuses, ["connected", "reconnecting", "resumed"]);
  conn.close();
});

test("a refusal that retrying cannot fix ends the connection", async () => {
  FakeSocket.all = [];
  const { conn, statuses } = connection();
  conn.open();
  FakeSocket.all[0].close(4403, "forbidden");
  await wait(300);
  assert.equal(FakeSocket.all.length, 1);
  assert.deepEqual(statuses, ["refused"]);
});

test("closing on purpose does not reconnect", async () => {
  FakeSocket.all = [];
  const { conn, statuses } = connection();
  conn.open();
  FakeSocket.all[0].open();
  conn.close();
  await wait(300);
  assert.equal(FakeSocket.all.length, 1);
  assert.deepEqual(statuses, ["connected", "closed"]);
});

test("an API key goes as a subprotocol beside ours, read at each connection", async () => {
  FakeSocket.all = [];
  let key = "";
  const conn = new SessionConnection({
    baseUrl: "http://127.0.0.1:8000", sessionId: "s1", token: "tok",
    onEvent: () => {}, onStatus: () => {}, apiKey: () => key,
  });
  conn.open();
  assert.deepEqual(FakeSocket.all[0].protocols, []); // no key: nothing offered
  FakeSocket.all[0].open();
  key = "sk-1";
  FakeSocket.all[0].close(1006, "network");
  await wait(300);
  assert.deepEqual(FakeSocket.all[1].protocols, ["voxline", "openai-insecure-api-key.sk-1"]);
  conn.close();
});
