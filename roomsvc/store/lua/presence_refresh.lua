-- A process's presence heartbeat on one shard (SPEC §6 presence; realtime/heartbeat.py).
-- KEYS[1] a presence shard zset   KEYS[2] the set of its members this process holds
-- ARGV[1] deadline (ms)   ARGV[2] the set's ttl (ms), set when it is replaced or added to
-- ARGV[3] '1' = replace the set (ARGV then holds every member held)
-- ARGV[4] how many members to add follow   ARGV[5..] the members to add, then those to remove
-- Moves the deadline of every member held and returns how many that is: the caller knows how
-- many it holds and sends the whole set again if the store lost it.
local function in_chunks(command, key, args)
  for start = 1, #args, 1000 do
    redis.call(command, key, unpack(args, start, math.min(start + 999, #args)))
  end
end

if ARGV[3] == '1' then
  redis.call('DEL', KEYS[2])
end
local added = tonumber(ARGV[4])
local add, remove = {}, {}
for i = 5, #ARGV do
  if i <= 4 + added then
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
  scored[#scored + 1] = ARGV[1]
  scored[#scored + 1] = member
end
in_chunks('ZADD', KEYS[1], scored)
if #held > 0 and (ARGV[3] == '1' or added > 0) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return #held
