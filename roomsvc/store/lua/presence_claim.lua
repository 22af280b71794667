-- Claim lapsed presence deadlines (DESIGN "claim, apply idempotently, retire"; SPEC §6).
-- KEYS[1] a presence shard zset   ARGV[1] now (ms)   ARGV[2] lease (ms)   ARGV[3] max items
-- Due members get score now + lease, so no other process takes them while this one works;
-- if this process dies, the lease lapses and any process claims them again.
-- Returns {the earliest score left in the shard or -1, claimed member...}: the sweeper sleeps
-- until that deadline instead of polling, so a lapsed seat is released when it lapses.
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
local lease_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], lease_until, member)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reply = {first[2] and tonumber(first[2]) or -1}
for _, member in ipairs(due) do
  reply[#reply + 1] = member
end
return reply
