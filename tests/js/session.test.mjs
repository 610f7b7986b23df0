// The session's lifecycle: made, replayed, needed while being made, and what is sent on it,
// with the API, the socket and the page faked (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Conversation } from "../../deployments/api/static/conversation.js";
import { Sessions, connectionStatusText } from "../../deployments/api/static/session.js";

class FakeConnection {
  constructor(options) {
    this.options = options;
    this.sent = [];
    this.opened = false;
    this.closed = false;
  }
  open() { this.opened = true; }
  close() { this.closed = true; }
  send(message) { this.sent.push(message); }
}

const json = (body) => ({ json: async () => body, text: async () => body });

/** Sessions on a fake API: `routes` maps "METHOD path" to a body (or a function of it). */
function sessions(routes = {}) {
  const calls = [];
  const handled = [];
  const said = [];
  const connections = [];
  const conversation = new Conversation();
  const events = {
    conversation, replaying: false,
    handle(event) { handled.push({ type: event.type, replaying: this.replaying }); conversation.record(event); },
  };
  const api = async (path, options = {}) => {
    const route = `${options.method ?? "GET"} ${path.split("?")[0]}`;
    calls.push({ route, path, options });
    const answer = routes[route];
    if (answer === undefined) throw new Error(`no route ${route}`);
    return json(typeof answer === "function" ? await answer(options) : answer);
  };
  const s = new Sessions({
    api, events, say: (text) => said.push(text),
    ensureAudio: () => calls.push({ route: "ensureAudio" }),
    clearPage: () => calls.push({ route: "clearPage" }),
    connection: (options) => { const c = new FakeConnection(options); connections.push(c); return c; },
    formSettings: () => ({ voice: null, language: "en" }),
    showSettings: (settings) => calls.push({ route: "showSettings", settings }),
    showSessionId: (text) => calls.push({ route: "showSessionId", text }),
  });
  return { s, calls, handled, said, connections, events };
}

const CREATED = { session_id: "sess_1", token: "tok", settings: { input_sample_rate: 16000 } };
const MADE = { "POST /v1/sessions": CREATED, "GET /v1/sessions/sess_1": { last_event_id: "5-0" } };

test("a new session: created with the form's settings, shown, then its socket resumes from creation", async () => {
  const { s, calls, connections } = sessions(MADE);
  const session = await s.create();
  assert.deepEqual(session, { session_id: "sess_1", token: "tok", settings: CREATED.settings });
  assert.deepEqual(JSON.parse(calls.find((c) => c.route === "POST /v1/sessions").options.body),
    { settings: { voice: null, language: "en", output_format: "pcm16", input_sample_rate: 16000 } });
  assert.deepEqual(calls.find((c) => c.route === "GET /v1/sessions/sess_1").options.headers,
    { "x-voxline-token": "tok" });
  assert.deepEqual(calls.map((c) => c.route), ["ensureAudio", "clearPage", "POST /v1/sessions",
    "showSessionId", "showSettings", "GET /v1/sessions/sess_1"]);
  const [connection] = connections;
  assert.equal(s.connection, connection);
  assert.ok(connection.opened);
  assert.equal(connection.options.sessionId, "sess_1");
  assert.equal(connection.options.token, "tok");
  assert.equal(connection.options.lastEventId, "5-0");
});

test("the socket's events go to the handler, its states to the status line", async () => {
  const { s, handled, said, connections } = sessions(MADE);
  await s.create();
  connections[0].options.onEvent({ type: "input.text" });
  connections[0].options.onStatus("resumed", "7-0");
  assert.deepEqual(handled, [{ type: "input.text", replaying: false }]);
  assert.deepEqual(said, [connectionStatusText("resumed", "7-0")]);
});

