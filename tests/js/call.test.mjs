// The session over WebRTC (call.js), with the peer connection, fetch and the player
// faked (node --test tests/js): the offer posted with the token and cursor, events in
// through the cursor, the microphone's track, refusals, a drop, hanging up, and the
// silence that times a reply whose audio the track plays.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CALL_FORMATS, CHANNEL, CallConnection, callable, canCall, silentStandIn,
} from "../../deployments/api/static/call.js";

class FakeChannel {
  constructor(label) { this.label = label; this.readyState = "connecting"; this.sent = []; }
  send(text) { this.sent.push(JSON.parse(text)); }
  open() { this.readyState = "open"; this.onopen?.(); }
  shut() { this.readyState = "closed"; this.onclose?.(); }
}

class FakePeer {
  static made = [];
  constructor() {
    this.tracks = [];
    this.closed = false;
    this.iceGatheringState = "complete";
    this.connectionState = "new";
    FakePeer.made.push(this);
  }
  addTransceiver(kind, init) {
    this.transceiver = { kind, init, sender: { replaceTrack: async (t) => this.tracks.push(t) } };
    return this.transceiver;
  }
  createDataChannel(label) { this.channel = new FakeChannel(label); return this.channel; }
  async createOffer() { return { type: "offer", sdp: "v=0 offer" }; }
  async setLocalDescription(d) { this.localDescription = d; }
  async setRemoteDescription(d) { this.remoteDescription = d; queueMicrotask(() => this.channel.open()); }
  addEventListener() {}
  close() { this.closed = true; }
}

function response(status, body, headers = {}) {
  return {
    status, headers: { get: (name) => headers[name.toLowerCase()] ?? null },
    text: async () => body, json: async () => JSON.parse(body),
  };
}

function call({ answer = () => response(201, "v=0 answer", { location: "/v1/sessions/s1/calls/rtc_1" }),
                lastEventId = "7-0", timeoutMs = 200 } = {}) {
  const state = { fetched: [], events: [], statuses: [], lost: [], played: [] };
  const connection = new CallConnection({
    baseUrl: "http://h", sessionId: "s1", token: "tok", lastEventId, timeoutMs,
    apiKey: () => "sk",
    onEvent: (e) => state.events.push(e), onStatus: (k) => state.statuses.push(k),
    onLost: (cursor) => state.lost.push(cursor),
    rtc: {
      RTCPeerConnection: FakePeer,
      fetch: async (url, init) => { state.fetched.push({ url, init }); return answer(url, init); },
      playRemote: (event) => state.played.push(event),
    },
  });
  return { connection, state };
}

test("a call posts its offer with the token, the key and the cursor, then takes events", async () => {
  const { connection, state } = call();
  await connection.open();
  const [{ url, init }] = state.fetched;
  assert.equal(url, "http://h/v1/sessions/s1/calls?last_event_id=7-0");
  assert.equal(init.body, "v=0 offer");
  assert.deepEqual(init.headers, { "X-Voxline-Token": "tok", Authorization: "Bearer sk",
                                   "Content-Type": "application/sdp" });
  const pc = connection.pc;
  assert.equal(pc.channel.label, CHANNEL);
  assert.deepEqual(pc.transceiver.init, { direction: "sendrecv" });
  assert.deepEqual(pc.remoteDescription, { type: "answer", sdp: "v=0 answer" });
  assert.ok(connection.open_);
  assert.deepEqual(state.statuses, ["call"]);
  pc.channel.onmessage({ data: JSON.stringify({ id: "8-0", type: "response.started" }) });
  pc.channel.onmessage({ data: JSON.stringify({ id: "7-0", type: "old" }) }); // a repeat
  assert.deepEqual(state.events.map((e) => e.type), ["response.started"]);
  connection.send({ type: "input.text", text: "hi" });
  assert.deepEqual(pc.channel.sent, [{ type: "input.text", text: "hi" }]);
  connection.sendAudio(new ArrayBuffer(4)); // the track carries audio: nothing sent
  assert.equal(pc.channel.sent.length, 1);
  pc.ontrack({ track: "remote" });
  assert.deepEqual(state.played, [{ track: "remote" }]);
});

test("the microphone's track goes to the call, before it opens or after", async () => {
  const early = call().connection;
  await early.setMicrophone("mic-1");
  await early.open();
  assert.deepEqual(early.pc.tracks, ["mic-1"]);
  await early.setMicrophone(null);
  assert.deepEqual(early.pc.tracks, ["mic-1", null]);
});

test("a refused offer rejects open and leaves nothing open", async () => {
  const { connection } = call({ answer: () => response(415, JSON.stringify(
    { error: { code: "unsupported_format" } })) });
  await assert.rejects(connection.open(), /415 unsupported_format/);
  assert.ok(FakePeer.made.at(-1).closed);
  assert.equal(connection.pc, null);
});

test("a connection that never comes up rejects open in time", async () => {
  const { connection } = call();
  FakePeer.prototype.setRemoteDescription = async function stuck(d) { this.remoteDescription = d; };
  try {
    await assert.rejects(connection.open(), /did not come up/);
  } finally {
    FakePeer.prototype.setRemoteDescription = async function (d) {
      this.remoteDescription = d; queueMicrotask(() => this.channel.open());
    };
  }
  assert.ok(FakePeer.made.at(-1).closed);
});

test("a dropped call hands its cursor on once; hanging up posts the hangup", async () => {
  const { connection, state } = call();
  await connection.open();
  const pc = connection.pc;
  pc.channel.onmessage({ data: JSON.stringify({ id: "9-0", type: "x" }) });
  pc.channel.shut();
  pc.connectionState = "failed";
  assert.equal(state.lost.length, 1);
  assert.equal(state.lost[0].lastId, "9-0");
  assert.ok(pc.closed);
  const second = call();
  await second.connection.open();
  second.connection.close();
  const hangup = second.state.fetched.at(-1);
  assert.equal(hangup.url, "http://h/v1/sessions/s1/calls/rtc_1/hangup");
  assert.equal(hangup.init.headers["X-Voxline-Token"], "tok");
  assert.deepEqual(second.state.lost, []); // hanging up is not a drop
  assert.equal(second.state.statuses.at(-1), "closed");
});

test("a call's session has Opus's rate both ways", () => {
  assert.ok(callable({ ...CALL_FORMATS, input_format: "pcm16" }));
  assert.ok(!callable({ ...CALL_FORMATS, input_sample_rate: 16000 }));
  assert.ok(!callable({ ...CALL_FORMATS, output_format: "mp3" }));
  assert.ok(!callable(null));
  assert.ok(canCall({ RTCPeerConnection: FakePeer }) && !canCall({}));
});

test("silent stand-ins last as long as each chunk, from the turn's previous end", () => {
  const ends = new Map();
  const rate = 48000;
  assert.equal(silentStandIn(ends, "t1", { end_ms: 100, sample_rate: rate }).length, 4800 * 2);
  assert.equal(silentStandIn(ends, "t1", { end_ms: 250, sample_rate: rate }).length, 7200 * 2);
  assert.equal(silentStandIn(ends, "t2", { end_ms: 20, sample_rate: rate }).length, 960 * 2);
  assert.equal(silentStandIn(ends, "t1", { sample_rate: rate }).length, 2); // no end_ms: a sample
  for (let i = 0; i < 20; i += 1) silentStandIn(ends, `x${i}`, { end_ms: 1, sample_rate: rate });
  assert.ok(ends.size <= 8);
});
