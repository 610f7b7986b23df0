// The page: wires the microphone, the session socket, the player and the forms together.
// Protocol: POST /v1/sessions, then WS /v1/sessions/{id}/ws (JSON events out, JSON
// messages and binary PCM16 in); a past session is replayed from GET …/events (SSE).
// `window.voxline` exposes what the page knows (counters, events, turns) for its tests
// and for anyone curious in the console.
import { SessionConnection } from "./connection.js";
import { TurnTimings } from "./latency.js";
import { Microphone } from "./mic.js";
import { Player } from "./player.js";
import { base64ToBytes } from "./resample.js";

const $ = (id) => document.getElementById(id);
const BASE = location.origin;
const MAX_EVENTS = 5000; // the page's own record of events (for display and tests)

const app = {
  session: null, // {session_id, token, settings}
  connection: null,
  context: null,
  player: null,
  mic: null,
  timings: new TurnTimings(),
  turns: new Map(), // turn_id → {user, reply, mode, status, sentences, chunks, expected, narrated}
  events: [], // {id, type, turn_id} of every event handled, in order
  talking: false,
  status: "",
  replaying: false,
};

// ---- status and small helpers ------------------------------------------------------------

function say(text) {
  app.status = text;
  $("status").textContent = text;
}

function ensureAudio() {
  if (!app.context) {
    app.context = new AudioContext();
    app.player = new Player(app.context, { onChange: refreshPlayback });
  }
  if (app.context.state === "suspended") app.context.resume();
  return app.context;
}

/** The API key typed in (kept for this tab only), for servers that set VOXLINE_API__KEYS. */
function apiKey() {
  return $("api-key").value.trim();
}

/** A 401: the server wants a key; open its field and say so. */
function askForKey(message) {
  $("key-box").open = true;
  $("api-key").focus();
  say(`${message} Enter the API key under Session, then try again.`);
}

async function api(path, options = {}) {
  const key = apiKey();
  const response = await fetch(BASE + path, {
    ...options,
    headers: {
      "content-type": "application/json",
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(options.headers || {}),
    },
  });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch { /* not JSON */ }
    if (response.status === 401 && /API key/.test(message)) askForKey(message);
    throw new Error(message);
  }
  return response;
}

function turn(id) {
  if (!app.turns.has(id)) {
    app.turns.set(id, { user: null, reply: "", mode: null, status: null, sentences: new Map(),
                        chunks: 0, expected: null, narrated: false, userEl: null, replyEl: null });
  }
  return app.turns.get(id);
}

function userLine(id, text) {
  const t = turn(id);
  t.user = text;
  if (!t.userEl) {
    t.userEl = document.createElement("li");
    t.userEl.className = "user";
    // the user's line goes before the reply's if the reply came first (it cannot, but a
    // refined transcript arrives late)
    if (t.replyEl) $("conversation").insertBefore(t.userEl, t.replyEl);
    else $("conversation").append(t.userEl);
  }
  t.userEl.textContent = text;
}

function replyLine(id) {
  const t = turn(id);
  if (!t.replyEl) {
    t.replyEl = document.createElement("li");
    t.replyEl.className = "assistant";
    t.replyText = document.createElement("span");
    t.figuresEl = document.createElement("small"); // this turn's latency figures
    t.figuresEl.className = "figures";
    t.replyEl.append(t.replyText, t.figuresEl);
    $("conversation").append(t.replyEl);
  }
  return t.replyText;
}

// ---- settings ----------------------------------------------------------------------------

function formSettings() {
  const voice = $("voice").value.trim();
  return {
    voice: voice || null,
    language: $("language").value.trim() || "en",
    speech_speed: Number($("speed").value),
    auto_play: $("auto-play").checked,
    realtime_tts: $("realtime-tts").checked,
    stt_mode: $("stt-mode").value,
    end_of_speech_ms: Number($("eos").value),
    sampling: { max_tokens: Number($("max-tokens").value) },
  };
}

function showSettings(settings) {
  $("voice").value = settings.voice ?? "";
  $("language").value = settings.language;
  $("speed").value = String(settings.speech_speed);
  $("speed-out").value = Number(settings.speech_speed).toFixed(1);
  $("auto-play").checked = settings.auto_play;
  $("realtime-tts").checked = settings.realtime_tts;
  $("stt-mode").value = settings.stt_mode;
  $("eos").value = String(settings.end_of_speech_ms);
  $("max-tokens").value = String(settings.sampling.max_tokens);
}

