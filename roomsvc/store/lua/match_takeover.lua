-- Take over a match record whose lease lapsed (its owner died or stalled), to finish it.
-- KEYS[1] match leases zset   KEYS[2] the record   (one {mp:..} slot)
-- ARGV[1] match id   ARGV[2] now (ms)   ARGV[3] new lease deadline (ms)   ARGV[4] owner
-- Returns false if the lease still runs or the record is gone, else {group, step, claimed}.
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease or tonumber(lease) > tonumber(ARGV[2]) then
  return false
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], 'owner', ARGV[4])
return redis.call('HMGET', KEYS[2], 'g', 'step', 'claimed')
