-- events.record for one player, atomically (docs/spec.md §7). All keys share the player's hash tag.
--
-- KEYS: 1 counts (hash), 2 periods (zset), 3 requests (zset), 4 bucket (hash)
-- ARGV: now_ms, request_id ('' = none), request_ttl_ms, period_keep_ms, rate_per_minute,
--       n_periods, then per period: start_ms, end_ms, n_updates, (definition_id, count) * n
--       (periods are distinct, checked by the pure core; each count is the exact decimal sum of
--       the period's updates of that definition, > 0, and may exceed int64: see saturation)
--
-- Returns {status, already, counters, retry_after_ms}:
--   status 0 applied, 1 requestId seen before, 2 every period seen before, 3 rate limited;
--   already: 0-based indexes of periods recorded before (ALREADY_UPDATED);
--   counters: flat {definition_id, value, ...} for every definition named, after this call.
-- Nothing is written before every check has passed, so an error can never leave half a change.

local now = tonumber(ARGV[1])
local request_id = ARGV[2]
local request_ttl = tonumber(ARGV[3])
local period_keep = tonumber(ARGV[4])
local rate = tonumber(ARGV[5])
local n_periods = tonumber(ARGV[6])
local INT64_CEILING = '9223372036854775807'

local periods = {}
local defs, named = {}, {}
local at = 7
for p = 1, n_periods do
  local member = ARGV[at] .. ':' .. ARGV[at + 1]
  local score = tonumber(ARGV[at + 1])
  local n = tonumber(ARGV[at + 2])
  at = at + 3
  local updates = {}
  for u = 1, n do
    local def = ARGV[at]
    updates[u] = {def, ARGV[at + 1]}
    if not named[def] then
      named[def] = true
      defs[#defs + 1] = def
    end
    at = at + 2
  end
  periods[p] = {member, score, updates}
end

local function counters()
  local out = {}
  if #defs == 0 then return out end
  local values = redis.call('HMGET', KEYS[1], unpack(defs))
  for i, def in ipairs(defs) do
    out[#out + 1] = def
    out[#out + 1] = values[i] or '0'
  end
  return out
end

-- 1. A replayed requestId changes nothing, whatever it carries (docs/design.md: retries never
--    double-apply). Replays cost no token.
if request_id ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - request_ttl)
  if redis.call('ZSCORE', KEYS[3], request_id) then
    return {1, {}, counters(), 0}
  end
end

-- 2. An exact period recorded before is never counted again. Periods that ended long enough
--    ago to be TIME_PERIOD_EXPIRED can never come back, so they are forgotten.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - period_keep))
local already, fresh = {}, {}
for p = 1, n_periods do
  if redis.call('ZSCORE', KEYS[2], periods[p][1]) then
    already[#already + 1] = p - 1
  else
    fresh[#fresh + 1] = periods[p]
  end
end
if #fresh == 0 then
  return {2, already, counters(), 0}
end

-- 3. Token bucket: one token per call that changes something; capacity and refill per minute
--    are both `rate`. The clock never runs backwards for the bucket (processes' clocks differ).
local bucket = redis.call('HMGET', KEYS[4], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or rate
local last = tonumber(bucket[2]) or now
if now > last then
  tokens = math.min(rate, tokens + (now - last) * rate / 60000)
  last = now
end
if tokens < 1 then
  local wait = math.ceil((1 - tokens) * 60000 / rate)
  return {3, already, counters(), wait}
end
redis.call('HSET', KEYS[4], 'tokens', tostring(tokens - 1), 'ts', tostring(last))
redis.call('PEXPIRE', KEYS[4], 120000)

-- 4. Apply. Counters saturate at the int64 ceiling instead of failing half-way.
local totals, order = {}, {}
for _, period in ipairs(fresh) do
  redis.call('ZADD', KEYS[2], period[2], period[1])
  for _, update in ipairs(period[3]) do
    local def = update[1]
    if not totals[def] then
      totals[def] = 0
      order[#order + 1] = def
    end
    totals[def] = totals[def] + tonumber(update[2])
  end
end
redis.call('PEXPIRE', KEYS[2], period_keep)
if request_id ~= '' then
  redis.call('ZADD', KEYS[3], now, request_id)
  redis.call('PEXPIRE', KEYS[3], request_ttl)
end
local current = redis.call('HMGET', KEYS[1], unpack(order))
local saturated = {}
for i, def in ipairs(order) do
  -- doubles are approximate up here, but the margin to 2^63 is far larger than their error;
  -- any count string beyond int64 is >= 9.2e18 too, so it never reaches HINCRBY
  if (tonumber(current[i]) or 0) + totals[def] >= 9.2e18 then
    saturated[def] = true
    redis.call('HSET', KEYS[1], def, INT64_CEILING)
  end
end
for _, period in ipairs(fresh) do
  for _, update in ipairs(period[3]) do
    if not saturated[update[1]] then
      redis.call('HINCRBY', KEYS[1], update[1], update[2])
    end
  end
end
return {0, already, counters(), 0}
