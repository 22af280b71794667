-- Claim groups of tickets into match records (docs/design.md "claim, apply idempotently, retire").
-- KEYS[1] tickets zset   KEYS[2] ticket data hash   KEYS[3] match leases zset
-- KEYS[4] claim lock   KEYS[4 + g] the record of group g   (all in one {mp:..} slot)
-- ARGV[1] owner   ARGV[2] lease deadline (ms)   ARGV[3] now (ms)
-- then per group: match id, encoded group, member count n, n room ids.
-- A group is claimed only if every member is still in the pool, so a ticket is in at most one
-- record, ever. Returns one 1 (claimed) or 0 (some member gone) per group; releases the lock.
local out = {}
local i = 4
local g = 0
while i <= #ARGV do
  g = g + 1
  local match_id, blob, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local ids = {}
  for k = 1, n do
    ids[k] = ARGV[i + 2 + k]
  end
  i = i + 3 + n
  local ok = 1
  for _, id in ipairs(ids) do
    if not redis.call('ZSCORE', KEYS[1], id) then
      ok = 0
      break
    end
  end
  if ok == 1 then
    redis.call('ZREM', KEYS[1], unpack(ids))
    redis.call('HDEL', KEYS[2], unpack(ids))
    redis.call('HSET', KEYS[4 + g], 'g', blob, 'owner', ARGV[1], 'claimed', ARGV[3], 'step', 0)
    redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), match_id)
  end
  out[g] = ok
end
if redis.call('GET', KEYS[4]) == ARGV[1] then
  redis.call('DEL', KEYS[4])
end
return out
