// The microphone button and push to talk. Hands-free, every frame goes to the server and
// its VAD ends each utterance; push to talk, frames go only while the talk button (or
// Space or Enter on it) is held, pressing it silences the reply, and letting go commits
// the utterance. Over a call (call.js) the microphone's track is the audio: it is given
// to the call, enabled only while frames would be sent, and a commit waits for the
// track's last audio to arrive (`COMMIT_LAG_MS`). The buttons, the microphone, the
// session and the connection are injected (`ports`), so node tests drive it with fakes.

export const HANDS_FREE = "hands-free";
export const PUSH_TO_TALK = "push-to-talk";
/** Over a call, how long a commit waits for the track's audio (its jitter buffers). */
export const COMMIT_LAG_MS = 250;

/** The keys that hold the talk button down, as a click would. */
export function isTalkKey(key) {
  return key === " " || key === "Enter";
}

export class MicControl {
  /**
   * ports: `micButton`, `talkButton` (elements), `mode()` (HANDS_FREE or PUSH_TO_TALK),
   * `needSession()` (a promise of the session), `microphone(rate, {onLevel, onFrame})`
   * (an unstarted Microphone), `connection()` (the socket, or null), `showLevel(level)`,
   * `stopPlayback(reason)`, `say(text)`.
   */
  constructor(ports) {
    this.ports = ports;
    this.mic = null;
    this.talking = false;
  }

  get running() {
    return Boolean(this.mic && this.mic.running);
  }

  /** The call, if the session talks over one (it takes the microphone's track). */
  _call() {
    const connection = this.ports.connection();
    return connection && connection.setMicrophone ? connection : null;
  }

  /** The track sends only while frames would: hands-free, or the talk button held. */
  _gate() {
    const track = this.mic && this.mic.track;
    if (track) track.enabled = this.ports.mode() === HANDS_FREE || this.talking;
  }

  /** Commit what was said; over a call, once the track's last audio has arrived. */
  _commit() {
    if (!this._call()) {
      this._send({ type: "input_audio.commit" });
      return;
    }
    const wait = this.ports.wait ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    return wait(COMMIT_LAG_MS).then(() => {
      this._send({ type: "input_audio.commit" });
      this._gate();
    });
  }

  _send(message) {
    const connection = this.ports.connection();
    if (connection) connection.send(message);
  }

  /** Switch the microphone off (committing what was said) or on (making the session). */
  async toggle() {
    const { micButton, talkButton, mode, say } = this.ports;
    if (this.running) {
      const call = this._call();
      await this._commit();
      this.mic.stop();
      if (call) await call.setMicrophone(null);
      micButton.setAttribute("aria-pressed", "false");
      micButton.textContent = "Microphone on";
      talkButton.disabled = true;
      return;
    }
    const session = await this.ports.needSession();
    const rate = session.settings?.input_sample_rate ?? 16000;
    this.mic = this.ports.microphone(rate, {
      onLevel: (level) => this.ports.showLevel(Math.min(1, level * 4)),
      onFrame: (pcm) => {
        const connection = this.ports.connection();
        if (!connection) return;
        if (mode() === HANDS_FREE || this.talking) connection.sendAudio(pcm);
      },
    });
    try {
      await this.mic.start();
    } catch (err) {
      say(`No microphone: ${err.message}`);
      return;
    }
    this._gate();
    const call = this._call();
    if (call) await call.setMicrophone(this.mic.track);
    micButton.setAttribute("aria-pressed", "true");
    micButton.textContent = "Microphone off";
    talkButton.disabled = mode() !== PUSH_TO_TALK;
    say(mode() === HANDS_FREE ? "Listening (hands-free)." : "Hold the talk button to speak.");
  }

  /** The mode changed: the talk button works only push to talk with the microphone on. */
  modeChanged() {
    this.ports.talkButton.disabled = !this.running || this.ports.mode() !== PUSH_TO_TALK;
    this._gate();
  }

  /** The talk button held (`down`) or let go. */
  talk(down) {
    if (down === this.talking || !this.running) return;
    this.talking = down;
    this.ports.talkButton.setAttribute("aria-pressed", String(down));
    if (down) {
      this._gate();
      this.ports.stopPlayback("push-to-talk");
      this._send({ type: "response.cancel" });
    } else {
      this._commit(); // the track stays on until the commit: the last words arrive
    }
  }
}
