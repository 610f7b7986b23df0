// Per-turn latency figures from the events' server timestamps (`ts`, ms), and how the
// page writes them. Pure: tested by `node --test tests/js`. The same stages as the
// server's metrics worker:
//   STT          end of speech (input.speech_stopped) → transcript.final
//   first token  the input (transcript.final or input.text) → first response.text.delta
//   first audio  end of speech or text submitted → first response.audio.chunk
//   voice to voice  end of speech → first audio heard: the server's part plus the page's
//                   own wait from receiving that chunk to starting it (`heardDelayMs`)

export class TurnTimings {
  constructor() {
    this.turns = new Map(); // turn_id → {speechStopped, transcript, input, firstDelta, firstAudio}
    this.lastSpeechStopped = null; // speech_stopped has no turn id: the next turn's
  }

  _turn(id) {
    if (!this.turns.has(id)) this.turns.set(id, {});
    return this.turns.get(id);
  }

  /** Feed one event; returns the turn id whose figures changed, or null. */
  add(event) {
    const t = event.ts;
    switch (event.type) {
      case "input.speech_stopped":
        this.lastSpeechStopped = t;
        return null;
      case "input.audio":
      case "transcript.final": {
        if (!event.turn_id) return null;
        const turn = this._turn(event.turn_id);
        if (turn.speechStopped === undefined && this.lastSpeechStopped !== null) {
          turn.speechStopped = this.lastSpeechStopped;
        }
        if (event.type === "transcript.final") turn.input = turn.transcript = t;
        return event.turn_id;
      }
      case "input.text":
        if (!event.turn_id) return null;
        this._turn(event.turn_id).input = t;
        return event.turn_id;
      case "response.text.delta": {
        const turn = this._turn(event.turn_id);
        if (turn.firstDelta === undefined) turn.firstDelta = t;
        return event.turn_id;
      }
      case "response.audio.chunk": {
        const turn = this._turn(event.turn_id);
        if (turn.firstAudio === undefined) turn.firstAudio = t;
        return event.turn_id;
      }
      default:
        return null;
    }
  }

  /** {stt, firstToken, firstAudio, voiceToVoice} in ms (undefined where not known). */
  figures(turnId, heardDelayMs = undefined) {
    const t = this.turns.get(turnId) || {};
    const diff = (a, b) => (a !== undefined && b !== undefined ? Math.max(0, a - b) : undefined);
    const start = t.speechStopped ?? t.input;
    const serverAudio = diff(t.firstAudio, start);
    return {
      stt: diff(t.transcript, t.speechStopped),
      firstToken: diff(t.firstDelta, t.input),
      firstAudio: serverAudio,
      voiceToVoice: t.speechStopped !== undefined && serverAudio !== undefined
        && heardDelayMs !== undefined ? serverAudio + heardDelayMs : undefined,
    };
  }
}

/** One figure as the latency table shows it: "120 ms", or "–" when not known. */
export function formatMs(value) {
  return value === undefined ? "–" : `${value} ms`;
}

/** A turn's figures in one line under its reply, the unknown ones left out. */
export function figuresText(f) {
  const parts = [["STT", f.stt], ["first token", f.firstToken], ["first audio", f.firstAudio],
                 ["voice to voice", f.voiceToVoice]].filter(([, v]) => v !== undefined);
  return parts.map(([name, v]) => `${name} ${v} ms`).join(" · ");
}
