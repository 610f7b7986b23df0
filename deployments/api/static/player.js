// Reply audio through Web Audio, gapless and in chunk order (the order is playback.js's).
// Each chunk becomes an AudioBufferSourceNode started at its scheduled time; stop() stops
// every node at once (barge-in, response.cancelled). Counters for the page and its tests:
// `played` chunks that ended by themselves, `started` chunks handed to Web Audio. A stop
// that cut a reply short says where (`playedMs`, ms of that reply's audio).
import { PlaybackSchedule } from "./playback.js";
import { pcm16ToFloat } from "./resample.js";

export class Player {
  constructor(context, { onChange = () => {} } = {}) {
    this.context = context;
    this.schedule = new PlaybackSchedule();
    this.sources = new Map(); // entry → AudioBufferSourceNode
    this.played = 0;
    this.playedByTurn = new Map(); // turn → chunks played to their end
    this.started = 0;
    this.stops = []; // {reason, turn, remaining, cut} per stop, newest last
    this.firstStartDelay = new Map(); // turn → ms from receiving chunk 0 to its start
    this.onChange = onChange;
    this._decoding = Promise.resolve(); // keeps non-PCM chunks in arrival order
  }

  /** A chunk event's data: {audio (bytes), format, sample_rate, sentence_index, chunk_index,
   *  end_ms}. */
  enqueue(turn, data, bytes) {
    const received = this.context.currentTime;
    if (data.format && data.format !== "pcm16") {
      // containers (wav, mp3 ...): decode, then schedule, still in arrival order
      this._decoding = this._decoding.then(async () => {
        try {
          const buffer = await this.context.decodeAudioData(bytes.slice().buffer);
          this._add(turn, data, buffer, received);
        } catch (err) {
          console.warn("undecodable audio chunk", data.chunk_index, err);
        }
      });
      return;
    }
    const samples = pcm16ToFloat(bytes);
    if (samples.length === 0) return;
    const buffer = this.context.createBuffer(1, samples.length, data.sample_rate);
    buffer.copyToChannel(samples, 0);
    this._add(turn, data, buffer, received);
  }

  _add(turn, data, buffer, received) {
    const chunk = { turn, index: data.chunk_index, sentence: data.sentence_index,
                    endMs: data.end_ms, duration: buffer.duration, buffer };
    const now = this.context.currentTime;
    for (const entry of this.schedule.add(chunk, now)) {
      if (this.schedule.paused) continue; // started by resume()
      this._start(entry, 0);
      if (entry.index === 0 && !this.firstStartDelay.has(turn)) {
        this.firstStartDelay.set(turn, Math.round((entry.when - received) * 1000));
      }
    }
    this.schedule.prune(now);
    this.onChange();
  }

  _start(entry, offset) {
    const source = this.context.createBufferSource();
    source.buffer = entry.chunk.buffer;
    source.connect(this.context.destination);
    source.onended = () => {
      if (this.sources.delete(entry)) {
        this.played += 1;
        this.playedByTurn.set(entry.turn, (this.playedByTurn.get(entry.turn) ?? 0) + 1);
      }
      this.onChange();
    };
    source.start(entry.when + offset, offset);
    this.sources.set(entry, source);
    this.started += 1;
  }

  _silence() {
    for (const [entry, source] of this.sources) {
      this.sources.delete(entry); // first: a stopped source's onended does not count as played
      try { source.stop(); } catch { /* never started */ }
    }
  }

  /** Hold the reply where it is (the listener spoke over it: `response.paused`): its
   *  sounds stop, what is queued and what still comes waits for resume(). */
  pause() {
    if (this.schedule.paused) return;
    this.schedule.pause(this.context.currentTime);
    this._silence();
    this.onChange();
  }

  /** Play on from where pause() held it (`response.resumed`): nothing lost, nothing twice. */
  resume() {
    for (const { entry, offset } of this.schedule.resume(this.context.currentTime)) {
      this._start(entry, offset);
    }
    this.onChange();
  }

  get paused() {
    return this.schedule.paused;
  }

  /**
   * Stop at once; later chunks of the stopped turn are dropped. Returns the stop, {reason,
   * turn, remaining, cut, at, played, playedMs}, when it cut audio short, else null.
   */
  stop(reason, turn = undefined) {
    const now = this.context.currentTime;
    const remaining = this.schedule.remaining(now);
    const stopped = turn ?? this.schedule.turn;
    const playedMs = this.schedule.position(now, stopped);
    const cut = this.schedule.stop(now, stopped);
    this._silence();
    let stop = null;
    if (cut.length || remaining > 0) {
      stop = { reason, turn: stopped, remaining, cut: cut.length, at: now,
               played: this.playedByTurn.get(stopped) ?? 0, playedMs };
      this.stops.push(stop);
    }
    this.onChange();
    return stop;
  }

  get playing() {
    return this.schedule.remaining(this.context.currentTime) > 0;
  }

  /** The sentence index sounding now, or null. */
  currentSentence() {
    const entry = this.schedule.current(this.context.currentTime);
    return entry ? { turn: entry.turn, sentence: entry.sentence } : null;
  }
}
