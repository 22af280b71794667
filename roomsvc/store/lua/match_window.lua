-- Read the oldest tickets of one auto-match pool, under the pool's claim lock (docs/spec.md §5).
-- KEYS[1] tickets zset   KEYS[2] ticket data hash   KEYS[3] claim lock   (one {mp:..} slot)
-- ARGV[1] owner   ARGV[2] lock ms   ARGV[3] max tickets
-- Returns false while another process holds the lock (it is reading and claiming; the claim
-- script releases the lock), else the encoded tickets, oldest first.
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[1] then
  return false
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', tonumber(ARGV[2]))
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
if #ids == 0 then
  return {}
end
return redis.call('HMGET', KEYS[2], unpack(ids))
