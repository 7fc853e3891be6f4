#!lua name=notify
-- notify-gateway's Redis function library (README.md "Publishing",
-- "Resuming" and "Acknowledgements and the undelivered outbox").
-- Every gateway loads it with FUNCTION LOAD REPLACE at start and after each
-- reconnect; the gateway replaces the __PLACEHOLDERS__ with its flags, the
-- publish command of its mode and, in a cluster, a hash tag per slot.
--
--   FCALL notify_publish 1 <prefix>stream:{<account>} '<envelope json>'
--         [ack <seconds>] [ttl <seconds>]
--     validates the payload, appends it to the account's stream (trimmed to
--     MAX_LEN entries, key expiring TTL seconds after the last
--     append), publishes it with its "id" (and "expires_at" with ttl) on
--     <prefix>acct:{<account>}, all atomically, and returns the id. With
--     ack, the message is owed an acknowledgement within that many seconds:
--     its deadline goes into <prefix>deadlines (a ZSET per slot in a
--     cluster), or, when the account has no live connection anywhere, it
--     goes to the outbox at once (reason offline).
--   FCALL_RO notify_replay 1 <prefix>stream:{<account>} <since id>
--     returns {gap, oldest, id1, msg1, id2, msg2, ...}: every retained,
--     unexpired message after <since> (each with its "id"), in order; gap
--     is 1 when messages after <since> may no longer be retained, whatever
--     trimmed the stream (oldest = the oldest retained id, "" when none).
--   FCALL notify_ack 1 <prefix>stream:{<account>} <connection> <node> <id>...
--     acknowledges ids; returns one status per id: 1 first acknowledgement
--     (a receipt written), 0 acknowledged before, -1 no such message.
--   FCALL notify_sweep 0 <prefix> <node> <lease ms> <limit> [<slot lo> <slot hi>]...
--     moves due deadlines to the outbox (reason timeout) unless acknowledged
--     or expired; see notify_sweep below.
--   FCALL notify_relay 1 <target stream> <account> <id> <field> <value>...
--     (cluster) appends one entry to <prefix>receipts or <prefix>undelivered
--     unless that account and id are there already.
local MAX_LEN = __HISTORY_MAX_LEN__
local TTL = __HISTORY_TTL__
local PUBLISH = '__PUBLISH__'
local RECEIPTS_MAX = __RECEIPTS_MAX_LEN__
local UNDELIVERED_MAX = __UNDELIVERED_MAX_LEN__
-- In a cluster, TAGS holds four characters per slot, a hash tag that lands
-- in that slot: the per-slot keys of deadlines and relays are named with
-- it, so a function running for an account touches only its own slot.
-- "" for a single Redis, whose per-slot keys are one key each.
local TAGS = '__SLOT_TAGS__'
local CLUSTER = #TAGS > 0
-- Longest ack or ttl accepted, in seconds (a year).
local OPTION_MAX = 31536000
-- How long a relayed entry's account and id are remembered, so that one
-- relayed twice (its node died between the two steps) is written once.
local RELAY_MEMORY_MS = 86400000

-- Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
local function utf8_ok(s)
  local i, n = 1, #s
  while i <= n do
    local c = string.byte(s, i)
    local len, min
    if c < 0x80 then
      len = 0
    elseif c >= 0xC2 and c <= 0xDF then
      len, min = 1, 0x80
    elseif c >= 0xE0 and c <= 0xEF then
      len, min = 2, 0x800
    elseif c >= 0xF0 and c <= 0xF4 then
      len, min = 3, 0x10000
    else
      return false
    end
    if len > 0 then
      if i + len > n then return false end
      local cp = c % (2 ^ (6 - len))
      for k = 1, len do
        local b = string.byte(s, i + k)
        if b < 0x80 or b > 0xBF then return false end
        cp = cp * 64 + (b - 0x80)
      end
      if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then
        return false
      end
    end
    i = i + len + 1
  end
  return true
end

