// The microphone's resampler and PCM16 packing (node --test tests/js).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  StreamResampler, base64ToBytes, floatToPcm16, pcm16ToFloat, rms,
} from "../../deployments/api/static/resample.js";

const sine = (freq, rate, seconds) =>
  Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) =>
    0.5 * Math.sin((2 * Math.PI * freq * i) / rate));

function inBlocks(resampler, samples, size) {
  const parts = [];
  for (let i = 0; i < samples.length; i += size) parts.push(...resampler.push(samples.subarray(i, i + size)));
  return Float32Array.from(parts);
}

test("48 kHz → 16 kHz gives a third of the samples", () => {
  const out = new StreamResampler(48000, 16000).push(sine(440, 48000, 1));
  assert.ok(Math.abs(out.length - 16000) <= 1, `got ${out.length}`);
});

test("44.1 kHz → 16 kHz keeps the duration", () => {
  const out = inBlocks(new StreamResampler(44100, 16000), sine(300, 44100, 2), 128);
  assert.ok(Math.abs(out.length - 32000) <= 2, `got ${out.length}`);
});

test("blocks of any size give the same samples as one block", () => {
  const input = sine(440, 48000, 0.2);
  const whole = new StreamResampler(48000, 16000).push(input);
  for (const size of [1, 3, 128, 1000]) {
    const blocks = inBlocks(new StreamResampler(48000, 16000), input, size);
    assert.equal(blocks.length, whole.length, `block size ${size}`);
    for (let i = 0; i < whole.length; i++) assert.ok(Math.abs(blocks[i] - whole[i]) < 1e-6);
  }
});

test("a tone in the speech band keeps its level; one above the new Nyquist rate is damped", () => {
  const speech = new StreamResampler(48000, 16000).push(sine(440, 48000, 0.5));
  const alias = new StreamResampler(48000, 16000).push(sine(15000, 48000, 0.5));
  assert.ok(Math.abs(rms(speech.subarray(100)) - 0.5 / Math.SQRT2) < 0.02);
  assert.ok(rms(alias.subarray(100)) < 0.1, `15 kHz left at rms ${rms(alias)}`);
});

test("upsampling interpolates between samples", () => {
  const out = new StreamResampler(8000, 16000).push(Float32Array.from([0, 1, 0, -1]));
  assert.deepEqual(Array.from(out), [0, 0.5, 1, 0.5, 0, -0.5]);
});

test("the same rate passes samples through", () => {
  const input = Float32Array.from([0.1, -0.2]);
  assert.deepEqual(Array.from(new StreamResampler(16000, 16000).push(input)), Array.from(input));
});

test("PCM16 packing clips, rounds and round-trips", () => {
  const pcm = floatToPcm16(Float32Array.from([0, 1, -1, 2, -2, 0.5]));
  assert.deepEqual(Array.from(pcm), [0, 32767, -32767, 32767, -32767, 16384]);
  const back = pcm16ToFloat(new Uint8Array(pcm.buffer));
  assert.ok(Math.abs(back[5] - 0.5) < 1e-3);
});

test("base64 audio decodes to bytes", () => {
  assert.deepEqual(Array.from(base64ToBytes("AAH/")), [0, 1, 255]);
});
