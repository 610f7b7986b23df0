// The settings form both ways, and the voices offered (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  creationSettings, readSettings, showSettings, speedText, voiceNames,
} from "../../deployments/api/static/settings.js";
import { fakeById } from "./fake-dom.mjs";

const SETTINGS = {
  system_prompt: "Tell long stories.",
  voice: "amy", language: "fr", speech_speed: 1.5, auto_play: true, realtime_tts: false,
  interruptions: "confirmed", stt_mode: "whisperx", end_of_speech_ms: 700, sampling: { max_tokens: 64 },
};

test("settings shown in the form read back the same", () => {
  const $ = fakeById();
  showSettings($, SETTINGS);
  assert.equal($("speed").value, "1.5"); // form fields hold strings
  assert.equal($("speed-out").value, "1.5");
  assert.equal($("eos").value, "700");
  assert.deepEqual(readSettings($), SETTINGS);
});

test("an empty voice is the engine's default; an empty language is English; empty instructions are left out", () => {
  const $ = fakeById();
  showSettings($, { ...SETTINGS, voice: null });
  assert.equal($("voice").value, "");
  $("voice").value = "  ";
  $("language").value = " ";
  $("max-tokens").value = "32";
  $("system-prompt").value = " \n ";
  const read = readSettings($);
  assert.equal("system_prompt" in read, false); // the server's default, or the session's own
  assert.equal(read.voice, null);
  assert.equal(read.language, "en");
  assert.deepEqual(read.sampling, { max_tokens: 32 });
});

test("a new session asks for the audio formats the page speaks", () => {
  assert.deepEqual(creationSettings({ voice: null }),
    { voice: null, output_format: "pcm16", input_sample_rate: 16000 });
});

test("the speed label has one decimal", () => {
  assert.equal(speedText("1"), "1.0");
  assert.equal(speedText(0.75), "0.8");
});

test("every model's voices are offered, models without voices skipped", () => {
  const models = { data: [{ id: "llm" }, { id: "tts", voices: ["amy", "ryan"] }, { voices: ["x"] }] };
  assert.deepEqual(voiceNames(models), ["amy", "ryan", "x"]);
});
