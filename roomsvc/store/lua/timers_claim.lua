-- Claim due timers (docs/design.md "claim, apply idempotently, retire").
-- KEYS[1] a timer shard zset   ARGV[1] now (ms)   ARGV[2] lease (ms)   ARGV[3] max items
-- Due members get score now + lease, so no other process takes them while this one works;
-- if this process dies, the lease lapses and any process claims them again.
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
local lease_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], lease_until, member)
end
return due
