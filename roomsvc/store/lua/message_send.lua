-- One in-room message (docs/messages.md): checked against the room version the sender's
-- process validated membership at, numbered, kept, and published once for the whole room.
-- KEYS[1] room hash {r:..}   KEYS[2] message backlog stream (same slot)
-- ARGV[1] expected room version   ARGV[2] "1" = reliable (numbered and kept)
-- ARGV[3] backlog cap   ARGV[4] channel (sharded, in the room's slot)   ARGV[5] message
-- ARGV[6] sending connection id   ARGV[7] its token for this message (increasing)
-- Returns {1, seq} sent (seq 0 when not reliable); {2, seq} this token was sent already (a
-- retry after a lost reply: never twice); {0, version, doc} the room changed first.
local field = 'l:' .. ARGV[6]
local last = redis.call('HGET', KEYS[1], field)
if last then
  local sep = string.find(last, ':', 1, true)
  if tonumber(string.sub(last, 1, sep - 1)) >= tonumber(ARGV[7]) then
    return {2, tonumber(string.sub(last, sep + 1))}
  end
end
local current = redis.call('HGET', KEYS[1], 'v')
if current ~= ARGV[1] then
  return {0, current or '0', redis.call('HGET', KEYS[1], 'd')}
end
local seq = 0
if ARGV[2] == '1' then
  seq = redis.call('HINCRBY', KEYS[1], 'm', 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '0-' .. seq, 'm', ARGV[5])
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
end
redis.call('HSET', KEYS[1], field, ARGV[7] .. ':' .. seq)
redis.call('SPUBLISH', ARGV[4], seq .. ' ' .. ARGV[5])
return {1, seq}