async function loadVoices() {
  try {
    const models = await (await api("/v1/models")).json();
    const voices = models.data.flatMap((m) => m.voices || []);
    $("voices").replaceChildren(...voices.map((v) => Object.assign(document.createElement("option"), { value: v })));
  } catch { /* a list of suggestions only */ }
}

// ---- sessions ----------------------------------------------------------------------------

function resetConversation() {
  if (app.connection) app.connection.close();
  if (app.player) app.player.stop("new session");
  app.connection = null;
  app.session = null;
  app.turns.clear();
  app.events = [];
  app.timings = new TurnTimings();
  $("conversation").replaceChildren();
  $("partial").textContent = "";
}

function connect(lastEventId) {
  const { session_id: sessionId, token } = app.session;
  app.connection = new SessionConnection({
    baseUrl: BASE, sessionId, token, lastEventId, apiKey,
    onEvent: (event) => handle(event),
    onStatus: (kind, detail) => {
      const messages = {
        connected: "Connected.",
        resumed: `Reconnected: resumed after event ${detail ?? "(start)"}; what was missed follows once, in order.`,
        reconnecting: "Connection lost: reconnecting…",
        refused: String(detail).startsWith("4401")
          ? `The server refused the connection (${detail}): a session token or API key is missing or wrong.`
          : `The server refused the connection (${detail}).`,
        closed: "Disconnected.",
      };
      say(messages[kind] ?? kind);
    },
  });
  app.connection.open();
}

async function newSession() {
  ensureAudio();
  resetConversation();
  const settings = { ...formSettings(), output_format: "pcm16", input_sample_rate: 16000 };
  const created = await (await api("/v1/sessions", {
    method: "POST", body: JSON.stringify({ settings }),
  })).json();
  $("session-id").textContent = `${created.session_id} (token ${created.token})`;
  showSettings(created.settings);
  const summary = await (await api(`/v1/sessions/${created.session_id}`, {
    headers: { "x-voxline-token": created.token },
  })).json();
  // the session becomes current only with its socket: a message typed meanwhile waits
  app.session = { session_id: created.session_id, token: created.token, settings: created.settings };
  connect(summary.last_event_id); // resume from creation: nothing appended since is lost
  return app.session;
}

/** The session being set up (made, or a past one replayed), which callers that come
 *  meanwhile (the microphone switched on, then a message typed at once) wait for. */
let sessionBeingMade = null;
function setUp(make) {
  const made = make().finally(() => { if (sessionBeingMade === made) sessionBeingMade = null; });
  sessionBeingMade = made;
  return made;
}

/** The current session, made on first use. */
async function needSession() {
  ensureAudio();
  if (sessionBeingMade) await sessionBeingMade.catch(() => null);
  if (app.session) return app.session;
  return setUp(newSession);
}

/** Replay a past session from its log (SSE, not followed), then continue it live. */
async function openPast(sessionId, token) {
  ensureAudio();
  resetConversation();
  app.session = { session_id: sessionId, token, settings: null };
  $("session-id").textContent = sessionId;
  say("Replaying the session…");
  app.replaying = true;
  const query = new URLSearchParams({ follow: "false", token });
  let lastId = null;
  let closed = false;
  try {
    const response = await api(`/v1/sessions/${encodeURIComponent(sessionId)}/events?${query}`);
    const text = await response.text();
    for (const block of text.split("\n\n")) {
      const data = block.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      const event = JSON.parse(data);
      if (!event.type) continue;
      handle(event);
      if (event.id) lastId = event.id;
      if (event.type === "session.closed") closed = true;
    }
  } catch (err) {
    app.replaying = false;
    app.session = null;
    say(`Could not open the session: ${err.message}`);
    return null;
  }
  app.replaying = false;
  say(`Replayed ${app.events.length} events.`);
  if (!closed) connect(lastId);
  return app.session;
}

// ---- events ------------------------------------------------------------------------------

