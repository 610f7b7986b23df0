// Resume bookkeeping for the session socket: which log events the page has seen.
//
// Every logged event carries its Redis stream id ("<ms>-<seq>", strictly increasing within
// a session). The socket resumes with `?last_event_id=` the newest id seen, and the server
// sends every later event exactly once; this cursor is the page's side of that contract:
// it drops anything not newer than what it has (a duplicate would be a protocol bug, and it
// is counted so the page can say so), and remembers every id it accepted, so a test can
// compare them with the log. Frames without an id (the socket's `session.created`
// greeting, `session.resync_required`) are not log events and pass through.

/** Compare two stream ids numerically: negative, zero or positive. */
export function compareIds(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

export class EventCursor {
  constructor(lastId = null, { keep = 10000 } = {}) {
    this.lastId = lastId;
    this.ids = []; // accepted ids, in order (bounded by `keep`: the oldest go first)
    this.keep = keep;
    this.duplicates = 0;
  }

  /** True if the event is new (or not a log event); false for a repeat. */
  accept(event) {
    const id = event && event.id;
    if (!id) return true;
    if (this.lastId !== null && compareIds(id, this.lastId) <= 0) {
      this.duplicates += 1;
      return false;
    }
    this.lastId = id;
    this.ids.push(id);
    if (this.ids.length > this.keep) this.ids.splice(0, this.ids.length - this.keep);
    return true;
  }

  /** The query string for a (re)connection: resume after the newest id seen. */
  query(token) {
    const params = new URLSearchParams({ token });
    if (this.lastId) params.set("last_event_id", this.lastId);
    return params.toString();
  }
}
