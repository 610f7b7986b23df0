// The playback schedule: reply audio chunks in, start times out. Pure bookkeeping, no Web
// Audio: `player.js` turns each entry into an AudioBufferSourceNode started at `when`.
//
// Chunks arrive as `response.audio.chunk` events with a `chunk_index` over the whole reply.
// They are played strictly in index order (one that comes early waits for the ones before
// it), each starting exactly where the previous ends (gapless), the first one as soon as it
// arrives (plus a small lead, so the start is never in the past). A repeated index, a chunk
// of a stopped turn or of an older turn is dropped. `stop()` empties the schedule at once
// (barge-in, `response.cancelled`); what was already handed to Web Audio is the player's to
// stop, and it asks `scheduled()` what that is. `position()` says how far a turn has played,
// in the unit of the chunks' `end_ms` (ms of the reply's audio): what the page reports to the
// server when it stops a reply early (`response.truncate`). `pause()` holds the schedule's
// clock (a listener spoke over the reply: `response.paused`); `resume()` moves everything not
// yet played later by the time paused and says what to start, and where in its chunk.

export class PlaybackSchedule {
  constructor({ lead = 0.03 } = {}) {
    this.lead = lead; // seconds between "now" and the earliest start
    this.turn = null; // the turn being played
    this.nextIndex = 0; // the chunk index due next in that turn
    this.pending = new Map(); // index → chunk, arrived ahead of its turn
    this.cursor = 0; // where the next chunk starts (context time)
    this.entries = []; // scheduled: {turn, index, sentence, when, end, chunk}
    this.stopped = new Set(); // turns stopped: their late chunks are dropped
    this.finished = new Set(); // turns whose last chunk has been scheduled
    this.playedMs = new Map(); // turn → end_ms of its last chunk pruned after it ended
    this.pausedAt = null; // context time of a pause, or null
  }

  /** The schedule's own time: `now`, or the moment of the pause while paused. */
  clock(now) {
    return this.pausedAt ?? now;
  }

  get paused() {
    return this.pausedAt !== null;
  }

  /**
   * Add one chunk: {turn, index, sentence, duration, ...}. Returns the entries now ready to
   * start, in order (none if it must wait for an earlier index, or is dropped).
   */
  add(chunk, now) {
    now = this.clock(now);
    if (this.stopped.has(chunk.turn)) return [];
    if (chunk.turn !== this.turn) {
      if (this.finished.has(chunk.turn)) return [];
      // a new turn: whatever is still queued of the previous one plays out first
      if (this.turn !== null) this.finished.add(this.turn);
      this.turn = chunk.turn;
      this.nextIndex = 0;
      this.pending.clear();
    }
    if (chunk.index < this.nextIndex || this.pending.has(chunk.index)) return [];
    this.pending.set(chunk.index, chunk);
    const ready = [];
    while (this.pending.has(this.nextIndex)) {
      const next = this.pending.get(this.nextIndex);
      this.pending.delete(this.nextIndex);
      this.nextIndex += 1;
      const when = Math.max(this.cursor, now + this.lead);
      const entry = { turn: next.turn, index: next.index, sentence: next.sentence ?? 0,
                      when, end: when + next.duration, chunk: next };
      this.cursor = entry.end;
      this.entries.push(entry);
      ready.push(entry);
    }
    return ready;
  }

  /** Entries not yet finished at `now` (playing or waiting to start). */
  scheduled(now) {
    now = this.clock(now);
    return this.entries.filter((e) => e.end > now);
  }

  /** The entry sounding at `now`, or null. */
  current(now) {
    now = this.clock(now);
    return this.entries.find((e) => e.when <= now && now < e.end) ?? null;
  }

  /** Seconds of scheduled audio still ahead of `now`. */
  remaining(now) {
    return Math.max(0, this.cursor - this.clock(now));
  }

  /** Forget entries that ended before `now` (keeps the list short on long sessions). */
  prune(now) {
    now = this.clock(now);
    for (const e of this.entries) {
      if (e.end <= now && e.chunk.endMs != null) {
        this.playedMs.set(e.turn, Math.max(this.playedMs.get(e.turn) ?? 0, e.chunk.endMs));
      }
    }
    this.entries = this.entries.filter((e) => e.end > now);
  }

  /**
   * How far `turn` had played at `now`, in ms of its audio: the chunk sounding then, up to
   * that moment, or the end of the last one that ended. Chunks without `endMs` (servers
   * older than it) count as not played.
   */
  position(now, turn = this.turn) {
    now = this.clock(now);
    let played = this.playedMs.get(turn) ?? 0;
    for (const e of this.entries) {
      if (e.turn !== turn || e.when >= now || e.chunk.endMs == null) continue;
      const left = now >= e.end ? 0 : Math.round((e.end - now) * 1000);
      played = Math.max(played, e.chunk.endMs - left);
    }
    return Math.max(0, played);
  }

  /**
   * Pause at `now` (idempotent): nothing is due to start until `resume()`; chunks that come
   * meanwhile are queued after the rest, as if the clock had stopped.
   */
  pause(now) {
    if (this.pausedAt === null) this.pausedAt = now;
  }

  /**
   * Resume at `now`: every entry not played by the pause moves later by the time paused
   * (plus the lead). Returns [{entry, offset}] to start at `entry.when + offset`, `offset`
   * seconds into its chunk (the one cut by the pause goes on where it stopped).
   */
  resume(now) {
    if (this.pausedAt === null) return [];
    const at = this.pausedAt;
    const shift = Math.max(0, now + this.lead - at);
    this.pausedAt = null;
    const start = [];
    for (const e of this.entries) {
      if (e.end <= at) continue;
      const offset = Math.max(0, at - e.when);
      e.when += shift;
      e.end += shift;
      start.push({ entry: e, offset });
    }
    this.cursor += shift;
    return start;
  }

  /**
   * Stop at once: nothing scheduled remains, and later chunks of the current turn (or of
   * `turn`) are dropped. Returns the entries that were still to play, for the player to stop.
   */
  stop(now, turn = this.turn) {
    const cut = this.scheduled(now);
    this.pausedAt = null;
    if (turn !== null) this.stopped.add(turn);
    if (this.turn !== null) this.stopped.add(this.turn);
    this.pending.clear();
    this.entries = [];
    this.cursor = now;
    return cut;
  }
}

/** Seconds of audio in `byteLength` bytes of PCM16 mono at `rate`. */
export function pcm16Duration(byteLength, rate) {
  return byteLength / 2 / rate;
}