function handle(event) {
  app.events.push({ id: event.id ?? null, type: event.type, turn_id: event.turn_id ?? null });
  if (app.events.length > MAX_EVENTS) app.events.splice(0, app.events.length - MAX_EVENTS);
  const changed = app.timings.add(event);
  const data = event.data || {};
  const id = event.turn_id;
  switch (event.type) {
    case "session.created":
    case "session.updated":
      if (app.session) app.session.settings = data.settings;
      showSettings(data.settings);
      if (event.type === "session.updated" && !app.replaying) {
        say(`Settings applied (${(data.changed || []).join(", ")}).`);
      }
      break;
    case "input.speech_started":
      $("partial").textContent = "…";
      // barge-in: the user talks over the reply, so the reply goes quiet at once
      if (!app.replaying && app.player) app.player.stop("speech");
      break;
    case "input.speech_stopped":
      $("partial").textContent = "(transcribing)";
      break;
    case "transcript.partial":
      $("partial").textContent = data.text;
      break;
    case "transcript.final":
    case "transcript.refined":
      $("partial").textContent = "";
      userLine(id, data.text);
      break;
    case "input.text":
      userLine(id, data.text);
      break;
    case "response.started":
      turn(id).mode = data.mode;
      replyLine(id);
      break;
    case "response.text.delta":
      turn(id).reply += data.delta;
      replyLine(id).textContent = turn(id).reply;
      break;
    case "response.sentence":
      turn(id).sentences.set(data.index, data.text);
      break;
    case "response.audio.chunk":
      turn(id).chunks += 1;
      ensureAudio();
      app.player.enqueue(id, data, base64ToBytes(data.audio));
      break;
    case "response.audio.done":
      turn(id).expected = data.chunk_count;
      break;
    case "narration.ready":
      turn(id).expected = data.chunk_count;
      turn(id).narrated = true;
      break;
    case "response.done":
      turn(id).status = data.status;
      replyLine(id).textContent = data.text || turn(id).reply;
      turn(id).reply = data.text || turn(id).reply;
      break;
    case "response.cancelled":
      turn(id).status = "cancelled";
      replyLine(id);
      turn(id).replyEl.classList.add("cancelled");
      if (!app.replaying && app.player) app.player.stop(`cancelled:${data.reason}`, id);
      break;
    case "error":
      say(`Error: ${data.message} (${data.code})`);
      break;
    case "session.closed":
      say("The session is closed.");
      break;
    case "session.resync_required":
      say("Events were trimmed from the log: open the session again.");
      break;
    default:
      break;
  }
  if (changed) showLatency(changed);
}

function ms(value) {
  return value === undefined ? "–" : `${value} ms`;
}

function showLatency(turnId) {
  const heard = app.player ? app.player.firstStartDelay.get(turnId) : undefined;
  const f = app.timings.figures(turnId, heard);
  $("lat-stt").textContent = ms(f.stt);
  $("lat-token").textContent = ms(f.firstToken);
  $("lat-audio").textContent = ms(f.firstAudio);
  $("lat-v2v").textContent = ms(f.voiceToVoice);
  const t = app.turns.get(turnId);
  if (t && t.figuresEl) {
    const parts = [["STT", f.stt], ["first token", f.firstToken], ["first audio", f.firstAudio],
                   ["voice to voice", f.voiceToVoice]].filter(([, v]) => v !== undefined);
    t.figuresEl.textContent = parts.map(([name, v]) => `${name} ${v} ms`).join(" · ");
  }
}

// ---- playback display --------------------------------------------------------------------

let lastTurnPlayed = null;

function refreshPlayback() {
  if (!app.player) return;
  const current = app.player.currentSentence();
  $("played").textContent = String(app.player.played);
  if (current) {
    lastTurnPlayed = current.turn;
    const t = turn(current.turn);
    $("sentence").textContent = t.sentences.get(current.sentence) ?? `sentence ${current.sentence + 1}`;
  } else {
    $("sentence").textContent = "nothing";
  }
  if (lastTurnPlayed) {
    const t = turn(lastTurnPlayed);
    const done = app.player.playedByTurn.get(lastTurnPlayed) ?? 0;
    const total = Math.max(t.expected ?? 0, t.chunks, 1);
    $("progress").value = done / total;
    $("progress").textContent = `${Math.round((100 * done) / total)}%`;
  }
}

setInterval(() => {
  refreshPlayback();
  if (app.player && lastTurnPlayed) showLatency(lastTurnPlayed);
}, 200);

// ---- microphone --------------------------------------------------------------------------

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

