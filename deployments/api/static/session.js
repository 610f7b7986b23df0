// The session the page talks on: made (POST /v1/sessions) or a past one replayed, then its
// socket. One is being set up at a time, and whoever needs the session meanwhile (the
// microphone switched on, then a message typed at once) waits for that one rather than
// making a second. Where the page wants calls (its WebRTC setting), a session is made with
// a call's formats and talks over a call (call.js); where none can be made, or one drops,
// it goes on over the socket from the same cursor, and the status says why. The HTTP API,
// the socket, the call, the page and the event handler are injected (`ports`), so node
// tests drive it with fakes.
import { callable } from "./call.js";
import { replay } from "./replay.js";
import { creationSettings } from "./settings.js";

/** The status line for the socket's state (connection.js's `onStatus`). */
export function connectionStatusText(kind, detail) {
  const messages = {
    connected: "Connected.",
    resumed: `Reconnected: resumed after event ${detail ?? "(start)"}; what was missed follows once, in order.`,
    reconnecting: "Connection lost: reconnecting…",
    refused: String(detail).startsWith("4401")
      ? `The server refused the connection (${detail}): a session token or API key is missing or wrong.`
      : `The server refused the connection (${detail}).`,
    closed: "Disconnected.",
    call: "Connected: audio over WebRTC.",
  };
  return messages[kind] ?? kind;
}

export class Sessions {
  /**
   * ports: `api(path, options)` (api.js), `connection({sessionId, token, lastEventId,
   * onEvent, onStatus, cursor})` (an unopened SessionConnection), `call({…, onLost})`
   * (an unopened CallConnection) and `wantsCall()` (the setting; both optional),
   * `events` (EventHandler),
   * `ensureAudio()`, `clearPage()` (player, conversation and transcript emptied),
   * `formSettings()`, `showSettings(settings)`, `showSessionId(text)`, `say(text)`.
   */
  constructor(ports) {
    this.ports = ports;
    this.session = null; // {session_id, token, settings}
    this.connection = null;
    this.beingMade = null; // the set-up under way (a promise of the session), if any
  }

  /** Close the socket and forget the session and what the page shows of it. */
  reset() {
    if (this.connection) this.connection.close();
    this.ports.clearPage();
    this.connection = null;
    this.session = null;
  }

  /** Talk on the session, resuming after `lastEventId`: over a call where the page wants
   *  one and the session's formats allow it, else (or if it cannot be made) the socket. */
  async connect(lastEventId) {
    const { session_id: sessionId, token, settings } = this.session;
    const options = {
      sessionId, token, lastEventId,
      onEvent: (event) => this.ports.events.handle(event),
      onStatus: (kind, detail) => this.ports.say(connectionStatusText(kind, detail)),
    };
    if (this.ports.call && this.ports.wantsCall?.() && callable(settings)) {
      const call = this.ports.call({
        ...options, onLost: (cursor) => this._overSocket(options, cursor, "the call dropped"),
      });
      this.connection = call;
      try {
        await call.open();
        return;
      } catch (err) {
        if (this.connection !== call) return; // reset meanwhile
        this._overSocket(options, call.cursor, `no call (${err.message})`);
        return;
      }
    }
    this._overSocket(options, null, null);
  }

  /** The socket, going on from a call's `cursor` (null: from the options') where `why`
   *  says why there is no call (every status it shows says so too). */
  _overSocket(options, cursor, why) {
    if (cursor && this.connection?.cursor !== cursor) return; // not the current call's
    const note = why ? ` Audio over the socket: ${why}.` : "";
    this.connection = this.ports.connection({
      ...options, cursor,
      onStatus: (kind, detail) => this.ports.say(connectionStatusText(kind, detail) + note),
    });
    this.connection.open();
  }

  /** A new session with the form's settings. */
  async create() {
    const { api } = this.ports;
    this.ports.ensureAudio();
    this.reset();
    const settings = creationSettings(this.ports.formSettings(),
                                      { call: Boolean(this.ports.call && this.ports.wantsCall?.()) });
    const created = await (await api("/v1/sessions", {
      method: "POST", body: JSON.stringify({ settings }),
    })).json();
    this.ports.showSessionId(`${created.session_id} (token ${created.token})`);
    this.ports.showSettings(created.settings);
    const summary = await (await api(`/v1/sessions/${created.session_id}`, {
      headers: { "x-voxline-token": created.token },
    })).json();
    // the session becomes current only with its socket: a message typed meanwhile waits
    this.session = { session_id: created.session_id, token: created.token, settings: created.settings };
    await this.connect(summary.last_event_id); // resume from creation: nothing appended since is lost
    return this.session;
  }

  /** Replay a past session from its log (SSE, not followed), then continue it live;
   *  null (and the status says why) if it cannot be read. */
  async openPast(sessionId, token) {
    const { events, say } = this.ports;
    this.ports.ensureAudio();
    this.reset();
    this.session = { session_id: sessionId, token, settings: null };
    this.ports.showSessionId(sessionId);
    say("Replaying the session…");
    events.replaying = true;
    const query = new URLSearchParams({ follow: "false", token });
    let replayed;
    try {
      const response = await this.ports.api(`/v1/sessions/${encodeURIComponent(sessionId)}/events?${query}`);
      replayed = replay(await response.text(), (event) => events.handle(event));
    } catch (err) {
      events.replaying = false;
      this.session = null;
      say(`Could not open the session: ${err.message}`);
      return null;
    }
    events.replaying = false;
    say(`Replayed ${events.conversation.events.length} events.`);
    if (!replayed.closed) await this.connect(replayed.lastId);
    return this.session;
  }

  /** Set a session up with `make` (create, or openPast); callers of need() wait for it. */
  setUp(make) {
    const made = make().finally(() => { if (this.beingMade === made) this.beingMade = null; });
    this.beingMade = made;
    return made;
  }

  /** The current session, made on first use. */
  async need() {
    this.ports.ensureAudio();
    if (this.beingMade) await this.beingMade.catch(() => null);
    if (this.session) return this.session;
    return this.setUp(() => this.create());
  }

  /** Send a typed message on the current session (made if need be); false where it could
   *  not be sent, and the status says why. */
  async sendText(text) {
    try {
      await this.need();
    } catch (err) {
      this.ports.say(`Error: ${err.message}`);
      return false;
    }
    if (!this.connection) {
      this.ports.say("This session has ended: start a new one to go on.");
      return false;
    }
    this.connection.send({ type: "input.text", text });
    return true;
  }

  /** Apply the form's settings to the session (`session.update`; the server answers
   *  `session.updated`), or keep them in the form for the next session. */
  update() {
    if (!this.connection) {
      this.ports.say("Settings will be used for the next session.");
      return;
    }
    this.connection.send({ type: "session.update", settings: this.ports.formSettings() });
    this.ports.say("Applying settings…");
  }

  /** Stop the reply being written and spoken (the player is the page's to silence). */
  cancelReply() {
    if (this.connection) this.connection.send({ type: "response.cancel" });
  }

  /** The reply of `turn` was played only up to `playedMs`: the server keeps only what was
   *  heard of it (`response.truncate`). Narrations of text replies are not truncated:
   *  their text was shown whole. */
  truncate(turn, playedMs) {
    const reply = this.ports.events?.conversation?.turns.get(turn);
    if (!this.connection || !turn || reply?.mode === "text") return;
    if (this.connection.serverTruncates) return; // a call: the server knows what played
    this.connection.send({ type: "response.truncate", turn_id: turn, audio_end_ms: playedMs });
  }
}
