// Microphone capture: getUserMedia → AudioWorklet (mic-worklet.js) → PCM16 frames.
const loaded = new WeakSet(); // AudioContexts that have the worklet module

export class Microphone {
  constructor(context, targetRate, { onFrame, onLevel }) {
    this.context = context;
    this.targetRate = targetRate;
    this.onFrame = onFrame;
    this.onLevel = onLevel;
    this.stream = null;
    this.node = null;
    this.source = null;
  }

  async start() {
    if (!loaded.has(this.context)) { // a processor name may be registered only once
      await this.context.audioWorklet.addModule(new URL("./mic-worklet.js", import.meta.url));
      loaded.add(this.context);
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false,
               autoGainControl: false },
    });
    this.source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "voxline-mic", {
      numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1,
      processorOptions: { targetRate: this.targetRate },
    });
    this.node.port.onmessage = ({ data }) => {
      this.onLevel(data.level);
      this.onFrame(data.pcm);
    };
    this.source.connect(this.node);
  }

  stop() {
    if (this.source) this.source.disconnect();
    if (this.node) this.node.port.onmessage = null;
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = this.node = this.source = null;
    this.onLevel(0);
  }

  get running() {
    return this.stream !== null;
  }

  /** The microphone's track (a call sends it), or null when off. */
  get track() {
    return this.stream ? this.stream.getAudioTracks()[0] ?? null : null;
  }
}