async function toggleMic() {
  if (app.mic && app.mic.running) {
    app.mic.stop();
    $("mic").setAttribute("aria-pressed", "false");
    $("mic").textContent = "Microphone on";
    $("talk").disabled = true;
    if (app.connection) app.connection.send({ type: "input_audio.commit" });
    return;
  }
  const session = await needSession();
  const rate = session.settings?.input_sample_rate ?? 16000;
  app.mic = new Microphone(app.context, rate, {
    onLevel: (level) => { $("level").value = Math.min(1, level * 4); },
    onFrame: (pcm) => {
      if (!app.connection) return;
      if (mode() === "hands-free" || app.talking) app.connection.sendAudio(pcm);
    },
  });
  try {
    await app.mic.start();
  } catch (err) {
    say(`No microphone: ${err.message}`);
    return;
  }
  $("mic").setAttribute("aria-pressed", "true");
  $("mic").textContent = "Microphone off";
  $("talk").disabled = mode() !== "push-to-talk";
  say(mode() === "hands-free" ? "Listening (hands-free)." : "Hold the talk button to speak.");
}

function talk(down) {
  if (down === app.talking || !app.mic || !app.mic.running) return;
  app.talking = down;
  $("talk").setAttribute("aria-pressed", String(down));
  if (down) {
    if (app.player) app.player.stop("push-to-talk");
    if (app.connection) app.connection.send({ type: "response.cancel" });
  } else if (app.connection) {
    app.connection.send({ type: "input_audio.commit" });
  }
}

// ---- wiring ------------------------------------------------------------------------------

function wire() {
  $("api-key").value = sessionStorage.getItem("voxline.apiKey") ?? "";
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem("voxline.apiKey", apiKey());
    loadVoices();
  });
  $("new-session").addEventListener("click", () => setUp(newSession).catch((e) => say(`Error: ${e.message}`)));
  $("open-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setUp(() => openPast($("open-id").value.trim(), $("open-token").value.trim()));
  });
  $("mic").addEventListener("click", () => toggleMic().catch((e) => say(`Error: ${e.message}`)));
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => {
      $("talk").disabled = !(app.mic && app.mic.running) || mode() !== "push-to-talk";
    });
  }
  const talkButton = $("talk");
  talkButton.addEventListener("pointerdown", () => talk(true));
  talkButton.addEventListener("pointerup", () => talk(false));
  talkButton.addEventListener("pointerleave", () => talk(false));
  talkButton.addEventListener("keydown", (e) => {
    if (e.key === " " || e.key === "Enter") { e.preventDefault(); talk(true); }
  });
  talkButton.addEventListener("keyup", (e) => {
    if (e.key === " " || e.key === "Enter") { e.preventDefault(); talk(false); }
  });
  $("stop").addEventListener("click", () => {
    if (app.player) app.player.stop("user");
    if (app.connection) app.connection.send({ type: "response.cancel" });
  });
  $("text-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    try {
      await needSession();
    } catch (err) {
      say(`Error: ${err.message}`);
      return;
    }
    if (!app.connection) {
      say("This session has ended: start a new one to go on.");
      return;
    }
    app.connection.send({ type: "input.text", text });
    $("text").value = "";
  });
  $("speed").addEventListener("input", () => { $("speed-out").value = Number($("speed").value).toFixed(1); });
  $("settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!app.connection) {
      say("Settings will be used for the next session.");
      return;
    }
    app.connection.send({ type: "session.update", settings: formSettings() });
    say("Applying settings…");
  });
  loadVoices();
}

wire();

window.voxline = {
  /** A snapshot of what the page knows, for tests and the console. */
  snapshot() {
    const player = app.player;
    const conn = app.connection;
    return {
      sessionId: app.session?.session_id ?? null,
      token: app.session?.token ?? null,
      status: app.status,
      connected: conn ? conn.open_ : false,
      reconnects: conn ? conn.reconnects : 0,
      duplicates: conn ? conn.cursor.duplicates : 0,
      eventIds: conn ? [...conn.cursor.ids] : [],
      events: app.events.map((e) => ({ ...e })),
      audioTime: app.context ? app.context.currentTime : 0,
      audioState: app.context ? app.context.state : "none",
      played: player ? player.played : 0,
      started: player ? player.started : 0,
      playing: player ? player.playing : false,
      scheduledAhead: player ? player.schedule.remaining(app.context.currentTime) : 0,
      stops: player ? player.stops.map((s) => ({ ...s })) : [],
      settings: app.session?.settings ?? null,
      turns: [...app.turns].map(([id, t]) => ({
        id, user: t.user, reply: t.reply, mode: t.mode, status: t.status, chunks: t.chunks,
        expected: t.expected, narrated: t.narrated,
        played: player ? (player.playedByTurn.get(id) ?? 0) : 0,
      })),
    };
  },
  /** Drop the socket as a network failure would; the page reconnects and resumes. */
  dropConnection() {
    if (app.connection) app.connection.drop();
  },
};
