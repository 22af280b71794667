-- Append one analytics batch to its application's stream, at most once (SPEC §8).
--
-- KEYS[1]  the application's stream          {analytics:<app>}:stream
-- KEYS[2]  the batch's marker                 {analytics:<app>}:batch:<caller>:<batchId>
-- ARGV[1]  approximate MAXLEN of the stream
-- ARGV[2]  marker lifetime in milliseconds
-- ARGV[3..] one JSON document per item, stored as the entry's `item` field
--
-- Both keys share one hash tag, so this runs in one Cluster slot and is atomic: a retry that
-- races the original finds the marker and stores nothing. The marker holds the item count.
-- Returns {1, count} when stored now, {0, count} when the marker says it was stored before.

local previous = redis.call('GET', KEYS[2])
if previous then
  return {0, tonumber(previous)}
end
local stream = KEYS[1]
for i = 3, #ARGV do
  redis.call('XADD', stream, '*', 'item', ARGV[i])
end
-- Trim once per batch rather than per item: '~' lets the server drop whole nodes only.
redis.call('XTRIM', stream, 'MAXLEN', '~', ARGV[1])
local count = #ARGV - 2
redis.call('SET', KEYS[2], count, 'PX', ARGV[2])
return {1, count}
