-- Retire a match record: put back the tickets it releases, note the waits, delete it.
-- KEYS[1] tickets zset   KEYS[2] ticket data hash   KEYS[3] match leases zset
-- KEYS[4] the record   KEYS[5] recent waits list   (all in one {mp:..} slot)
-- ARGV[1] match id   ARGV[2] count n of released tickets   then n triples (room id, ticket
-- age score, encoded ticket)   then the waits (ms) of the matched tickets.
-- Only the first retire of a record does anything: a second one (a process that lost its lease
-- and finished late) must not put back tickets another match may have claimed since.
if redis.call('EXISTS', KEYS[4]) == 0 then
  return 0
end
local n = tonumber(ARGV[2])
local i = 3
for _ = 1, n do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[i + 1]), ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
  i = i + 3
end
if i <= #ARGV then
  while i <= #ARGV do
    redis.call('LPUSH', KEYS[5], ARGV[i])
    i = i + 1
  end
  redis.call('LTRIM', KEYS[5], 0, 99)
end
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
