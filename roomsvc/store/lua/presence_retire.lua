-- Retire presence claims (docs/design.md "claim, apply idempotently, retire"; docs/spec.md §6 presence).
-- KEYS[1] a presence shard zset   ARGV pairs: member, the lease deadline of our claim on it
-- Removes a member only while it still carries our lease: a player who reconnected after
-- the claim has a fresh deadline that must survive. Returns how many were removed.
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
