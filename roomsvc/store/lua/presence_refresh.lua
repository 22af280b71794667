-- A process's presence heartbeat on one shard (docs/spec.md §6 presence; realtime/heartbeat.py).
-- KEYS[1] a presence shard zset   KEYS[2] the set of its members this process holds
-- KEYS[3] the shard's clock (hash: `beat`, `resumed`, by the store's own clock, TIME;
--         claim.lua says what for)
-- ARGV[1] silence (ms): no beat for longer is a stall, not a lapse
-- ARGV[2] deadline (ms)   ARGV[3] the set's ttl (ms), set when it is replaced or added to
-- ARGV[4] '1' = replace the set (ARGV then holds every member held)
-- ARGV[5] how many members to add follow   ARGV[6..] the members to add, then those to remove
-- Moves the deadline of every member held and returns how many that is: the caller knows how
-- many it holds and sends the whole set again if the store lost it. Every process beats every
-- shard, holding members there or not, so the shard's clock ticks while any process is live.
local function in_chunks(command, key, args)
  for start = 1, #args, 1000 do
    redis.call(command, key, unpack(args, start, math.min(start + 999, #args)))
  end
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local clock = redis.call('HMGET', KEYS[3], 'beat', 'resumed')
local beat, resumed = tonumber(clock[1]) or 0, tonumber(clock[2]) or 0
if beat > 0 and now - beat > tonumber(ARGV[1]) and now > resumed then
  redis.call('HSET', KEYS[3], 'resumed', now)
end
if now > beat then
  redis.call('HSET', KEYS[3], 'beat', now)
end

if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2])
end
local added = tonumber(ARGV[5])
local add, remove = {}, {}
for i = 6, #ARGV do
  if i <= 5 + added then
    add[#add + 1] = ARGV[i]
  else
    remove[#remove + 1] = ARGV[i]
  end
end
in_chunks('SADD', KEYS[2], add)
in_chunks('SREM', KEYS[2], remove)
local held = redis.call('SMEMBERS', KEYS[2])
local scored = {}
for _, member in ipairs(held) do
  scored[#scored + 1] = ARGV[2]
  scored[#scored + 1] = member
end
in_chunks('ZADD', KEYS[1], scored)
if #held > 0 and (ARGV[4] == '1' or added > 0) then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return #held
