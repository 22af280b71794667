-- Retire a presence claim (DESIGN "claim, apply idempotently, retire"; SPEC §6 presence).
-- KEYS[1] a presence shard zset   ARGV[1] member   ARGV[2] the lease deadline of our claim
-- Removes the member only while it still carries our lease: a player who reconnected after
-- the claim has a fresh deadline that must survive.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
