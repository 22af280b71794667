-- Take tickets out of their auto-match pool, queue and data together (docs/spec.md §5).
-- KEYS[1] tickets zset   KEYS[2] ticket data hash   (one {mp:..} slot)
-- ARGV roomIds
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
return 1
