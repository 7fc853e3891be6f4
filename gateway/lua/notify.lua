#!lua name=notify
-- notify-gateway's Redis function library (README.md "Publishing" and "Resuming").
-- Every gateway loads it with FUNCTION LOAD REPLACE at start and after each
-- reconnect; the gateway replaces the three __PLACEHOLDERS__ with its
-- --history-max-len, --history-ttl and the publish command of its mode.
--
--   FCALL notify_publish 1 <prefix>stream:{<account>} '<envelope json>'
--     validates the payload, appends it to the account's stream (trimmed to
--     MAX_LEN entries, key expiring TTL seconds after the last
--     append), publishes it with its "id" on <prefix>acct:{<account>}, all
--     atomically, and returns the id.
--   FCALL_RO notify_replay 1 <prefix>stream:{<account>} <since id>
--     returns {gap, oldest, id1, msg1, id2, msg2, ...}: every retained
--     message after <since> (each with its "id"), in order; gap is 1 when
--     messages after <since> are no longer retained (oldest = the oldest
--     retained id, "" when nothing is).

local MAX_LEN = __HISTORY_MAX_LEN__
local TTL = __HISTORY_TTL__
local PUBLISH = '__PUBLISH__'

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
  return nil
end

local function channel_of(key)
  local prefix, tag = string.match(key, '^(.*)stream:(%b{})$')
  if not prefix then return nil end
  return prefix .. 'acct:' .. tag
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

local function notify_publish(keys, args)
  local key, payload = keys[1], args[1]
  local channel = key and channel_of(key)
  if not channel then
    return redis.error_reply('ERR key must be <prefix>stream:{<account>}')
  end
  local err = check_payload(payload)
  if err then return redis.error_reply('ERR ' .. err) end
  local id = redis.call('XADD', key, '*', 'm', payload)
  -- Trim with XDEL rather than MAXLEN: XDEL records max-deleted-entry-id,
  -- which is how notify_replay knows exactly whether a client missed
  -- messages that are gone.
  local excess = redis.call('XLEN', key) - MAX_LEN
  if excess > 0 then
    local ids = {}
    for _, entry in ipairs(redis.call('XRANGE', key, '-', '+', 'COUNT', excess)) do
      ids[#ids + 1] = entry[1]
    end
    redis.call('XDEL', key, unpack(ids))
  end
  redis.call('EXPIRE', key, TTL)
  redis.call(PUBLISH, channel, with_id(id, payload))
  return id
end

local function notify_replay(keys, args)
  local key, since = keys[1], args[1]
  if not key or not since or not parse_id(since) then
    return redis.error_reply('ERR usage: notify_replay 1 <stream key> <since id>')
  end
  if redis.call('EXISTS', key) == 0 then
    return {1, ''}
  end
  local info = redis.call('XINFO', 'STREAM', key)
  local oldest, deleted = '', '0-0'
  for i = 1, #info, 2 do
    if info[i] == 'first-entry' and type(info[i + 1]) == 'table' then
      oldest = info[i + 1][1]
    elseif info[i] == 'max-deleted-entry-id' then
      deleted = info[i + 1]
    end
  end
  local gap = 0
  if id_less(since, deleted) then gap = 1 end
  local out = {gap, oldest}
  for _, entry in ipairs(redis.call('XRANGE', key, '(' .. since, '+')) do
    local fields = entry[2]
    for f = 1, #fields, 2 do
      if fields[f] == 'm' then
        out[#out + 1] = entry[1]
        out[#out + 1] = with_id(entry[1], fields[f + 1])
      end
    end
  end
  return out
end

redis.register_function('notify_publish', notify_publish)
redis.register_function{function_name = 'notify_replay', callback = notify_replay,
                        flags = {'no-writes'}}
