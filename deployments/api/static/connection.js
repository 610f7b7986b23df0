// The session socket (`WS /v1/sessions/{id}/ws`), with resume.
//
// Every connection after the first says `?last_event_id=` the newest log id this page has
// (EventCursor), so the server sends what was missed exactly once, then live events. The
// first connection also resumes, from the session's last event at creation, so even
// events appended before the socket opened are not lost. A socket that drops without the
// page closing it is reopened with growing pauses (0.25 s … 4 s); close codes that say
// retrying cannot help (4400-4410 but 4503) end the connection. A browser cannot put an
// API key in a header on a WebSocket: the key goes as the subprotocol
// `openai-insecure-api-key.<key>` beside `voxline`, as OpenAI's browser clients do.
import { EventCursor } from "./cursor.js";

export const KEY_SUBPROTOCOL = "openai-insecure-api-key.";

const FINAL_CODES = new Set([4400, 4401, 4403, 4404, 4409, 4410]);

export class SessionConnection {
  constructor({ baseUrl, sessionId, token, lastEventId = null, cursor = null, onEvent,
                onStatus, apiKey = () => "" }) {
    this.baseUrl = baseUrl;
    this.apiKey = apiKey; // read at each (re)connection: a key entered later applies
    this.sessionId = sessionId;
    this.token = token;
    this.cursor = cursor ?? new EventCursor(lastEventId); // a call's, where one dropped
    this.kind = "socket";
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.ws = null;
    this.closing = false;
    this.connects = 0;
    this.reconnects = 0;
    this.retryDelay = 250;
    this.outbox = []; // messages sent while reconnecting (bounded: see send())
    this.resumedFrom = null;
  }

  url() {
    const ws = this.baseUrl.replace(/^http/, "ws");
    return `${ws}/v1/sessions/${encodeURIComponent(this.sessionId)}/ws?${this.cursor.query(this.token)}`;
  }

  /** The subprotocols to offer: the key's beside ours, when there is a key. */
  protocols() {
    const key = this.apiKey();
    return key ? ["voxline", KEY_SUBPROTOCOL + key] : [];
  }

  open() {
    this.closing = false;
    const resumingFrom = this.connects > 0 || this.cursor.ids.length ? this.cursor.lastId : null;
    const ws = new WebSocket(this.url(), this.protocols());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.connects += 1;
      this.retryDelay = 250;
      if (resumingFrom !== null || this.connects > 1) {
        this.reconnects += 1;
        this.resumedFrom = resumingFrom;
        this.onStatus("resumed", resumingFrom);
      } else {
        this.onStatus("connected");
      }
      for (const message of this.outbox.splice(0)) ws.send(message);
    };
    ws.onmessage = ({ data }) => {
      if (typeof data !== "string") return;
      const event = JSON.parse(data);
      if (this.cursor.accept(event)) this.onEvent(event);
    };
    ws.onclose = ({ code, reason }) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closing) {
        this.onStatus("closed");
      } else if (FINAL_CODES.has(code)) {
        this.onStatus("refused", `${code} ${reason}`);
      } else {
        this.onStatus("reconnecting", this.cursor.lastId);
        setTimeout(() => { if (!this.closing) this.open(); }, this.retryDelay);
        this.retryDelay = Math.min(this.retryDelay * 2, 4000);
      }
    };
  }

  get open_() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** A JSON message; queued (at most 64, the oldest dropped) while reconnecting. */
  send(message) {
    const text = JSON.stringify(message);
    if (this.open_) {
      this.ws.send(text);
    } else if (!this.closing) {
      this.outbox.push(text);
      if (this.outbox.length > 64) this.outbox.shift();
    }
  }

  /** Binary PCM16: sent only while open (live audio is worth nothing later). */
  sendAudio(buffer) {
    if (this.open_) this.ws.send(buffer);
  }

  /** Drop the socket as a network failure would (the page then resumes). */
  drop() {
    if (this.ws) this.ws.close(4000, "dropped by the page");
  }

  close() {
    this.closing = true;
    if (this.ws) this.ws.close(1000, "bye");
  }
}
