-- Retire match records of one pool: put back the tickets each releases, note the waits, delete.
-- KEYS[1] tickets zset   KEYS[2] ticket data hash   KEYS[3] match leases zset
-- KEYS[4] recent waits list   KEYS[4 + r] the record r   (all in one {mp:..} slot)
-- ARGV per record r, in order: match id, count n of released tickets, n triples (room id,
-- ticket age score, encoded ticket), count w of waits, w waits (ms) of the matched tickets.
-- One call retires a round's records together (docs/spec.md §11: one round trip, one script), each
-- record on its own: only the first retire of a record does anything, since a second one (a
-- process that lost its lease and finished late) must not put back tickets another match may
-- have claimed since. Returns one 1 (retired now) or 0 (already retired) per record.
local out = {}
local i = 1
local r = 0
local waits = 0
while i <= #ARGV do
  r = r + 1
  local match_id, n = ARGV[i], tonumber(ARGV[i + 1])
  local first = i + 2
  local w = tonumber(ARGV[first + 3 * n])
  i = first + 3 * n + 1 + w
  if redis.call('EXISTS', KEYS[4 + r]) == 1 then
    for k = first, first + 3 * (n - 1), 3 do
      redis.call('ZADD', KEYS[1], tonumber(ARGV[k + 1]), ARGV[k])
      redis.call('HSET', KEYS[2], ARGV[k], ARGV[k + 2])
    end
    for k = first + 3 * n + 1, first + 3 * n + w do
      redis.call('LPUSH', KEYS[4], ARGV[k])
      waits = waits + 1
    end
    redis.call('DEL', KEYS[4 + r])
    redis.call('ZREM', KEYS[3], match_id)
    out[r] = 1
  else
    out[r] = 0
  end
end
if waits > 0 then
  redis.call('LTRIM', KEYS[4], 0, 99)
end
return out