local function check_payload(payload)
  if type(payload) ~= 'string' then return 'missing payload' end
  if not string.match(payload, '^%s*{') then return 'payload is not a JSON object' end
  if not utf8_ok(payload) then return 'payload is not valid UTF-8' end
  local ok, value = pcall(cjson.decode, payload)
  if not ok or type(value) ~= 'table' then return 'payload is not valid JSON' end
  if value['id'] ~= nil then return 'payload must not carry a top-level "id"' end
  return nil, value
end

-- The stored payload with "id" as its first member.
local function with_id(id, payload)
  local rest = string.match(payload, '^%s*{%s*(.*)$')
  if string.sub(rest, 1, 1) == '}' then
    return '{"id":"' .. id .. '"' .. rest
  end
  return '{"id":"' .. id .. '",' .. rest
end

local function parse_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function id_less(a, b)
  local ams, aseq = parse_id(a)
  local bms, bseq = parse_id(b)
  if ams ~= bms then return ams < bms end
  return aseq < bseq
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Redis Cluster's CRC16 (XMODEM) of s.
local function crc16(s)
  local crc = 0
  for i = 1, #s do
    crc = bit.bxor(crc, bit.lshift(string.byte(s, i), 8))
    for _ = 1, 8 do
      if bit.band(crc, 0x8000) ~= 0 then
        crc = bit.band(bit.bxor(bit.lshift(crc, 1), 0x1021), 0xFFFF)
      else
        crc = bit.band(bit.lshift(crc, 1), 0xFFFF)
      end
    end
  end
  return crc
end

local function slot_tag(slot)
  return string.sub(TAGS, slot * 4 + 1, slot * 4 + 4)
end

-- A per-slot key: <prefix><name>:{<tag of slot>} in a cluster, <prefix><name>
-- on a single Redis.
local function slot_key(prefix, name, slot)
  if not CLUSTER then return prefix .. name end
  return prefix .. name .. ':{' .. slot_tag(slot) .. '}'
end

local function account_slot(account)
  if not CLUSTER then return 0 end
  return crc16(account) % 16384
end

-- prefix, account and their keys from <prefix>stream:{<account>}.
local function names(key)
  local prefix, account = string.match(key or '', '^(.*)stream:{([^{}]+)}$')
  if not prefix then return nil end
  local tag = '{' .. account .. '}'
  return {
    prefix = prefix,
    account = account,
    stream = key,
    channel = prefix .. 'acct:' .. tag,
    presence = prefix .. 'presence:' .. tag,
    trim = prefix .. 'trim:' .. tag,
    acked = prefix .. 'acked:' .. tag,
    unacked = prefix .. 'unacked:' .. tag,
  }
end

-- Appends one entry to <prefix>receipts or <prefix>undelivered: directly
-- on a single Redis (atomic with the caller); in a cluster, where those
-- streams live in another slot, into this slot's relay stream, from which
-- the gateways copy it (notify_relay) and then delete it.
local function emit(prefix, slot, target, fields)
  if not CLUSTER then
    local max = target == 'receipts' and RECEIPTS_MAX or UNDELIVERED_MAX
    redis.call('XADD', prefix .. target, 'MAXLEN', '~', max, '*', unpack(fields))
    return
  end
  redis.call('XADD', slot_key(prefix, 'relay', slot), '*', 'to', target, unpack(fields))
end

local function parse_options(args)
  local opts = {}
  local i = 2
  while args[i] ~= nil do
    local name, value = args[i], args[i + 1]
    if name ~= 'ack' and name ~= 'ttl' then
      return nil, "unknown option '" .. tostring(name) .. "' (options: ack <seconds>, ttl <seconds>)"
    end
    if opts[name] then return nil, name .. ' given twice' end
    local n = value and string.match(value, '^%d+$') and tonumber(value)
    if not n or n < 1 or n > OPTION_MAX then
      return nil, name .. ' must be a whole number of seconds from 1 to ' .. OPTION_MAX
    end
    opts[name] = n
    i = i + 2
  end
  return opts
end

