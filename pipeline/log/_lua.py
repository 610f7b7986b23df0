"""Lua scripts that make the event log's multi-step operations atomic on the server.

A script runs without interleaving, so two writers on one session never interleave
half-written batches, and a read sees one consistent snapshot of the trim horizon and the
entries. Each script validates everything before its first write: Redis does not roll back
a script that fails half-way.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.log._retention import closed_ttl, trim_minid
from pipeline.log.keys import CHANGES_INLINE_BYTES, CHANGES_KEEP_MS, CHANGES_MAXLEN
from schemas import Event, EventLogSettings

# Shared helpers: parse "ms-seq" ids (ms < 2^53 fits a Lua double exactly) and read the
# stream's counters from XINFO STREAM (O(1); Redis 7.0 reports max-deleted-entry-id and
# entries-added, which make the trim horizon and per-entry numbers exact).
_PRELUDE = """
local function parse_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function id_le(a, b)
  local am, as = parse_id(a)
  local bm, bs = parse_id(b)
  return am < bm or (am == bm and as <= bs)
end
local function stream_info(key)
  local info = {last = '0-0', added = 0, deleted = '0-0', exists = 0}
  if redis.call('EXISTS', key) == 1 then
    info.exists = 1
    local raw = redis.call('XINFO', 'STREAM', key)
    for i = 1, #raw, 2 do
      local name = raw[i]
      if name == 'last-generated-id' then info.last = raw[i + 1]
      elseif name == 'entries-added' then info.added = tonumber(raw[i + 1])
      elseif name == 'max-deleted-entry-id' then info.deleted = raw[i + 1] end
    end
  end
  return info
end
"""

#: how an append tells live readers of it, by ``EventLogSettings.live_read``
LIVE_READ_ARG = {"push": "p", "push_only": "o", "changes": "c"}
#: ``push``, by a writer whose own live reader is subscribed to the stream: published
#: only when another subscriber follows it too (:mod:`pipeline.log._push`)
PUSH_UNLESS_ONLY_MINE = "m"

#: KEYS[1] session stream, KEYS[2] feed stream, KEYS[3] changes stream (names KEYS[1] and
#: its last entry's id once per append, for live readers: :mod:`pipeline.log.fanout`),
#: KEYS[4] the session's erasure tombstone: an erased session takes nothing more.
#: ARGV: maxlen ('' = none), approx ('1': trim in steps of up to 10%, at most 100),
#:       minid ('' = none), expire_s ('' = none), feed_maxlen, n_events, session_id,
#:       changes_maxlen, inline_bytes (an append of one event whose fields are no longer
#:       than this is copied whole into its changes entry: a live reader then needs no
#:       second read for it; 0: never), live read (:data:`LIVE_READ_ARG`: 'p' the changes
#:       entry is written and its fields also published, msgpack'd, on the shard channel
#:       named as KEYS[1], for the live readers that follow the session,
#:       :mod:`pipeline.log._push`; 'o' published only; 'c' written only; 'm' as 'p',
#:       published only if the channel has more than one subscriber, the writer's own
#:       reader being one), then per event: id, feed ('1'/'0'), n_fields, fields...
#: Returns {'ok', first_n} | {'dup', first_n} | {'conflict', last_id} | {'erased', ''}.
APPEND = _PRELUDE + ("""
local key, feed, changes = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', KEYS[4]) == 1 then return {'erased', ''} end
local maxlen, approx, minid, expire_s = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local feed_maxlen, count, session_id = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local changes_maxlen, inline_bytes, live = ARGV[8], tonumber(ARGV[9]), ARGV[10]
local events, pos = {}, 11
for i = 1, count do
  local ev = {id = ARGV[pos], feed = ARGV[pos + 1], fields = {}}
  local nf = tonumber(ARGV[pos + 2])
  for j = 1, nf do ev.fields[j] = ARGV[pos + 2 + j] end
  pos = pos + 3 + nf
  if parse_id(ev.id) == nil then return redis.error_reply('ERR bad event id ' .. ev.id) end
  if i > 1 and id_le(ev.id, events[i - 1].id) then
    return redis.error_reply('ERR event ids must increase within a batch')
  end
  events[i] = ev
