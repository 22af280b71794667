-- Tie a create's client requestId to a room id, unless it is tied already (docs/spec.md §4:
-- a create retried with the same requestId is the same room). A script, not SET NX GET, so the
-- reply is the same raw value on a plain server and a cluster (store/batching.py).
-- KEYS[1] the request's key   ARGV[1] roomId   ARGV[2] seconds to keep it
-- Returns the room id it was tied to before, or nil when this call tied it.
local tied = redis.call('GET', KEYS[1])
if tied then
  return tied
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
