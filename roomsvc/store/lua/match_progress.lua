-- Record a match's progress and extend its lease, unless the record was retired meanwhile.
-- KEYS[1] match leases zset   KEYS[2] the record   (one {mp:..} slot)
-- ARGV[1] match id   ARGV[2] step reached   ARGV[3] new lease deadline (ms)
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], 'step', ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[3]), ARGV[1])
return 1
