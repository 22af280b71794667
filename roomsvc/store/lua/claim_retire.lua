-- Retire claims of claim.lua (docs/design.md "claim, apply idempotently, retire"; store/claims.py).
-- KEYS[1] a shard zset   ARGV triples: member, the lease deadline of our claim on it, and its
-- next score ('' = remove it).
-- Acts on a member only while it still carries our lease: a presence deadline refreshed by a
-- reconnect after the claim, or a member another process claimed once our lease lapsed, is
-- left alone. Returns how many were retired.
local retired = 0
for i = 1, #ARGV, 3 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == '' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], tonumber(ARGV[i + 2]), ARGV[i])
    end
    retired = retired + 1
  end
end
return retired
