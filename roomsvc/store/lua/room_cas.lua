-- Compare-and-set one room (docs/spec.md §4: every accepted change is version + 1, atomically).
-- KEYS[1] room hash {r:..}   KEYS[2] applied-request zset (same slot)
-- ARGV[1] expected version ("0" = the room must not exist)   ARGV[2] new version
-- ARGV[3] encoded document   ARGV[4] request id ("" = none)   ARGV[5] key TTL in ms
-- ARGV[6] message to publish   ARGV[7..] channels
-- Returns {1, version} applied; {0, version, doc} conflict; {2, version, doc} already applied
-- (a replay of this request id: a retry after a lost reply must not apply twice).
local current = redis.call('HGET', KEYS[1], 'v') or '0'
if ARGV[4] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[4]) then
  return {2, current, redis.call('HGET', KEYS[1], 'd')}
end
if current ~= ARGV[1] then
  return {0, current, redis.call('HGET', KEYS[1], 'd')}
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
  if redis.call('ZCARD', KEYS[2]) > 512 then
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -513)
  end
end
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
for i = 7, #ARGV do
  redis.call('PUBLISH', ARGV[i], ARGV[6])
end
return {1, ARGV[2]}
