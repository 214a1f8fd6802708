-- twopc Redis participant: helpers shared by every script (prepended to each of them).
--
-- Key layout (everything the participant keeps lives under the fixed prefix "twopc:"):
--   twopc:tx:<txid>     hash: txid, coordinator, prepared_at_ms, ops (as received),
--                       writes (the staged, fully computed writes), keys (locked keys)
--   twopc:lock:<key>    string: the txid of the prepared transaction that locks <key>.
--                       No TTL, ever: a lock lives exactly as long as its prepared transaction.
--   twopc:prepared      zset: txid -> prepared_at_ms (the in-doubt list)
--   twopc:outcome       hash: txid -> "commit" | "abort:<reason>"
--   twopc:owner         hash: txid -> coordinator id of a finished transaction ("" if unknown)
--   twopc:done          zset: txid -> finished_at_ms, bounds outcome/owner by count and age
--
-- Keys are built inside the scripts instead of being passed in KEYS. That is fine on one
-- Redis node (this participant's deployment) but not cluster-safe: under Redis Cluster every
-- key a script touches must be declared in KEYS and hash to one slot.

local NS = 'twopc:'
local PREPARED = NS .. 'prepared'
local OUTCOME = NS .. 'outcome'
local DONE = NS .. 'done'
local OWNER = NS .. 'owner'

local function tx_key(txid) return NS .. 'tx:' .. txid end
local function lock_key(key) return NS .. 'lock:' .. key end

local function q(s)
  if s == nil or s == false then return 'nil' end
  s = tostring(s)
  if #s > 64 then s = string.sub(s, 1, 64) .. '...' end
  return '"' .. s .. '"'
end

local function num(s) return string.format('%.0f', s) end

-- Exact arithmetic on canonical decimal integer strings (Lua numbers are doubles and would
-- lose precision beyond 2^53; Redis integers are 64-bit).
local I64_MAX = '9223372036854775807'
local I64_MIN = '-9223372036854775808'

local function split_sign(x)
  if string.sub(x, 1, 1) == '-' then return true, string.sub(x, 2) end
  return false, x
end

local function cmp_abs(a, b)
  if #a ~= #b then return (#a < #b) and -1 or 1 end
  if a == b then return 0 end
  return (a < b) and -1 or 1
end

local function cmp(x, y)
  local nx, ax = split_sign(x)
  local ny, ay = split_sign(y)
  if nx ~= ny then return nx and -1 or 1 end
  local c = cmp_abs(ax, ay)
  if nx then return -c end
  return c
end

local function add_abs(a, b)
  local res, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48 end
    if j > 0 then d = d + string.byte(b, j) - 48 end
    res[#res + 1] = string.char(48 + d % 10)
    carry = math.floor(d / 10)
    i, j = i - 1, j - 1
  end
  return string.reverse(table.concat(res))
end

local function sub_abs(a, b) -- requires |a| >= |b|
  local res, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = string.byte(a, i) - 48 - borrow
    if j > 0 then d = d - (string.byte(b, j) - 48) end
    if d < 0 then d, borrow = d + 10, 1 else borrow = 0 end
    res[#res + 1] = string.char(48 + d)
    i, j = i - 1, j - 1
  end
  local s = (string.gsub(string.reverse(table.concat(res)), '^0+', ''))
  if s == '' then s = '0' end
  return s
end

local function add(x, y)
  local nx, ax = split_sign(x)
  local ny, ay = split_sign(y)
  local neg, mag
  if nx == ny then
    neg, mag = nx, add_abs(ax, ay)
  else
    local c = cmp_abs(ax, ay)
    if c == 0 then return '0' end
    if c > 0 then neg, mag = nx, sub_abs(ax, ay) else neg, mag = ny, sub_abs(ay, ax) end
  end
  if neg and mag ~= '0' then return '-' .. mag end
  return mag
end

local function in_i64(s) return cmp(s, I64_MIN) >= 0 and cmp(s, I64_MAX) <= 0 end

-- What Redis's INCRBY accepts as an integer value: canonical, no sign '+', no spaces, 64-bit.
local function is_int(s)
  if type(s) ~= 'string' or #s > 20 then return false end
  if s ~= '0' and string.match(s, '^%-?[1-9]%d*$') == nil then return false end
  return in_i64(s)
end

local function distinct_keys(ops)
  local seen, keys = {}, {}
  for _, op in ipairs(ops) do
    if not seen[op.key] then
      seen[op.key] = true
      keys[#keys + 1] = op.key
    end
  end
  return keys
end

-- The first key locked by another prepared transaction, as a NO reason.
-- The first of `keys` locked by a transaction other than `txid`: the key and its holder.
local function lock_holder(keys, txid)
  for _, k in ipairs(keys) do
    local holder = redis.call('GET', lock_key(k))
    if holder and holder ~= txid then return k, holder end
  end
  return nil
end

local function check_locks(keys, txid)
  local k, holder = lock_holder(keys, txid)
  if k then return 'key ' .. q(k) .. ' is locked by prepared transaction ' .. q(holder) end
  return nil
end

local function check_guard(op, present, current, what)
  if op.exists == '1' and not present then return what .. ' does not exist (guard exists=true)' end
  if op.exists == '0' and present then return what .. ' exists (guard exists=false)' end
  if op.expect ~= nil then
    if not present then return what .. ' does not exist, expected ' .. q(op.expect) end
    if current ~= op.expect then
      return what .. ' is ' .. q(current) .. ', expected ' .. q(op.expect)
    end
  end
  return nil
end

-- Checks every guard, bound and type against the current data (as modified by the earlier
-- operations of the same transaction) and computes the writes that commit will replay.
-- Returns writes, nil on success or nil, reason when the transaction cannot commit.
-- Every write is a SET/DEL/HSET/HDEL of a fully computed value, so replaying it cannot fail.
local function evaluate(ops)
  local view = {}
  local function load(key)
    local v = view[key]
    if v == nil then
      local t = redis.call('TYPE', key)['ok']
      if t == 'string' then
        v = { t = 'string', v = redis.call('GET', key) }
      elseif t == 'none' then
        v = { t = 'none' }
      elseif t == 'hash' then
        v = { t = 'hash', f = {}, base = true }
      else
        v = { t = t }
      end
      view[key] = v
    end
    return v
  end
  local function hget(v, key, field)
    local f = v.f[field]
    if f == nil then
      if v.base then f = redis.call('HGET', key, field) else f = false end
      v.f[field] = f
    end
    return f
  end

  local writes = {}
  for _, op in ipairs(ops) do
    local key = op.key
    local v = load(key)
    local what = 'key ' .. q(key)
    if op.op == 'set' or op.op == 'del' or op.op == 'incrby' then
      local present = v.t ~= 'none'
      if op.expect ~= nil and present and v.t ~= 'string' then
        return nil, 'guard failed: ' .. what .. ' holds a ' .. v.t .. ', not a string value'
      end
      local err = check_guard(op, present, v.v, what)
      if err then return nil, 'guard failed: ' .. err end
      if op.op == 'set' then
        view[key] = { t = 'string', v = op.value }
        writes[#writes + 1] = { 'SET', key, op.value }
      elseif op.op == 'del' then
        view[key] = { t = 'none' }
        writes[#writes + 1] = { 'DEL', key }
      else
        if present and v.t ~= 'string' then
          return nil, 'WRONGTYPE: ' .. what .. ' holds a ' .. v.t .. '; incrby needs an integer string'
        end
        local cur = '0'
        if present then cur = v.v end
        if not is_int(cur) then
          return nil, 'value of ' .. what .. ' is not an integer: ' .. q(cur)
        end
        local new = add(cur, op.by)
        if not in_i64(new) then
          return nil, 'incrby ' .. op.by .. ' on ' .. what .. ' would overflow a 64-bit integer'
        end
        if op.min ~= nil and cmp(new, op.min) < 0 then
          return nil, 'incrby ' .. op.by .. ' on ' .. what .. ' would make it ' .. new
            .. ', below the minimum ' .. op.min
        end
        if op.max ~= nil and cmp(new, op.max) > 0 then
          return nil, 'incrby ' .. op.by .. ' on ' .. what .. ' would make it ' .. new
            .. ', above the maximum ' .. op.max
        end
        view[key] = { t = 'string', v = new }
        writes[#writes + 1] = { 'SET', key, new }
      end
    elseif op.op == 'hset' or op.op == 'hdel' then
      if v.t ~= 'none' and v.t ~= 'hash' then
        return nil, 'WRONGTYPE: ' .. what .. ' holds a ' .. v.t .. '; ' .. op.op .. ' needs a hash'
      end
      local fwhat = 'field ' .. q(op.field) .. ' of ' .. what
      local cur = false
      if v.t == 'hash' then cur = hget(v, key, op.field) end
      local err = check_guard(op, cur ~= false, cur, fwhat)
      if err then return nil, 'guard failed: ' .. err end
      if op.op == 'hset' then
        if v.t == 'none' then
          v = { t = 'hash', f = {}, base = false }
          view[key] = v
        end
        v.f[op.field] = op.value
        writes[#writes + 1] = { 'HSET', key, op.field, op.value }
      else
        if v.t == 'hash' then v.f[op.field] = false end
        writes[#writes + 1] = { 'HDEL', key, op.field }
      end
    else
      return nil, 'unknown operation ' .. q(op.op)
    end
  end
  return writes, nil
end

local function apply(writes)
  for _, w in ipairs(writes) do
    redis.call(unpack(w))
  end
end

-- Records how txid (of coordinator coord, '' if unknown) finished and trims the records by
-- count and age.
local function record_outcome(txid, coord, value, now, keep_count, keep_ms)
  redis.call('HSET', OUTCOME, txid, value)
  redis.call('HSET', OWNER, txid, coord)
  redis.call('ZADD', DONE, num(now), txid)
  local excess = redis.call('ZCARD', DONE) - keep_count
  if excess > 0 then
    local old = redis.call('ZPOPMIN', DONE, excess)
    for i = 1, #old, 2 do
      redis.call('HDEL', OUTCOME, old[i])
      redis.call('HDEL', OWNER, old[i])
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', DONE, '-inf', '(' .. num(now - keep_ms), 'LIMIT', 0, 100)
  for _, t in ipairs(expired) do
    redis.call('HDEL', OUTCOME, t)
    redis.call('HDEL', OWNER, t)
    redis.call('ZREM', DONE, t)
  end
end

-- A NO reason when a finished txid belonged to another coordinator (txids are only unique
-- per coordinator), else nil.
local function other_owner(txid, coord)
  local owner = redis.call('HGET', OWNER, txid)
  if owner and owner ~= '' and owner ~= coord then
    return 'transaction id ' .. q(txid) .. ' was already used by coordinator ' .. q(owner)
  end
  return nil
end

-- Releases txid's locks and forgets its prepared record.
local function release(txid)
  local tk = tx_key(txid)
  local keys = cjson.decode(redis.call('HGET', tk, 'keys'))
  for _, k in ipairs(keys) do
    if redis.call('GET', lock_key(k)) == txid then redis.call('DEL', lock_key(k)) end
  end
  redis.call('DEL', tk)
  redis.call('ZREM', PREPARED, txid)
end

local function aborted_because(prior)
  if string.sub(prior, 1, 6) == 'abort:' then return ' (' .. string.sub(prior, 7) .. ')' end
  return ''
end
