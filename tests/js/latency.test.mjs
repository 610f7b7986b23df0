// Per-turn latency figures from event timestamps (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { TurnTimings, figuresText, formatMs } from "../../deployments/api/static/latency.js";

const ev = (type, ts, turn_id = "t1") => ({ type, ts, turn_id });

test("a voice turn: STT, first token, first audio and voice to voice", () => {
  const t = new TurnTimings();
  t.add({ type: "input.speech_stopped", ts: 1000 });
  t.add(ev("input.audio", 1005));
  t.add(ev("transcript.final", 1400));
  t.add(ev("response.text.delta", 1480));
  t.add(ev("response.text.delta", 1500));
  t.add(ev("response.audio.chunk", 2000));
  t.add(ev("response.audio.chunk", 2100));
  assert.deepEqual(t.figures("t1", 30),
    { stt: 400, firstToken: 80, firstAudio: 1000, voiceToVoice: 1030 });
});

test("a typed turn has no STT and no voice to voice", () => {
  const t = new TurnTimings();
  t.add(ev("input.text", 100, "t2"));
  t.add(ev("response.text.delta", 150, "t2"));
  t.add(ev("response.audio.chunk", 600, "t2"));
  assert.deepEqual(t.figures("t2", 20),
    { stt: undefined, firstToken: 50, firstAudio: 500, voiceToVoice: undefined });
});

test("an unknown turn has no figures", () => {
  assert.deepEqual(new TurnTimings().figures("nope"),
    { stt: undefined, firstToken: undefined, firstAudio: undefined, voiceToVoice: undefined });
});

test("figures are written in ms, the unknown ones as a dash or left out", () => {
  assert.equal(formatMs(120), "120 ms");
  assert.equal(formatMs(0), "0 ms");
  assert.equal(formatMs(undefined), "–");
  assert.equal(figuresText({ stt: 400, firstToken: 80, firstAudio: undefined, voiceToVoice: 1030 }),
    "STT 400 ms · first token 80 ms · voice to voice 1030 ms");
  assert.equal(figuresText({}), "");
});
