-- A process's presence heartbeat on one shard (SPEC §6 presence; realtime/heartbeat.py).
-- KEYS[1] a presence shard zset   KEYS[2] the set of its members this process holds
-- KEYS[3] the shard's clock (hash: `beat`, `resumed`; presence_claim.lua says what for)
-- ARGV[1] now (ms)   ARGV[2] silence (ms): no beat for longer is a stall, not a lapse
-- ARGV[3] deadline (ms)   ARGV[4] the set's ttl (ms), set when it is replaced or added to
-- ARGV[5] '1' = replace the set (ARGV then holds every member held)
-- ARGV[6] how many members to add follow   ARGV[7..] the members to add, then those to remove
-- Moves the deadline of every member held and returns how many that is: the caller knows how
-- many it holds and sends the whole set again if the store lost it. Every process beats every
-- shard, holding members there or not, so the shard's clock ticks while any process is live.
local function in_chunks(command, key, args)
  for start = 1, #args, 1000 do
    redis.call(command, key, unpack(args, start, math.min(start + 999, #args)))
  end
end

local now = tonumber(ARGV[1])
local clock = redis.call('HMGET', KEYS[3], 'beat', 'resumed')
local beat, resumed = tonumber(clock[1]) or 0, tonumber(clock[2]) or 0
if beat > 0 and now - beat > tonumber(ARGV[2]) and now > resumed then
  redis.call('HSET', KEYS[3], 'resumed', now)
end
if now > beat then  -- a beat delayed in a stalled socket may arrive after a newer one
  redis.call('HSET', KEYS[3], 'beat', now)
end

if ARGV[5] == '1' then
  redis.call('DEL', KEYS[2])
end
local added = tonumber(ARGV[6])
local add, remove = {}, {}
for i = 7, #ARGV do
  if i <= 6 + added then
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
  scored[#scored + 1] = ARGV[3]
  scored[#scored + 1] = member
end
in_chunks('ZADD', KEYS[1], scored)
if #held > 0 and (ARGV[5] == '1' or added > 0) then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return #held