end
local info = stream_info(key)
if id_le(events[1].id, info.last) then
  -- Already appended (a retry after a lost reply) or taken by another writer: compare.
  local first_n = nil
  for i = 1, count do
    local found = redis.call('XRANGE', key, events[i].id, events[i].id)
    if #found == 0 then return {'conflict', info.last} end
    local stored = found[1][2]
    local want = events[i].fields
    -- stored = want .. {'n', n}
    if #stored ~= #want + 2 then return {'conflict', info.last} end
    for j = 1, #want do
      if stored[j] ~= want[j] then return {'conflict', info.last} end
    end
    if i == 1 then first_n = tonumber(stored[#stored]) end
  end
  return {'dup', first_n}
end
for i = 1, count do
  local ev = events[i]
  local args = {'XADD', key, ev.id}
  for _, f in ipairs(ev.fields) do args[#args + 1] = f end
  args[#args + 1] = 'n'
  args[#args + 1] = tostring(info.added + i)
  redis.call(unpack(args))
  if ev.feed == '1' then
    -- fields[2] is the event type by construction of the codec
    redis.call('XADD', feed, 'MAXLEN', '~', feed_maxlen, '*',
      'session', session_id, 'event', ev.id, 'type', ev.fields[2])
  end
end
local change = {'XADD', changes, 'MAXLEN', '~', changes_maxlen, '*',
  'k', key, 'i', events[count].id}
if count == 1 and inline_bytes > 0 then
  local size = 0
  for _, f in ipairs(events[1].fields) do size = size + #f end
  if size <= inline_bytes then
    for _, f in ipairs(events[1].fields) do change[#change + 1] = f end
    change[#change + 1] = 'n'
    change[#change + 1] = tostring(info.added + 1)
  end
end
if live == 'p' or live == 'o'
    or (live == 'm' and redis.call('PUBSUB', 'SHARDNUMSUB', key)[2] > 1) then
  redis.call('SPUBLISH', key, cmsgpack.pack({unpack(change, 7)}))
end
if live ~= 'o' then
  redis.call(unpack(change))
  if #change > 10 then
    -- an event rides whole in its changes entry: it goes within CHANGES_KEEP_MS, however
    -- quiet the partition (whole nodes only: cheap when there is nothing to trim)
    local now = redis.call('TIME')
    local oldest = tonumber(now[1]) * 1000 - KEEP_MS
    redis.call('XTRIM', changes, 'MINID', '~', string.format('%d-0', oldest))
  end
end
-- Trim, and record the newest deleted id: Redis 7.0's XTRIM does not update
-- max-deleted-entry-id, and readers rely on it to detect that they missed events.
local deleted = nil
if maxlen ~= '' then
  local limit = tonumber(maxlen)
  local slack = 0
  if approx == '1' then slack = math.max(0, math.min(100, math.floor(limit / 10))) end
  local len = redis.call('XLEN', key)
  if len > limit + slack then
    local doomed = redis.call('XRANGE', key, '-', '+', 'COUNT', len - limit)
    deleted = doomed[#doomed][1]
    redis.call('XTRIM', key, 'MAXLEN', limit)
  end
end
if minid ~= '' then
  local before = redis.call('XREVRANGE', key, '(' .. minid, '-', 'COUNT', 1)
  if #before > 0 then
    if deleted == nil or id_le(deleted, before[1][1]) then deleted = before[1][1] end
    redis.call('XTRIM', key, 'MINID', minid)
  end
end
if deleted ~= nil then
  local last = events[count].id
  redis.call('XSETID', key, last, 'MAXDELETEDID', deleted)
end
if expire_s ~= '' then redis.call('EXPIRE', key, tonumber(expire_s)) end
return {'ok', info.added + 1}
""".replace("KEEP_MS", str(CHANGES_KEEP_MS)))


def append_head(settings: EventLogSettings, batch: Sequence[Event], *,
                mine_subscribed: bool) -> list[bytes | str | int]:
    """:data:`APPEND`'s arguments before its events (``mine_subscribed``: a live reader of
    the writer's process is subscribed to the stream's pushes and stays so until the
    append is answered)."""
    live = LIVE_READ_ARG[settings.live_read]
    return [
        "" if settings.maxlen is None else settings.maxlen,
        "1" if settings.approximate_trim else "0",
        trim_minid(settings),
        closed_ttl(settings, batch),
        max(settings.maxlen or 100_000, 1000),
        len(batch),
        batch[0].session_id,
        CHANGES_MAXLEN,
        CHANGES_INLINE_BYTES,
        PUSH_UNLESS_ONLY_MINE if live == "p" and mine_subscribed else live,
    ]


#: KEYS[1] session stream. ARGV: start ('-' or '(id'), count.
#: Returns {exists, max_deleted_id, entries_added, last_id, entries}.
READ = _PRELUDE + """
local key = KEYS[1]
local info = stream_info(KEYS[1])
local entries = {}
if info.exists == 1 then
  entries = redis.call('XRANGE', key, ARGV[1], '+', 'COUNT', ARGV[2])
end
return {info.exists, info.deleted, info.added, info.last, entries}
"""

#: KEYS[1] a changes stream. ARGV[1] an erased session's stream key. Rewrites the changes
#: stream without the entries that name it: XDEL only marks an entry deleted, its bytes
#: stay in the stream's memory and in every RDB snapshot, and a changes entry may carry
#: a small event whole (``CHANGES_INLINE_BYTES``). Ids, the last id and the counters are
#: kept, so live readers' cursors stay valid. Returns the entries dropped.
COMPACT_CHANGES = """
local key, named = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local raw = redis.call('XINFO', 'STREAM', key)
local last, added, deleted = '0-0', 0, '0-0'
for i = 1, #raw, 2 do
  if raw[i] == 'last-generated-id' then last = raw[i + 1]
  elseif raw[i] == 'entries-added' then added = raw[i + 1]
  elseif raw[i] == 'max-deleted-entry-id' then deleted = raw[i + 1] end
end
local kept, dropped = {}, 0
for _, entry in ipairs(redis.call('XRANGE', key, '-', '+')) do
  local fields, mine = entry[2], false
  for j = 1, #fields, 2 do
    if fields[j] == 'k' and fields[j + 1] == named then mine = true end
  end
  if mine then dropped = dropped + 1 else kept[#kept + 1] = entry end
end
redis.call('DEL', key)
for _, entry in ipairs(kept) do redis.call('XADD', key, entry[1], unpack(entry[2])) end
if #kept > 0 then
  redis.call('XSETID', key, last, 'ENTRIESADDED', added, 'MAXDELETEDID', deleted)
end
return dropped
"""