-- The payload with "expires_at" as its first member.
local function with_expiry(payload, expires)
  local rest = string.match(payload, '^%s*{%s*(.*)$')
  if string.sub(rest, 1, 1) == '}' then
    return '{"expires_at":' .. expires .. rest
  end
  return '{"expires_at":' .. expires .. ',' .. rest
end

-- One stream entry's fields as a table.
local function entry_fields(entry)
  local f = {}
  local list = entry[2]
  for i = 1, #list, 2 do f[list[i]] = list[i + 1] end
  return f
end

local function notify_publish(keys, args)
  local n = names(keys[1])
  if not n then
    return redis.error_reply('ERR key must be <prefix>stream:{<account>}')
  end
  local payload = args[1]
  local err, value = check_payload(payload)
  if err then return redis.error_reply('ERR ' .. err) end
  local opts, oerr = parse_options(args)
  if not opts then return redis.error_reply('ERR ' .. oerr) end
  local now
  if opts.ttl or opts.ack then now = now_ms() end
  local entry = {'m', payload}
  if opts.ttl then
    if value['expires_at'] ~= nil then
      return redis.error_reply('ERR payload must not carry a top-level "expires_at" with ttl')
    end
    local expires = now + opts.ttl * 1000
    payload = with_expiry(payload, expires)
    entry = {'m', payload, 'x', tostring(expires)}
  end
  local id = redis.call('XADD', n.stream, '*', unpack(entry))
  -- Trim with XDEL rather than MAXLEN: XDEL records max-deleted-entry-id,
  -- and the first id left is recorded in <prefix>trim:{<account>}; together
  -- they tell notify_replay exactly whether a client missed messages,
  -- unless something else trimmed the stream (see notify_replay).
  local excess = redis.call('XLEN', n.stream) - MAX_LEN
  if excess > 0 then
    local ids = {}
    local entries = redis.call('XRANGE', n.stream, '-', '+', 'COUNT', excess + 1)
    for k = 1, excess do ids[k] = entries[k][1] end
    redis.call('XDEL', n.stream, unpack(ids))
    redis.call('SET', n.trim, entries[excess + 1][1], 'EX', TTL)
    local oldest_ms = parse_id(entries[excess + 1][1])
    redis.call('ZREMRANGEBYSCORE', n.acked, '-inf', '(' .. oldest_ms)
    redis.call('ZREMRANGEBYSCORE', n.unacked, '-inf', '(' .. oldest_ms)
  else
    redis.call('EXPIRE', n.trim, TTL) -- lives as long as the stream
  end
  redis.call('EXPIRE', n.stream, TTL)
  if opts.ack then
    local ms = parse_id(id)
    redis.call('ZADD', n.unacked, ms, id)
    redis.call('EXPIRE', n.unacked, TTL)
    local slot = account_slot(n.account)
    if redis.call('ZCOUNT', n.presence, now, '+inf') == 0 then
      emit(n.prefix, slot, 'undelivered', {'account', n.account, 'id', id, 'payload',
           with_id(id, payload), 'reason', 'offline', 'at', tostring(now)})
    else
      redis.call('ZADD', slot_key(n.prefix, 'deadlines', slot), now + opts.ack * 1000,
                 n.account .. '/' .. id)
    end
  end
  redis.call(PUBLISH, n.channel, with_id(id, payload))
  return id
end

local function stream_info(key)
  local info = redis.call('XINFO', 'STREAM', key)
  local s = {oldest = '', deleted = '0-0', length = 0, added = 0}
  for i = 1, #info, 2 do
    local k, v = info[i], info[i + 1]
    if k == 'first-entry' and type(v) == 'table' then
      s.oldest = v[1]
    elseif k == 'max-deleted-entry-id' then
      s.deleted = v
    elseif k == 'length' then
      s.length = v
    elseif k == 'entries-added' then
      s.added = v
    end
  end
  return s
end

