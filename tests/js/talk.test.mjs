// The microphone button and push to talk, with the microphone and the socket faked
// (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { COMMIT_LAG_MS, HANDS_FREE, MicControl, PUSH_TO_TALK, isTalkKey } from "../../deployments/api/static/talk.js";
import { FakeElement } from "./fake-dom.mjs";

class FakeMicrophone {
  constructor(rate, handlers, { fails = false } = {}) {
    this.rate = rate;
    this.handlers = handlers;
    this.fails = fails;
    this.running = false;
    this.track = null;
  }
  async start() {
    if (this.fails) throw new Error("Permission denied");
    this.running = true;
    this.track = { enabled: true };
  }
  stop() { this.running = false; this.track = null; }
}

function control({ mode = HANDS_FREE, connected = true, fails = false, settings = {},
                   call = false } = {}) {
  const state = { mode, mics: [], said: [], stops: [], levels: [], sent: [], audio: [],
                  tracks: [], waits: [] };
  const connection = { send: (m) => state.sent.push(m), sendAudio: (pcm) => state.audio.push(pcm) };
  if (call) connection.setMicrophone = async (track) => state.tracks.push(track);
  state.connection = connected ? connection : null;
  const micButton = new FakeElement("button");
  const talkButton = new FakeElement("button");
  talkButton.disabled = true;
  const mic = new MicControl({
    micButton, talkButton, mode: () => state.mode,
    needSession: async () => ({ session_id: "s", settings }),
    microphone: (rate, handlers) => {
      const m = new FakeMicrophone(rate, handlers, { fails });
      state.mics.push(m);
      return m;
    },
    connection: () => state.connection,
    showLevel: (level) => state.levels.push(level),
    stopPlayback: (reason) => state.stops.push(reason),
    say: (text) => state.said.push(text),
    wait: (ms) => new Promise((resolve) => state.waits.push({ ms, resolve })),
  });
  return { mic, state, micButton, talkButton };
}

test("hands-free: on, every frame is sent; off, the utterance is committed", async () => {
  const { mic, state, micButton, talkButton } = control({ settings: { input_sample_rate: 24000 } });
  await mic.toggle();
  const [m] = state.mics;
  assert.equal(m.rate, 24000);
  assert.ok(mic.running);
  assert.equal(micButton.getAttribute("aria-pressed"), "true");
  assert.equal(micButton.textContent, "Microphone off");
  assert.equal(talkButton.disabled, true);
  assert.deepEqual(state.said, ["Listening (hands-free)."]);
  m.handlers.onFrame("pcm-1");
  m.handlers.onLevel(0.1);
  m.handlers.onLevel(0.5); // the meter shows level × 4, at most 1
  assert.deepEqual(state.audio, ["pcm-1"]);
  assert.deepEqual(state.levels, [0.4, 1]);
  await mic.toggle();
  assert.equal(mic.running, false);
  assert.equal(micButton.getAttribute("aria-pressed"), "false");
  assert.equal(micButton.textContent, "Microphone on");
  assert.deepEqual(state.sent, [{ type: "input_audio.commit" }]);
});

test("the session's rate is used, 16 kHz when it has none yet", async () => {
  const { mic, state } = control({ settings: null });
  await mic.toggle();
  assert.equal(state.mics[0].rate, 16000);
});

test("push to talk: frames only while held; holding silences the reply, letting go commits", async () => {
  const { mic, state, talkButton } = control({ mode: PUSH_TO_TALK });
  await mic.toggle();
  assert.equal(talkButton.disabled, false);
  assert.deepEqual(state.said, ["Hold the talk button to speak."]);
  const [m] = state.mics;
  m.handlers.onFrame("before");
  mic.talk(true);
  mic.talk(true); // held already: nothing more
  assert.equal(talkButton.getAttribute("aria-pressed"), "true");
  m.handlers.onFrame("held");
  mic.talk(false);
  mic.talk(false);
  m.handlers.onFrame("after");
  assert.equal(talkButton.getAttribute("aria-pressed"), "false");
  assert.deepEqual(state.audio, ["held"]);
  assert.deepEqual(state.stops, ["push-to-talk"]);
  assert.deepEqual(state.sent, [{ type: "response.cancel" }, { type: "input_audio.commit" }]);
});

test("the talk button does nothing with the microphone off, and frames without a socket go nowhere", async () => {
  const { mic, state, talkButton } = control({ mode: PUSH_TO_TALK, connected: false });
  mic.talk(true);
  assert.equal(mic.talking, false);
  assert.equal(talkButton.getAttribute("aria-pressed"), null);
  await mic.toggle();
  mic.talk(true);
  state.mics[0].handlers.onFrame("pcm");
  mic.talk(false);
  assert.deepEqual(state.audio, []);
  assert.deepEqual(state.sent, []);
  assert.deepEqual(state.stops, ["push-to-talk"]);
});

test("the talk button works only push to talk with the microphone on", async () => {
  const { mic, state, talkButton } = control({ mode: PUSH_TO_TALK });
  mic.modeChanged();
  assert.equal(talkButton.disabled, true); // microphone off
  await mic.toggle();
  state.mode = HANDS_FREE;
  mic.modeChanged();
  assert.equal(talkButton.disabled, true);
  state.mode = PUSH_TO_TALK;
  mic.modeChanged();
  assert.equal(talkButton.disabled, false);
});

test("a microphone that cannot start is said, and the button stays off", async () => {
  const { mic, state, micButton } = control({ fails: true });
  await mic.toggle();
  assert.deepEqual(state.said, ["No microphone: Permission denied"]);
  assert.equal(micButton.getAttribute("aria-pressed"), null);
  assert.equal(mic.running, false);
});

test("Space and Enter hold the talk button; other keys do not", () => {
  assert.ok(isTalkKey(" "));
  assert.ok(isTalkKey("Enter"));
  assert.equal(isTalkKey("a"), false);
  assert.equal(isTalkKey("Spacebar"), false);
});

test("over a call: the track goes to the call, sounds only while held, and the commit waits", async () => {
  const { mic, state } = control({ mode: PUSH_TO_TALK, call: true });
  await mic.toggle();
  const [m] = state.mics;
  const track = m.track;
  assert.deepEqual(state.tracks, [track]);
  assert.equal(m.track.enabled, false); // push to talk, not held
  mic.talk(true);
  assert.equal(m.track.enabled, true);
  assert.deepEqual(state.sent, [{ type: "response.cancel" }]);
  mic.talk(false);
  assert.equal(m.track.enabled, true); // the last words are still on their way
  assert.deepEqual(state.sent, [{ type: "response.cancel" }]);
  const [{ ms, resolve }] = state.waits;
  assert.equal(ms, COMMIT_LAG_MS);
  resolve();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(state.sent.at(-1), { type: "input_audio.commit" });
  assert.equal(m.track.enabled, false);
  state.mode = HANDS_FREE;
  mic.modeChanged();
  assert.equal(m.track.enabled, true);
  const off = mic.toggle();
  state.waits.at(-1).resolve();
  await off;
  assert.deepEqual(state.tracks, [track, null]);
  assert.deepEqual(state.sent.at(-1), { type: "input_audio.commit" });
});
