// Per-turn latency figures from the events' server timestamps (`ts`, ms), and how the
// page writes them. Pure: tested by `node --test tests/js`. The same stages as the
// server's metrics worker:
//   STT          end of speech (input.speech_stopped) → transcript.final
//   first token  the input (transcript.final or input.text) → first response.text.delta
//   first audio  end of speech or text submitted → first response.audio.chunk
//   voice to voice  end of speech → first audio heard: the server's part plus the page's
//                   own wait from receiving that chunk to starting it (`heardDelayMs`)
// and first audio again in parts that add up to it (as pipeline/workers/timeline.py splits
// it): STT, hand-off, LLM first token, first piece, TTS first chunk, each from the
// previous mark reached to the next; a preemptive reply's head start beside them.

/** The parts of first audio: their names here, and the event that ends each. */
export const PARTS = [["STT", "transcript"], ["hand-off", "started"], ["LLM", "firstDelta"],
                      ["piece", "firstSentence"], ["TTS", "firstAudio"]];

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
      case "response.started": {
        const turn = this._turn(event.turn_id);
        if (turn.started === undefined) {
          turn.started = t;
          turn.headStart = event.data?.prepared_ms ?? 0;
        }
        return event.turn_id;
      }
      case "response.sentence": {
        const turn = this._turn(event.turn_id);
        if (turn.firstSentence === undefined) turn.firstSentence = t;
        return event.turn_id;
      }
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
      parts: this.parts(t, start),
      stt: diff(t.transcript, t.speechStopped),
      firstToken: diff(t.firstDelta, t.input),
      firstAudio: serverAudio,
      voiceToVoice: t.speechStopped !== undefined && serverAudio !== undefined
        && heardDelayMs !== undefined ? serverAudio + heardDelayMs : undefined,
    };
  }

  /** The parts of first audio (see PARTS) that add up to it: {parts: [[name, ms]], total,
   *  headStart}, or undefined before the first audio. */
  parts(t, start) {
    if (start === undefined || t.firstAudio === undefined || t.firstAudio < start) return undefined;
    const out = [];
    let previous = start;
    for (const [name, key] of PARTS) {
      if (name === "STT" && t.speechStopped === undefined) continue; // typed: nothing heard
      const at = Math.min(Math.max(t[key] ?? previous, previous), t.firstAudio);
      out.push([name, at - previous]);
      previous = at;
    }
    return { parts: out, total: t.firstAudio - start, headStart: t.headStart ?? 0 };
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
  const line = parts.map(([name, v]) => `${name} ${v} ms`).join(" · ");
  if (!f.parts) return line;
  const sum = f.parts.parts.map(([name, v]) => `${name} ${v}`).join(" + ");
  const ahead = f.parts.headStart ? `; prepared ${f.parts.headStart} ms ahead` : "";
  return `${line} (first audio = ${sum}${ahead})`;
}
