-- Put one ticket in its auto-match pool, data and queue together (docs/spec.md §5).
-- KEYS[1] tickets zset   KEYS[2] ticket data hash   (one {mp:..} slot)
-- ARGV[1] roomId   ARGV[2] encoded ticket   ARGV[3] queued since (ms)
-- A window (match_window.lua) sees the ticket only with its data.
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
