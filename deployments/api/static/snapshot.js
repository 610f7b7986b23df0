// `window.voxline.snapshot()`: what the page knows (the session, the socket's counters,
// the events handled, the player's counters, the turns) as plain data, for the page's
// browser tests and for anyone curious in the console. Pure: it copies, never shares.

/** The page's state as plain data; any of connection, context, player may be null. */
export function pageSnapshot({ session, status, connection, conversation, context, player }) {
  return {
    sessionId: session?.session_id ?? null,
    token: session?.token ?? null,
    status,
    connected: connection ? connection.open_ : false,
    transport: connection ? connection.kind : "none", // "webrtc" (a call) or "socket"
    reconnects: connection ? connection.reconnects : 0,
    duplicates: connection ? connection.cursor.duplicates : 0,
    eventIds: connection ? [...connection.cursor.ids] : [],
    events: conversation.events.map((e) => ({ ...e })),
    audioTime: context ? context.currentTime : 0,
    audioState: context ? context.state : "none",
    played: player ? player.played : 0,
    started: player ? player.started : 0,
    playing: player ? player.playing : false,
    scheduledAhead: player ? player.schedule.remaining(context.currentTime) : 0,
    stops: player ? player.stops.map((s) => ({ ...s })) : [],
    settings: session?.settings ?? null,
    turns: [...conversation.turns].map(([id, t]) => ({
      id, user: t.user, reply: t.reply, mode: t.mode, status: t.status, chunks: t.chunks,
      expected: t.expected, narrated: t.narrated,
      played: player ? (player.playedByTurn.get(id) ?? 0) : 0,
    })),
  };
}
