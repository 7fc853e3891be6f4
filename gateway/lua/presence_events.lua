
-- Presence events (README.md "Presence events"), appended to the notify
-- library by the gateway, so it is loaded with it on every primary after
-- every reconnect. Nothing here is filled in by a node's flags: nodes with
-- different flags load the same text.
--
-- All state lives in the slot of the events stream <P>presence:events (it
-- is one key, so in a Redis Cluster one primary holds it): every key below
-- carries the hash tag {<P>presence:events}, so each call reads and writes
-- the state and the stream atomically. With T = <P>pev:{<P>presence:events}:
--   T..'nodes'      sorted set: node incarnation -> expiry (Redis ms)
--   T..'node:'..N   set: accounts incarnation N holds
--   T..'on:'..A     set: incarnations holding account A
--   T..'acct:'..A   hash: state (online|offline), seq, off_at (a pending
--                   offline: when its last connection went)
--   T..'due'        sorted set: account -> when its pending offline is due
-- Time is Redis's (TIME), the same clock for every node.
--
--   FCALL notify_presence_apply 1 <stream> <incarnation> <ttl ms>
--         <debounce ms> <max len> op1 acct1 op2 acct2 ...
--     op '+': the incarnation holds a first connection of acct, '-': its
--     last one went. Also refreshes the incarnation's expiry. Returns the
--     number of events written.
--   FCALL notify_presence_sweep 1 <stream> <incarnation> <ttl ms>
--         <debounce ms> <max len> <budget>
--     refreshes the incarnation, removes what lapsed incarnations held
--     (their accounts go offline when nobody else holds them) and writes
--     the pending offlines that are due. Returns {events written, work
--     left (1 when the budget ran out)}.
--   FCALL notify_presence_leave 1 <stream> <incarnation> <debounce ms> <max len>
--     a clean shutdown: everything the incarnation held goes now.
--   FCALL notify_webhook_lease 2 <stream> <P>webhook:{<stream>}:lease <incarnation> <ms>
--     takes or renews the webhook lease of a stream (presence events, the
--     undelivered outbox); 1 when held, 0 when another has it.
--   FCALL notify_webhook_release 2 <stream> <lease key> <incarnation>

local function pev_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function pev_base(stream)
  local prefix = string.match(stream, '^(.*)presence:events$')
  if not prefix then return nil end
  return prefix .. 'pev:{' .. stream .. '}:'
end

-- Writes the transition of account a to state at time at, once: nothing
-- when the account is in that state already. Returns 1 when written.
local function pev_emit(ctx, a, state, at)
  local key = ctx.base .. 'acct:' .. a
  local cur = redis.call('HMGET', key, 'state', 'seq')
  if (cur[1] or 'offline') == state then return 0 end
  local seq = math.max((tonumber(cur[2]) or 0) + 1, at)
  redis.call('HSET', key, 'state', state, 'seq', seq)
  redis.call('HDEL', key, 'off_at')
  if state == 'offline' then
    -- seq is at least at, so it keeps growing if this state is forgotten.
    redis.call('PEXPIRE', key, 7 * 86400 * 1000)
  else
    redis.call('PERSIST', key)
  end
  redis.call('XADD', ctx.stream, 'MAXLEN', '~', ctx.max_len, '*', 'account', a,
             'state', state, 'at', tostring(at), 'seq', tostring(seq))
  return 1
end

-- Account a has no holder any more since at: offline now, or pending until
-- at + debounce (a connection coming back meanwhile cancels it).
local function pev_gone(ctx, a, at)
  local key = ctx.base .. 'acct:' .. a
  local cur = redis.call('HMGET', key, 'state', 'off_at')
  if cur[1] ~= 'online' or cur[2] then return 0 end
  local due = at + ctx.debounce
  if due <= ctx.now then return pev_emit(ctx, a, 'offline', at) end
  redis.call('HSET', key, 'off_at', at)
  redis.call('ZADD', ctx.base .. 'due', due, a)
  return 0
end

local function pev_up(ctx, node, a)
  local on = ctx.base .. 'on:' .. a
  local before = redis.call('SCARD', on)
  redis.call('SADD', ctx.base .. 'node:' .. node, a)
  if redis.call('SADD', on, node) == 0 or before > 0 then return 0 end
  local key = ctx.base .. 'acct:' .. a
  local off_at = tonumber(redis.call('HGET', key, 'off_at'))
  if off_at then
    local due = tonumber(redis.call('ZSCORE', ctx.base .. 'due', a))
    redis.call('ZREM', ctx.base .. 'due', a)
    if due and due > ctx.now then
      -- back within the debounce: the departure never happened
      redis.call('HDEL', key, 'off_at')
      return 0
    end
    -- gone longer than the debounce, the sweep just had not seen it yet
    return pev_emit(ctx, a, 'offline', off_at) + pev_emit(ctx, a, 'online', ctx.now)
  end
  return pev_emit(ctx, a, 'online', ctx.now)
end

