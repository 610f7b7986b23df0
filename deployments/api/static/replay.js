// Replay of a past session from its log (`GET /v1/sessions/{id}/events?follow=false`, a
// server-sent event stream read whole): every event in order, then where to resume.

/** The events of an SSE body, parsed one at a time as they are asked for: each block's
 *  `data:` lines joined; blocks without data, and data without a `type`, skipped. */
export function* streamEvents(text) {
  for (const block of text.split("\n\n")) {
    const data = block.split("\n").filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).trimStart()).join("\n");
    if (!data) continue;
    const event = JSON.parse(data);
    if (!event.type) continue;
    yield event;
  }
}

/** Hand every event of the log to `handle`; returns the last id seen (where the live
 *  socket resumes) and whether the session was closed (then there is nothing to resume). */
export function replay(text, handle) {
  let lastId = null;
  let closed = false;
  for (const event of streamEvents(text)) {
    handle(event);
    if (event.id) lastId = event.id;
    if (event.type === "session.closed") closed = true;
  }
  return { lastId, closed };
}