test("whoever needs the session while it is being made waits for that one", async () => {
  let letSummaryGo;
  const held = new Promise((resolve) => { letSummaryGo = resolve; });
  const { s, calls, connections } = sessions({
    ...MADE, "GET /v1/sessions/sess_1": async () => { await held; return { last_event_id: "5-0" }; },
  });
  const making = s.setUp(() => s.create());
  const sending = s.sendText("hello"); // typed while the session is being made
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(s.session, null); // not current before its socket
  letSummaryGo();
  assert.equal(await sending, true);
  assert.equal(await making, s.session);
  assert.equal(calls.filter((c) => c.route === "POST /v1/sessions").length, 1);
  assert.deepEqual(connections[0].sent, [{ type: "input.text", text: "hello" }]);
  assert.equal(s.beingMade, null);
  assert.equal(await s.need(), s.session); // made once, then reused
  assert.equal(connections.length, 1);
});

test("a session that could not be made is made again on the next need", async () => {
  let fail = true;
  const { s, said } = sessions({
    ...MADE,
    "POST /v1/sessions": () => { if (fail) throw new Error("busy"); return CREATED; },
  });
  assert.equal(await s.sendText("hi"), false);
  assert.deepEqual(said, ["Error: busy"]);
  fail = false;
  assert.equal((await s.need()).session_id, "sess_1");
});

test("a past session is replayed from its log, then continued live after its last event", async () => {
  const log = ['data: {"id": "1-0", "type": "session.created", "data": {}}',
               'data: {"id": "2-0", "type": "input.text", "turn_id": "t1", "data": {"text": "q"}}'].join("\n\n");
  const { s, calls, handled, said, connections, events } = sessions({ "GET /v1/sessions/sess%209/events": log });
  const session = await s.openPast("sess 9", "tok");
  assert.deepEqual(session, { session_id: "sess 9", token: "tok", settings: null });
  assert.equal(calls.at(-1).path, "/v1/sessions/sess%209/events?follow=false&token=tok");
  assert.deepEqual(handled.map((h) => h.replaying), [true, true]);
  assert.equal(events.replaying, false);
  assert.deepEqual(said, ["Replaying the session…", "Replayed 2 events."]);
  assert.equal(connections[0].options.lastEventId, "2-0");
  assert.equal(connections[0].options.sessionId, "sess 9");
});

test("a closed past session is replayed but not reconnected", async () => {
  const log = 'data: {"id": "1-0", "type": "session.closed", "data": {}}';
  const { s, connections } = sessions({ "GET /v1/sessions/sess_2/events": log });
  assert.equal((await s.openPast("sess_2", "tok")).session_id, "sess_2");
  assert.deepEqual(connections, []);
  assert.equal(await s.sendText("more?"), false); // no socket: the session has ended
});

test("a past session that cannot be read leaves no session", async () => {
  const { s, said, events } = sessions({});
  assert.equal(await s.openPast("sess_3", "bad"), null);
  assert.equal(s.session, null);
  assert.equal(events.replaying, false);
  assert.equal(said.at(-1), "Could not open the session: no route GET /v1/sessions/sess_3/events");
});

test("a new session closes the old socket and clears the page", async () => {
  const { s, calls, connections } = sessions(MADE);
  await s.create();
  await s.create();
  assert.ok(connections[0].closed);
  assert.equal(s.connection, connections[1]);
  assert.equal(calls.filter((c) => c.route === "clearPage").length, 2);
});

test("settings and cancels go on the socket; without one, settings wait", async () => {
  const { s, said, connections } = sessions(MADE);
  s.update();
  s.cancelReply(); // nothing to cancel: no error
  assert.deepEqual(said, ["Settings will be used for the next session."]);
  await s.create();
  s.update();
  s.cancelReply();
  assert.deepEqual(connections[0].sent, [
    { type: "session.update", settings: { voice: null, language: "en" } },
    { type: "response.cancel" },
  ]);
  assert.equal(said.at(-1), "Applying settings…");
});

