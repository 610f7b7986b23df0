// What the page knows about the conversation in hand: its turns, the events it handled (a
// bounded record, for display and the page's tests) and each turn's latency bookkeeping.
// Pure (no DOM): the transcript's elements are transcript.js's, not the turns'.
import { TurnTimings } from "./latency.js";

/** The page's own record of events is bounded: a long session must not grow the tab. */
export const MAX_EVENTS = 5000;

/** A turn as the page knows it, before any of its events. */
export function newTurn() {
  return { user: null, reply: "", mode: null, status: null, sentences: new Map(),
           chunks: 0, expected: null, narrated: false };
}

export class Conversation {
  constructor({ maxEvents = MAX_EVENTS } = {}) {
    this.maxEvents = maxEvents;
    this.turns = new Map(); // turn_id → newTurn() and what its events said since
    this.events = []; // {id, type, turn_id} of every event handled, in order
    this.timings = new TurnTimings();
  }

  /** The turn `id`, made on first mention. */
  turn(id) {
    if (!this.turns.has(id)) this.turns.set(id, newTurn());
    return this.turns.get(id);
  }

  /** Note one event handled; returns the turn whose latency figures changed, or null. */
  record(event) {
    this.events.push({ id: event.id ?? null, type: event.type, turn_id: event.turn_id ?? null });
    if (this.events.length > this.maxEvents) {
      this.events.splice(0, this.events.length - this.maxEvents);
    }
    return this.timings.add(event);
  }

  /** Forget everything: a new session, or a past one about to be replayed. */
  clear() {
    this.turns.clear();
    this.events = [];
    this.timings = new TurnTimings();
  }
}
