-- notify-gateway presence update, run with EVAL by each gateway node.
--
-- One call applies a batch of presence changes for many accounts:
--   KEYS[i]          presence sorted set of change i (notify:presence:{acct})
--   ARGV[1]          expiry score for additions, Unix ms (now + presence ttl)
--   ARGV[2]          now, Unix ms
--   ARGV[1 + 2i]     '+' to add, '-' to remove
--   ARGV[2 + 2i]     member "<node id>/<connection id>"
-- Afterwards each touched set loses its expired members (left by crashed
-- nodes) and the key expires at its newest member's score, so it vanishes
-- by itself once no node refreshes it. Returns the number of changes.
-- (The periodic refresh of live connections is not done here but with
-- pipelined ZADD/PEXPIREAT: a script blocks Redis while it runs.)
local score, now = ARGV[1], ARGV[2]
local touched = {}
for i, key in ipairs(KEYS) do
  local op, member = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  if op == '+' then
    redis.call('ZADD', key, score, member)
  else
    redis.call('ZREM', key, member)
  end
  touched[key] = true
end
for key in pairs(touched) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if newest[2] then
    redis.call('PEXPIREAT', key, newest[2])
  end
end
return #KEYS
