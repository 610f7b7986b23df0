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
  t.add(ev("response.started", 1410));
  t.add(ev("response.text.delta", 1480));
  t.add(ev("response.text.delta", 1500));
  t.add(ev("response.sentence", 1600));
  t.add(ev("response.audio.chunk", 2000));
  t.add(ev("response.audio.chunk", 2100));
  const f = t.figures("t1", 30);
  assert.deepEqual({ ...f, parts: undefined },
    { parts: undefined, stt: 400, firstToken: 80, firstAudio: 1000, voiceToVoice: 1030 });
  // the parts of first audio add up to it, as the server's timeline splits it
  assert.deepEqual(f.parts, { total: 1000, headStart: 0, parts: [
    ["STT", 400], ["hand-off", 10], ["LLM", 70], ["piece", 120], ["TTS", 400]] });
  assert.equal(f.parts.parts.reduce((sum, [, v]) => sum + v, 0), f.parts.total);
  assert.equal(figuresText(f), "STT 400 ms · first token 80 ms · first audio 1000 ms · "
    + "voice to voice 1030 ms (first audio = STT 400 + hand-off 10 + LLM 70 + piece 120 + TTS 400)");
});

test("a preemptive reply's head start is shown beside its parts", () => {
  const t = new TurnTimings();
  t.add(ev("input.text", 0, "t3"));
  t.add({ ...ev("response.started", 2, "t3"), data: { prepared_ms: 350 } });
  t.add(ev("response.audio.chunk", 9, "t3"));
  const f = t.figures("t3");
  assert.deepEqual(f.parts, { total: 9, headStart: 350, parts: [
    ["hand-off", 2], ["LLM", 0], ["piece", 0], ["TTS", 7]] });
  assert.match(figuresText(f), /; prepared 350 ms ahead\)$/);
});

test("a typed turn has no STT and no voice to voice", () => {
  const t = new TurnTimings();
  t.add(ev("input.text", 100, "t2"));
  t.add(ev("response.text.delta", 150, "t2"));
  t.add(ev("response.audio.chunk", 600, "t2"));
  const f = t.figures("t2", 20);
  assert.deepEqual({ ...f, parts: undefined },
    { parts: undefined, stt: undefined, firstToken: 50, firstAudio: 500, voiceToVoice: undefined });
  assert.deepEqual(f.parts.parts.map(([name]) => name), ["hand-off", "LLM", "piece", "TTS"]);
});

test("an unknown turn has no figures", () => {
  assert.deepEqual(new TurnTimings().figures("nope"),
    { parts: undefined, stt: undefined, firstToken: undefined, firstAudio: undefined,
      voiceToVoice: undefined });
});

test("figures are written in ms, the unknown ones as a dash or left out", () => {
  assert.equal(formatMs(120), "120 ms");
  assert.equal(formatMs(0), "0 ms");
  assert.equal(formatMs(undefined), "–");
  assert.equal(figuresText({ stt: 400, firstToken: 80, firstAudio: undefined, voiceToVoice: 1030 }),
    "STT 400 ms · first token 80 ms · voice to voice 1030 ms");
  assert.equal(figuresText({}), "");
});
