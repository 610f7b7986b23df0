// Sample-rate conversion and PCM16 packing for the microphone path. Pure functions and one
// small stateful class, no browser APIs: `node --test tests/js` covers them.
//
// The AudioContext runs at the device's rate (often 48 kHz); the session wants PCM16 mono
// at its `input_sample_rate` (16 kHz by default). StreamResampler converts block by block,
// carrying its phase and last sample across blocks, so a stream cut into any blocks gives
// the same samples as the whole stream at once (no clicks at block edges). Going down, a
// moving average over one output period filters first, so energy above the new Nyquist
// rate is damped instead of folded back into the speech band.

export class StreamResampler {
  constructor(fromRate, toRate) {
    if (!(fromRate > 0 && toRate > 0)) throw new RangeError("sample rates must be positive");
    this.fromRate = fromRate;
    this.toRate = toRate;
    this.step = fromRate / toRate; // input samples per output sample
    this.t = 0; // position of the next output sample, in input samples from this block's start
    this.prev = 0; // the last (filtered) input sample of the previous block, at position -1
    const width = Math.max(1, Math.round(this.step));
    this.window = new Float32Array(width); // the moving average's history
    this.windowSum = 0;
    this.windowPos = 0;
  }

  _filter(block) {
    if (this.window.length === 1) return block;
    const out = new Float32Array(block.length);
    const w = this.window;
    for (let i = 0; i < block.length; i++) {
      this.windowSum += block[i] - w[this.windowPos];
      w[this.windowPos] = block[i];
      this.windowPos = (this.windowPos + 1) % w.length;
      out[i] = this.windowSum / w.length;
    }
    return out;
  }

  /** Float32 samples at `fromRate` in, Float32 samples at `toRate` out. */
  push(block) {
    const n = block.length;
    if (n === 0) return new Float32Array(0);
    if (this.fromRate === this.toRate) return Float32Array.from(block);
    const x = this.step > 1 ? this._filter(block) : block;
    const out = [];
    let t = this.t;
    while (t < n - 1 || (n === 1 && t < 0)) {
      let a, b, frac;
      if (t < 0) {
        a = this.prev; b = x[0]; frac = t + 1;
      } else {
        const i = Math.floor(t);
        a = x[i]; b = x[i + 1]; frac = t - i;
      }
      out.push(a + (b - a) * frac);
      t += this.step;
    }
    this.t = t - n;
    this.prev = x[n - 1];
    return Float32Array.from(out);
  }
}

/** Float32 in [-1, 1] → little-endian PCM16 (clipped, rounded). */
export function floatToPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = Math.round(s * 32767);
  }
  return out;
}

/** PCM16 bytes (little-endian) → Float32 in [-1, 1). */
export function pcm16ToFloat(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength - (bytes.byteLength % 2));
  const out = new Float32Array(view.byteLength / 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

/** Root mean square of a block, for the level meter (0 … 1). */
export function rms(samples) {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.sqrt(sum / samples.length);
}

/** Base64 (the events' audio) → bytes, without the DOM's atob where it is absent. */
export function base64ToBytes(b64) {
  if (typeof atob === "function") {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  return new Uint8Array(Buffer.from(b64, "base64"));
}
