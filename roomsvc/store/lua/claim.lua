-- Claim due members of a sharded sorted set (docs/design.md "claim, apply idempotently, retire";
-- store/claims.py): the timers' deadlines, the presence deadlines (docs/spec.md §4, §6).
-- KEYS[1] a shard zset   KEYS[2] the shard's clock (hash; optional, see below)
-- ARGV[1] now (ms)   ARGV[2] lease (ms)   ARGV[3] max items
-- ARGV[4] silence (ms)   ARGV[5] hold (ms)   (with KEYS[2])
-- Due members get score now + lease, so no other process takes them while this one works;
-- if this process dies, the lease lapses and any process claims them again.
-- Returns {the earliest score left in the shard or -1, claimed member...}: a sweeper may sleep
-- until that deadline instead of polling, so a lapsed member is claimed when it lapses.
--
-- The clock (docs/store.md "Presence through a stall"): every process's heartbeat records in
-- `beat` when it last reached this shard (presence_refresh.lua), by the store's own clock. No
-- beat for longer than `silence` means no process could write one (the store stalled or was
-- unreachable, or every process was down): deadlines that lapsed meanwhile lapsed for want of a
-- refresh, not of a player. From when such a silence is first noticed (`resumed`) nothing is
-- claimed for `hold` (a grace and an interval), time for every live process to beat again.
-- The store's clock, not ARGV's `now`: a command that waited in a stalled server's socket
-- buffer runs when it wakes, carrying the time it was sent, so only the store saw the silence.
local now = tonumber(ARGV[1])
if KEYS[2] then
  local time = redis.call('TIME')
  local store_now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local clock = redis.call('HMGET', KEYS[2], 'beat', 'resumed')
  local beat, resumed = tonumber(clock[1]) or 0, tonumber(clock[2]) or 0
  if beat > 0 and store_now - beat > tonumber(ARGV[4]) and store_now > resumed then
    resumed = store_now
    redis.call('HSET', KEYS[2], 'resumed', resumed)
  end
  if resumed > 0 and store_now < resumed + tonumber(ARGV[5]) then
    return {now + resumed + tonumber(ARGV[5]) - store_now}  -- due again then (in `now`'s terms)
  end
end
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
local lease_until = now + tonumber(ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], lease_until, member)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reply = {first[2] and tonumber(first[2]) or -1}
for _, member in ipairs(due) do
  reply[#reply + 1] = member
end
return reply