test("a reply cut short is truncated to what was played; a narration is not", async () => {
  const { s, connections, events } = sessions(MADE);
  s.truncate("t1", 700); // no socket yet: nothing to send, no error
  await s.create();
  events.conversation.turn("t1").mode = "streaming";
  events.conversation.turn("t2").mode = "text"; // a text reply narrated: its text was shown
  s.truncate("t1", 700);
  s.truncate("t2", 300);
  assert.deepEqual(connections[0].sent, [
    { type: "response.truncate", turn_id: "t1", audio_end_ms: 700 },
  ]);
});

test("the socket's states in words", () => {
  assert.equal(connectionStatusText("connected"), "Connected.");
  assert.match(connectionStatusText("resumed", null), /resumed after event \(start\)/);
  assert.match(connectionStatusText("refused", "4401 unauthorized"), /token or API key/);
  assert.equal(connectionStatusText("refused", "4404 gone"), "The server refused the connection (4404 gone).");
  assert.equal(connectionStatusText("something"), "something");
});

// ---- over a call --------------------------------------------------------------------------

class FakeCall extends FakeConnection {
  constructor(options, outcome) {
    super(options);
    this.outcome = outcome;
    this.cursor = { lastId: "6-0", ids: ["6-0"] };
    this.setMicrophone = async () => {};
  }
  async open() {
    this.opened = true;
    if (this.outcome !== "ok") throw new Error(this.outcome);
  }
}

function withCalls(outcome, created = { ...CREATED, settings: { input_sample_rate: 48000,
  output_sample_rate: 48000, output_format: "pcm16" } }) {
  const routes = { ...MADE, "POST /v1/sessions": created };
  const made = sessions(routes);
  made.calls_ = [];
  made.s.ports.wantsCall = () => true;
  made.s.ports.call = (options) => { const c = new FakeCall(options, outcome); made.calls_.push(c); return c; };
  return made;
}

test("where calls are wanted, a session is made with a call's formats and talks over one", async () => {
  const { s, calls, connections, calls_ } = withCalls("ok");
  await s.create();
  assert.deepEqual(JSON.parse(calls.find((c) => c.route === "POST /v1/sessions").options.body).settings,
    { voice: null, language: "en", input_sample_rate: 48000, output_sample_rate: 48000,
      output_format: "pcm16" });
  assert.equal(calls_.length, 1);
  assert.equal(calls_[0].options.lastEventId, "5-0");
  assert.equal(s.connection, calls_[0]);
  assert.equal(connections.length, 0); // no socket
});

test("a call that cannot be made falls back to the socket from its cursor, saying why", async () => {
  const { s, connections, calls_, said } = withCalls("415 unsupported_format");
  await s.create();
  assert.equal(calls_.length, 1);
  const [socket] = connections;
  assert.equal(s.connection, socket);
  assert.ok(socket.opened);
  assert.equal(socket.options.cursor, calls_[0].cursor);
  socket.options.onStatus("connected");
  assert.match(said.at(-1), /^Connected\. Audio over the socket: no call \(415 unsupported_format\)\.$/);
});

test("a call that drops goes on over the socket; a stale drop is ignored", async () => {
  const { s, connections, calls_ } = withCalls("ok");
  await s.create();
  const [call] = calls_;
  call.options.onLost(call.cursor);
  assert.equal(connections.length, 1);
  assert.equal(s.connection, connections[0]);
  assert.equal(connections[0].options.cursor, call.cursor);
  call.options.onLost(call.cursor); // again: not the current connection any more
  assert.equal(connections.length, 1);
});

test("a session made at other rates talks over the socket even where calls are wanted", async () => {
  const { s, connections, calls_ } = withCalls("ok", CREATED);
  await s.create();
  assert.equal(calls_.length, 0);
  assert.equal(connections.length, 1);
});

test("over a call the page sends no truncation: the server knows what its track played", async () => {
  const { s, calls_ } = withCalls("ok");
  await s.create();
  calls_[0].serverTruncates = true;
  s.truncate("turn_1", 300);
  assert.deepEqual(calls_[0].sent, []);
});
