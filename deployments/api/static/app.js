// The page: wires the microphone, the session socket, the player and the forms together.
// Protocol: POST /v1/sessions, then a call (POST /v1/sessions/{id}/calls: the audio on a
// WebRTC track, the events on a data channel) where the browser can and the setting says
// so, else WS /v1/sessions/{id}/ws (JSON events out, JSON messages and binary PCM16 in);
// a past session is replayed from GET …/events (SSE).
// The logic lives in modules that node tests drive without a browser: the session and its
// replay (session.js, replay.js), what each event means (events.js, conversation.js), the
// transcript (transcript.js), the settings form (settings.js), the API and its key
// (api.js), the microphone and push to talk (talk.js), the now-playing box
// (nowplaying.js) and `window.voxline` (snapshot.js). Here: the elements, Web Audio, and
// which listener calls what. `window.voxline` exposes what the page knows (counters,
// events, turns) for its tests and for anyone curious in the console.
import { ApiKeyField, apiClient } from "./api.js";
import { CallConnection, canCall, silentStandIn } from "./call.js";
import { SessionConnection } from "./connection.js";
import { Conversation } from "./conversation.js";
import { EventHandler } from "./events.js";
import { figuresText, formatMs } from "./latency.js";
import { Microphone } from "./mic.js";
import { NowPlaying } from "./nowplaying.js";
import { Player } from "./player.js";
import { base64ToBytes } from "./resample.js";
import { Sessions } from "./session.js";
import { readSettings, showSettings, speedText, voiceNames } from "./settings.js";
import { pageSnapshot } from "./snapshot.js";
import { MicControl, isTalkKey } from "./talk.js";
import { TranscriptView } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const BASE = location.origin;

const page = { status: "", context: null, player: null };
// a call's reply plays here (a media element: the browser's echo cancellation hears it)
const remoteAudio = new Audio();
remoteAudio.autoplay = true;
const chunkEnds = new Map(); // each turn's last chunk end, for a call's silent stand-ins

// ---- status and audio ---------------------------------------------------------------------

function say(text) {
  page.status = text;
  $("status").textContent = text;
}

function ensureAudio() {
  if (!page.context) {
    page.context = new AudioContext();
    page.player = new Player(page.context, { onChange: refreshPlayback });
  }
  if (page.context.state === "suspended") page.context.resume();
  return page.context;
}

function stopPlayback(reason, turn = undefined) {
  const stop = page.player ? page.player.stop(reason, turn) : null;
  // a reply cut short: the server keeps only what was heard of it (response.truncate)
  if (stop && reason !== "new session") sessions.truncate(stop.turn, stop.playedMs);
}

// ---- the parts ----------------------------------------------------------------------------

const conversation = new Conversation();
const transcript = new TranscriptView({ document, list: $("conversation"), partial: $("partial") });
const apiKey = new ApiKeyField({ input: $("api-key"), box: $("key-box"), storage: sessionStorage, say });
const api = apiClient({
  base: BASE, fetch: (url, options) => fetch(url, options),
  apiKey: () => apiKey.value(), onKeyWanted: (message) => apiKey.ask(message),
});

const events = new EventHandler(conversation, {
  view: transcript,
  audio: {
    play: (turn, data) => {
      ensureAudio();
      const bytes = base64ToBytes(data.audio);
      // over a call the track plays the audio; the player times the reply with silence
      page.player.enqueue(turn, data, bytes.length ? bytes : silentStandIn(chunkEnds, turn, data));
    },
    stop: stopPlayback,
    pause: () => { if (page.player) page.player.pause(); },
    resume: () => { if (page.player) page.player.resume(); },
  },
  say,
  settings: (settings) => {
    if (sessions.session) sessions.session.settings = settings;
    showSettings($, settings);
  },
  latency: showLatency,
});

const sessions = new Sessions({
  api, events, ensureAudio, say,
  connection: (options) => new SessionConnection({
    baseUrl: BASE, apiKey: () => apiKey.value(), ...options,
  }),
  call: canCall() ? (options) => new CallConnection({
    baseUrl: BASE, apiKey: () => apiKey.value(), ...options,
    rtc: {
      RTCPeerConnection, fetch: (url, init) => fetch(url, init),
      playRemote: ({ track, streams }) => {
        remoteAudio.srcObject = streams[0] ?? new MediaStream([track]);
        remoteAudio.play().catch(() => null); // autoplay: the page was clicked already
      },
    },
  }) : null,
  wantsCall: () => $("webrtc").checked,
  clearPage: () => {
    stopPlayback("new session");
    conversation.clear();
    transcript.clear();
  },
  formSettings: () => readSettings($),
  showSettings: (settings) => showSettings($, settings),
  showSessionId: (text) => { $("session-id").textContent = text; },
});

