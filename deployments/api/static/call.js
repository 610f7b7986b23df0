// The session over WebRTC (`POST /v1/sessions/{id}/calls`): the microphone's track and
// the reply's on one audio transceiver, the session's events on the `voxline-events`
// data channel. Why: the browser's echo cancellation knows what the reply's track plays,
// so hands-free talk does not hear itself, and Opus with a jitter buffer carries voice
// over real networks. It has the socket's interface (connection.js: `send`, `sendAudio`,
// `drop`, `close`, `cursor`, `open_`), so the page uses either; `open()` is a promise,
// rejected where no call can be made (an old server, a refused offer, a connection that
// does not come up): the page then uses the socket. A call that drops later calls
// `onLost(cursor)`, and the page goes on over the socket from that cursor. The browser's
// RTCPeerConnection, fetch and the remote track's player are injected (`rtc`), so node
// tests drive it with fakes.
import { EventCursor } from "./cursor.js";

export const CHANNEL = "voxline-events";
/** Opus's clock: a call's session has PCM16 at this rate both ways. */
export const CALL_RATE = 48000;
/** How long the connection may take to come up before the page uses the socket. */
export const CONNECT_TIMEOUT_MS = 10000;
/** How long ICE gathering may take (the server takes no trickled candidates). */
const GATHER_MS = 2000;

/** Whether this browser can make calls. */
export function canCall(scope = globalThis) {
  return typeof scope.RTCPeerConnection === "function";
}

/** The formats a call's session is made with. */
export const CALL_FORMATS = {
  input_sample_rate: CALL_RATE, output_sample_rate: CALL_RATE, output_format: "pcm16",
};

/** Whether a session's formats let it have a call. */
export function callable(settings) {
  return Boolean(settings) && settings.input_sample_rate === CALL_RATE
    && settings.output_sample_rate === CALL_RATE && settings.output_format === "pcm16"
    && (settings.input_format ?? "pcm16") === "pcm16";
}

/**
 * Over a call, `response.audio.chunk` comes without its audio (the track plays it); the
 * page's player still times the reply from it (what is playing now, how far it was
 * heard), so it is given silence as long as the chunk: from the turn's previous chunk's
 * `end_ms` to this one's. `ends` remembers each turn's last end (a few turns at most).
 */
export function silentStandIn(ends, turn, data) {
  const previous = ends.get(turn) ?? 0;
  const end = data.end_ms ?? previous;
  ends.delete(turn);
  ends.set(turn, Math.max(previous, end));
  while (ends.size > 8) ends.delete(ends.keys().next().value);
  // one sample at least: the player counts a chunk played only if it has sound to play
  const samples = Math.max(1, Math.round(((end - previous) * data.sample_rate) / 1000));
  return new Uint8Array(samples * 2);
}

function within(promise, ms, message) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

export class CallConnection {
  /**
   * rtc: `RTCPeerConnection` (the constructor), `fetch`, `playRemote(trackEvent)`.
   * `cursor`: an EventCursor to go on from (else one after `lastEventId`).
   */
  constructor({ baseUrl, sessionId, token, lastEventId = null, cursor = null, onEvent,
                onStatus, onLost, apiKey = () => "", rtc, timeoutMs = CONNECT_TIMEOUT_MS }) {
    Object.assign(this, { baseUrl, sessionId, token, onEvent, onStatus, onLost, apiKey, rtc,
                          timeoutMs });
    this.cursor = cursor ?? new EventCursor(lastEventId);
    this.kind = "webrtc";
    this.serverTruncates = true; // the server knows what its track played
    this.reconnects = 0;
    this.pc = null;
    this.channel = null;
    this.transceiver = null;
    this.microphone = null;
    this.location = null;
    this.closing = false;
    this.lost = false;
  }

  get open_() {
    return this.channel !== null && this.channel.readyState === "open";
  }

  url() {
    const query = new URLSearchParams();
    if (this.cursor.lastId) query.set("last_event_id", this.cursor.lastId);
    const q = query.toString();
    return `${this.baseUrl}/v1/sessions/${encodeURIComponent(this.sessionId)}/calls${q ? `?${q}` : ""}`;
  }

  headers(extra = {}) {
    const key = this.apiKey();
    return { "X-Voxline-Token": this.token, ...(key ? { Authorization: `Bearer ${key}` } : {}), ...extra };
  }

  /** Make the call; resolves once the events channel is open. */
  async open() {
    const pc = new this.rtc.RTCPeerConnection();
    this.pc = pc;
    this.transceiver = pc.addTransceiver("audio", { direction: "sendrecv" });
    if (this.microphone) await this.transceiver.sender.replaceTrack(this.microphone);
    pc.ontrack = (event) => this.rtc.playRemote(event);
    const channel = pc.createDataChannel(CHANNEL);
    this.channel = channel;
    channel.onmessage = ({ data }) => {
      const event = JSON.parse(data);
      if (this.cursor.accept(event)) this.onEvent(event);
    };
    const opened = new Promise((resolve, reject) => {
      channel.onopen = resolve;
      channel.onclose = () => reject(new Error("the call was closed"));
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await within(gathered(pc), GATHER_MS, "ICE gathering").catch(() => null); // what it has
      const response = await this.rtc.fetch(this.url(), {
        method: "POST", body: pc.localDescription.sdp,
        headers: this.headers({ "Content-Type": "application/sdp" }),
      });
      if (response.status !== 201) {
        const body = await response.json().catch(() => ({}));
        throw new Error(`${response.status} ${body.error?.code ?? ""}`.trim());
      }
      this.location = response.headers.get("location");
      await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
      await within(opened, this.timeoutMs, "the connection did not come up");
    } catch (err) {
      this._teardown();
      throw err;
    }
    channel.onclose = () => this._lose();
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") this._lose();
    };
    this.onStatus("call");
  }

  /** A JSON message on the events channel (dropped while it is not open). */
  send(message) {
    if (this.open_) this.channel.send(JSON.stringify(message));
  }

  /** The microphone's track carries the audio: frames are not sent. */
  sendAudio() {}

  /** The microphone's track (null: none), sent from now on. */
  async setMicrophone(track) {
    this.microphone = track;
    if (this.transceiver) await this.transceiver.sender.replaceTrack(track);
  }

  /** Drop the call as a network failure would (the page goes on over the socket). */
  drop() {
    this._lose();
  }

  /** Hang up: the session stays (a socket or a new call goes on with it). */
  close() {
    this.closing = true;
    if (this.location) {
      this.rtc.fetch(`${this.baseUrl}${this.location}/hangup`,
        { method: "POST", headers: this.headers(), keepalive: true }).catch(() => null);
    }
    this._teardown();
    this.onStatus("closed");
  }

  _lose() {
    if (this.closing || this.lost) return;
    this.lost = true;
    this._teardown();
    this.onLost(this.cursor);
  }

  _teardown() {
    const { pc, channel } = this;
    this.pc = this.channel = this.transceiver = null;
    if (channel) channel.onclose = channel.onmessage = null;
    if (pc) {
      pc.onconnectionstatechange = pc.ontrack = null;
      pc.close();
    }
  }
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}
