// AudioWorklet: microphone samples → PCM16 mono at the session's input rate, in ~20 ms
// frames posted to the page (which sends them as binary WebSocket frames), with the level.
import { StreamResampler, floatToPcm16, rms } from "./resample.js";

class MicCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const target = options.processorOptions.targetRate;
    this.resampler = new StreamResampler(sampleRate, target);
    this.frame = Math.round(target / 50); // 20 ms
    this.buffer = new Float32Array(this.frame * 4);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    const samples = this.resampler.push(channel);
    if (this.filled + samples.length > this.buffer.length) {
      const bigger = new Float32Array((this.filled + samples.length) * 2);
      bigger.set(this.buffer.subarray(0, this.filled));
      this.buffer = bigger;
    }
    this.buffer.set(samples, this.filled);
    this.filled += samples.length;
    while (this.filled >= this.frame) {
      const frame = this.buffer.slice(0, this.frame);
      this.buffer.copyWithin(0, this.frame, this.filled);
      this.filled -= this.frame;
      const pcm = floatToPcm16(frame);
      this.port.postMessage({ pcm: pcm.buffer, level: rms(frame) }, [pcm.buffer]);
    }
    return true;
  }
}

registerProcessor("voxline-mic", MicCapture);