const mode = () => document.querySelector("input[name=mode]:checked").value;
const mic = new MicControl({
  micButton: $("mic"), talkButton: $("talk"), mode, say,
  needSession: () => sessions.need(),
  microphone: (rate, handlers) => new Microphone(page.context, rate, handlers),
  connection: () => sessions.connection,
  showLevel: (level) => { $("level").value = level; },
  stopPlayback: (reason) => stopPlayback(reason),
});

async function loadVoices() {
  try {
    const models = await (await api("/v1/models")).json();
    const option = (voice) => Object.assign(document.createElement("option"), { value: voice });
    $("voices").replaceChildren(...voiceNames(models).map(option));
  } catch { /* a list of suggestions only */ }
}

// ---- latency and playback display ---------------------------------------------------------

function showLatency(turnId) {
  const heard = page.player ? page.player.firstStartDelay.get(turnId) : undefined;
  const f = conversation.timings.figures(turnId, heard);
  $("lat-stt").textContent = formatMs(f.stt);
  $("lat-token").textContent = formatMs(f.firstToken);
  $("lat-audio").textContent = formatMs(f.firstAudio);
  $("lat-v2v").textContent = formatMs(f.voiceToVoice);
  transcript.figures(turnId, figuresText(f));
}

const nowPlaying = new NowPlaying(conversation);

function refreshPlayback() {
  if (!page.player) return;
  const shown = nowPlaying.update(page.player);
  $("played").textContent = shown.played;
  $("sentence").textContent = shown.sentence;
  if (shown.progress) {
    $("progress").value = shown.progress.value;
    $("progress").textContent = shown.progress.text;
  }
}

setInterval(() => {
  refreshPlayback();
  if (page.player && nowPlaying.lastTurn) showLatency(nowPlaying.lastTurn);
}, 200);

// ---- wiring -------------------------------------------------------------------------------

function wire() {
  apiKey.restore();
  $("webrtc").checked = canCall();
  $("webrtc").disabled = !canCall();
  $("api-key").addEventListener("change", () => {
    apiKey.remember();
    loadVoices();
  });
  $("new-session").addEventListener("click", () => sessions.setUp(() => sessions.create())
    .catch((e) => say(`Error: ${e.message}`)));
  $("open-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessions.setUp(() => sessions.openPast($("open-id").value.trim(), $("open-token").value.trim()));
  });
  $("mic").addEventListener("click", () => mic.toggle().catch((e) => say(`Error: ${e.message}`)));
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => mic.modeChanged());
  }
  const talkButton = $("talk");
  talkButton.addEventListener("pointerdown", () => mic.talk(true));
  talkButton.addEventListener("pointerup", () => mic.talk(false));
  talkButton.addEventListener("pointerleave", () => mic.talk(false));
  talkButton.addEventListener("keydown", (e) => {
    if (isTalkKey(e.key)) { e.preventDefault(); mic.talk(true); }
  });
  talkButton.addEventListener("keyup", (e) => {
    if (isTalkKey(e.key)) { e.preventDefault(); mic.talk(false); }
  });
  $("stop").addEventListener("click", () => {
    stopPlayback("user");
    sessions.cancelReply();
  });
  $("text-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    if (await sessions.sendText(text)) $("text").value = "";
  });
  $("speed").addEventListener("input", () => { $("speed-out").value = speedText($("speed").value); });
  $("settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessions.update();
  });
  loadVoices();
}

wire();

window.voxline = {
  /** A snapshot of what the page knows, for tests and the console. */
  snapshot() {
    return pageSnapshot({
      session: sessions.session, status: page.status, connection: sessions.connection,
      conversation, context: page.context, player: page.player,
    });
  },
  /** The call's reply player: its tracks, whether one is live, whether it plays. */
  remoteAudio() {
    const tracks = remoteAudio.srcObject ? remoteAudio.srcObject.getAudioTracks() : [];
    return { tracks: tracks.length, live: tracks.some((t) => t.readyState === "live"),
             paused: remoteAudio.paused };
  },
  /** The call's received audio as the browser counts it (inbound-rtp): packets, samples
   *  played (a gap the sender left quiet is played as silence) and their energy; null
   *  without a call. */
  async callAudio() {
    const pc = sessions.connection ? sessions.connection.pc : null;
    if (!pc) return null;
    for (const report of (await pc.getStats()).values()) {
      if (report.type === "inbound-rtp" && report.kind === "audio") {
        return { packets: report.packetsReceived, samples: report.totalSamplesReceived,
                 energy: report.totalAudioEnergy };
      }
    }
    return null;
  },
  /** Drop the socket (or the call) as a network failure would; the page reconnects and
   *  resumes (over the socket). */
  dropConnection() {
    if (sessions.connection) sessions.connection.drop();
  },
};