local function notify_replay(keys, args)
  local key, since = keys[1], args[1]
  local n = names(key)
  if not n or not since or not parse_id(since) then
    return redis.error_reply('ERR usage: notify_replay 1 <stream key> <since id>')
  end
  if redis.call('EXISTS', key) == 0 then
    return {1, ''}
  end
  local s = stream_info(key)
  -- A gap whenever a message after since may be gone: one deleted after it
  -- (XDEL, ours or anyone's, moves max-deleted-entry-id), or since older than
  -- the oldest retained while entries were removed by something other than
  -- our own trimming (XTRIM or XADD with MAXLEN leave max-deleted-entry-id
  -- alone, and move the oldest entry past the first id our trim recorded).
  local gap = 0
  if id_less(since, s.deleted) then
    gap = 1
  elseif s.added > s.length and s.oldest ~= '' and id_less(since, s.oldest) then
    if redis.call('GET', n.trim) ~= s.oldest then gap = 1 end
  end
  local out = {gap, s.oldest}
  local now
  for _, entry in ipairs(redis.call('XRANGE', key, '(' .. since, '+')) do
    local f = entry_fields(entry)
    if f.m then
      local live = true
      if f.x then
        now = now or now_ms()
        live = tonumber(f.x) > now
      end
      if live then
        out[#out + 1] = entry[1]
        out[#out + 1] = with_id(entry[1], f.m)
      end
    end
  end
  return out
end

local function valid_id(id)
  return type(id) == 'string' and string.match(id, '^%d+%-%d+$') ~= nil
end

local function notify_ack(keys, args)
  local n = names(keys[1])
  local conn, node = args[1], args[2]
  if not n or not conn or not node or not args[3] then
    return redis.error_reply('ERR usage: notify_ack 1 <stream key> <connection> <node> <id>...')
  end
  local now = now_ms()
  local slot = account_slot(n.account)
  local out = {}
  for i = 3, #args do
    local id = args[i]
    if not valid_id(id) then
      out[#out + 1] = -1
    elseif redis.call('ZSCORE', n.acked, id) then
      out[#out + 1] = 0
    elseif redis.call('ZSCORE', n.unacked, id) or
        #redis.call('XRANGE', n.stream, id, id) > 0 then
      redis.call('ZADD', n.acked, parse_id(id), id)
      redis.call('EXPIRE', n.acked, TTL)
      redis.call('ZREM', n.unacked, id)
      redis.call('ZREM', slot_key(n.prefix, 'deadlines', slot), n.account .. '/' .. id)
      emit(n.prefix, slot, 'receipts', {'account', n.account, 'id', id, 'connection', conn,
           'node', node, 'at', tostring(now)})
      out[#out + 1] = 1
    else
      out[#out + 1] = -1
    end
  end
  return out
end

-- The deadlines of one slot that are due: each leaves the ZSET here, once
-- (this runs atomically), and becomes an outbox entry unless its message
-- expired meanwhile. Returns outbox entries written, expired messages.
local function sweep_slot(prefix, slot, now, limit)
  local key = slot_key(prefix, 'deadlines', slot)
  local ok, due = pcall(redis.call, 'ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, limit)
  if not ok or #due == 0 then return 0, 0 end
  local written, expired = 0, 0
  for _, member in ipairs(due) do
    redis.call('ZREM', key, member)
    local account, id = string.match(member, '^([^/]+)/(.+)$')
    if account then
      local entries = redis.call('XRANGE', prefix .. 'stream:{' .. account .. '}', id, id)
      local f = entries[1] and entry_fields(entries[1]) or {}
      if f.x and tonumber(f.x) <= now then
        expired = expired + 1
      else
        -- The payload is "" once the history no longer holds the message.
        emit(prefix, slot, 'undelivered', {'account', account, 'id', id, 'payload',
             f.m and with_id(id, f.m) or '', 'reason', 'timeout', 'at', tostring(now)})
        written = written + 1
      end
    end
  end
  return written, expired
end

-- FCALL notify_sweep 0 <prefix> <node> <lease ms> <limit> [<lo> <hi>]...
-- Sweeps the deadlines of the slots lo..hi (inclusive; a single Redis has
-- one key and takes no ranges) if node holds, or can take, the sweep lease
-- (<prefix>sweeper, per primary in a cluster: named with the first slot's
-- tag; lease ms 0: none). The lease only saves work: a sweep is atomic, so
-- two sweeps never write one entry twice. Returns {written, expired, more, relay entries...}:
-- more is 1 when a slot had more due deadlines than limit (sweep again),
-- -1 when another node holds the lease; in a cluster each relay entry is
-- {relay key, entry id, {field, value, ...}}.
local function notify_sweep(keys, args)
  local prefix, node, lease, limit = args[1], args[2], tonumber(args[3]), tonumber(args[4])
  if not prefix or not node or not lease or not limit then
    return redis.error_reply('ERR usage: notify_sweep 0 <prefix> <node> <lease ms> <limit> [lo hi]...')
  end
  local ranges = {}
  if CLUSTER then
    for i = 5, #args, 2 do
      ranges[#ranges + 1] = {tonumber(args[i]), tonumber(args[i + 1])}
    end
    if #ranges == 0 then return {0, 0, 0} end
  else
    ranges[1] = {0, 0}
  end
  -- The lease is taken with the first slot that holds work, so an idle
  -- Redis keeps no lease key.
  local lease_key = slot_key(prefix, 'sweeper', ranges[1][1])
  local leased = lease <= 0
  local now = now_ms()
  local written, expired, more = 0, 0, 0
  local out = {0, 0, 0}
  for _, r in ipairs(ranges) do
    for slot = r[1], r[2] do
      -- Most slots hold neither key: one EXISTS of both is all they cost.
      local dkey, rkey = slot_key(prefix, 'deadlines', slot), slot_key(prefix, 'relay', slot)
      local ok, n
      if CLUSTER then
        ok, n = pcall(redis.call, 'EXISTS', dkey, rkey)
      else
        ok, n = pcall(redis.call, 'EXISTS', dkey)
      end
      if ok and n > 0 and not leased then
        local holder = redis.call('GET', lease_key)
        if holder and holder ~= node then return {0, 0, -1} end
        redis.call('SET', lease_key, node, 'PX', lease)
        leased = true
      end
      if ok and n > 0 then
        local w, e = sweep_slot(prefix, slot, now, limit)
        written, expired = written + w, expired + e
        if w + e >= limit then more = 1 end
        if CLUSTER then
          local rok, entries = pcall(redis.call, 'XRANGE', rkey, '-', '+', 'COUNT', limit)
          if rok then
            for _, entry in ipairs(entries) do
              out[#out + 1] = {rkey, entry[1], entry[2]}
            end
          end
        end
      end
    end
  end
  out[1], out[2], out[3] = written, expired, more
  return out
end

-- FCALL notify_relay 1 <prefix>receipts|<prefix>undelivered <account> <id> <field> <value>...
-- Appends the entry unless this account and id were relayed to the stream
-- within RELAY_MEMORY_MS ({<stream>}:relayed, same slot as the stream).
-- Returns 1 when written, 0 when it was there already.
local function notify_relay(keys, args)
  local target, account, id = keys[1], args[1], args[2]
  if not target or not account or not id or #args < 4 then
    return redis.error_reply('ERR usage: notify_relay 1 <stream> <account> <id> <field> <value>...')
  end
  local seen = '{' .. target .. '}:relayed'
  local now = now_ms()
  redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. (now - RELAY_MEMORY_MS))
  if redis.call('ZADD', seen, 'NX', now, account .. '/' .. id) == 0 then return 0 end
  local fields = {}
  for i = 3, #args do fields[#fields + 1] = args[i] end
  local max = string.match(target, 'receipts$') and RECEIPTS_MAX or UNDELIVERED_MAX
  redis.call('XADD', target, 'MAXLEN', '~', max, '*', unpack(fields))
  return 1
end

redis.register_function('notify_publish', notify_publish)
redis.register_function{function_name = 'notify_replay', callback = notify_replay,
                        flags = {'no-writes'}}
redis.register_function('notify_ack', notify_ack)
redis.register_function{function_name = 'notify_sweep', callback = notify_sweep,
                        flags = {'allow-cross-slot-keys'}}
redis.register_function('notify_relay', notify_relay)