local function pev_down(ctx, node, a, at)
  redis.call('SREM', ctx.base .. 'node:' .. node, a)
  local on = ctx.base .. 'on:' .. a
  if redis.call('SREM', on, node) == 0 or redis.call('SCARD', on) > 0 then return 0 end
  return pev_gone(ctx, a, at)
end

local function pev_ctx(keys, debounce, max_len)
  local stream = keys[1]
  local base = stream and pev_base(stream)
  if not base then return nil end
  return {stream = stream, base = base, now = pev_time(),
          debounce = tonumber(debounce) or 0, max_len = tonumber(max_len) or 100000}
end

local function pev_alive(ctx, node, ttl)
  redis.call('ZADD', ctx.base .. 'nodes', ctx.now + tonumber(ttl), node)
end

local pev_usage = 'ERR key must be <prefix>presence:events'

local function notify_presence_apply(keys, args)
  local node, ttl = args[1], args[2]
  local ctx = pev_ctx(keys, args[3], args[4])
  if not ctx or not node or not tonumber(ttl) then return redis.error_reply(pev_usage) end
  pev_alive(ctx, node, ttl)
  local written = 0
  for i = 5, #args - 1, 2 do
    if args[i] == '+' then
      written = written + pev_up(ctx, node, args[i + 1])
    else
      written = written + pev_down(ctx, node, args[i + 1], ctx.now)
    end
  end
  return written
end

-- Removes up to budget accounts of a lapsed incarnation; returns the
-- events written and the budget left.
local function pev_reap(ctx, node, at, budget)
  local set = ctx.base .. 'node:' .. node
  local written = 0
  local accts = redis.call('SPOP', set, budget)
  for _, a in ipairs(accts) do
    written = written + pev_down(ctx, node, a, at)
  end
  if redis.call('SCARD', set) == 0 then
    redis.call('ZREM', ctx.base .. 'nodes', node)
  end
  return written, budget - #accts
end

local function notify_presence_sweep(keys, args)
  local node, ttl, budget = args[1], args[2], tonumber(args[5]) or 1000
  local ctx = pev_ctx(keys, args[3], args[4])
  if not ctx or not node or not tonumber(ttl) then return redis.error_reply(pev_usage) end
  pev_alive(ctx, node, ttl)
  local written = 0
  local dead = redis.call('ZRANGEBYSCORE', ctx.base .. 'nodes', '-inf', '(' .. ctx.now,
                          'WITHSCORES', 'LIMIT', 0, 16)
  for i = 1, #dead, 2 do
    if budget <= 0 then break end
    local w
    -- offline since its entries lapsed (the expiry), not since this sweep
    w, budget = pev_reap(ctx, dead[i], tonumber(dead[i + 1]), budget)
    written = written + w
  end
  local due_key = ctx.base .. 'due'
  local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', ctx.now, 'LIMIT', 0,
                         math.max(budget, 0))
  for _, a in ipairs(due) do
    redis.call('ZREM', due_key, a)
    local key = ctx.base .. 'acct:' .. a
    local off_at = tonumber(redis.call('HGET', key, 'off_at'))
    if off_at and redis.call('SCARD', ctx.base .. 'on:' .. a) == 0 then
      written = written + pev_emit(ctx, a, 'offline', off_at)
    else
      redis.call('HDEL', key, 'off_at')
    end
    budget = budget - 1
  end
  return {written, budget <= 0 and 1 or 0}
end

local function notify_presence_leave(keys, args)
  local node = args[1]
  local ctx = pev_ctx(keys, args[2], args[3])
  if not ctx or not node then return redis.error_reply(pev_usage) end
  local written = 0
  for _, a in ipairs(redis.call('SMEMBERS', ctx.base .. 'node:' .. node)) do
    written = written + pev_down(ctx, node, a, ctx.now)
  end
  redis.call('DEL', ctx.base .. 'node:' .. node)
  redis.call('ZREM', ctx.base .. 'nodes', node)
  return written
end

-- The webhook lease of a stream: KEYS[2], in the stream's slot.
local function notify_webhook_lease(keys, args)
  local lease, node, ms = keys[2], args[1], tonumber(args[2])
  if not lease or not node or not ms then
    return redis.error_reply('ERR usage: notify_webhook_lease 2 <stream> <lease key> <holder> <ms>')
  end
  local holder = redis.call('GET', lease)
  if holder and holder ~= node then return 0 end
  redis.call('SET', lease, node, 'PX', ms)
  return 1
end

local function notify_webhook_release(keys, args)
  local lease = keys[2]
  if not lease or not args[1] then
    return redis.error_reply('ERR usage: notify_webhook_release 2 <stream> <lease key> <holder>')
  end
  if redis.call('GET', lease) == args[1] then
    redis.call('DEL', lease)
    return 1
  end
  return 0
end

redis.register_function('notify_presence_apply', notify_presence_apply)
redis.register_function('notify_presence_sweep', notify_presence_sweep)
redis.register_function('notify_presence_leave', notify_presence_leave)
redis.register_function('notify_webhook_lease', notify_webhook_lease)
redis.register_function('notify_webhook_release', notify_webhook_release)
