-- Append one analytics batch to its application's stream, at most once (docs/spec.md §8).
--
-- KEYS[1]  the application's stream          {analytics:<app>}:stream
-- KEYS[2]  the batch's marker                 {analytics:<app>}:batch:<caller>:<batchId>
-- ARGV[1]  approximate MAXLEN of the stream
-- ARGV[2]  marker lifetime in milliseconds
-- ARGV[3]  the items: compact JSON documents joined by "\n" (JSON text never holds a raw
--          newline), each stored as one entry's `item` field. One argument instead of one
--          per item spares the client packing a thousand arguments per batch (docs/spec.md §11).
--
-- Both keys share one hash tag, so this runs in one Cluster slot and is atomic: a retry
-- racing the original finds the marker and stores nothing. The marker holds the item count.
-- Returns {1, count} when stored now, {0, count} when the marker says it was stored before.

local previous = redis.call('GET', KEYS[2])
if previous then
  return {0, tonumber(previous)}
end
local stream, blob = KEYS[1], ARGV[3]
local size, pos, count = #blob, 1, 0
while pos <= size do
  local stop = string.find(blob, '\n', pos, true) or (size + 1)
  redis.call('XADD', stream, '*', 'item', string.sub(blob, pos, stop - 1))
  count = count + 1
  pos = stop + 1
end
-- Trim once per batch rather than per item: '~' lets the server drop whole nodes only.
redis.call('XTRIM', stream, 'MAXLEN', '~', ARGV[1])
redis.call('SET', KEYS[2], count, 'PX', ARGV[2])
return {1, count}
