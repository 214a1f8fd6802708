-- PREPARE. ARGV: txid, coordinator, now_ms, ops (JSON), keep_count, keep_ms.
-- Returns {'yes'} or {'yes', note} or {'no', reason, 'final'}, or {'wait', holder, what} when
-- a key is locked by another prepared transaction: then nothing is written or recorded, and
-- the participant core decides whether to wait for the holder and run this again, or to vote
-- NO (class conflict) itself.
-- Atomic: Redis runs the whole script without interleaving any other command, and with
-- appendfsync always its writes are in the fsynced AOF before the reply leaves the server.
local txid, coord, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local keep_count, keep_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local tk = tx_key(txid)

if redis.call('EXISTS', tk) == 1 then
  local c = redis.call('HGET', tk, 'coordinator')
  if c ~= coord then
    return { 'no', 'transaction id ' .. q(txid) .. ' is already prepared for coordinator ' .. q(c), 'final' }
  end
  return { 'yes', 'already prepared' }
end
local prior = redis.call('HGET', OUTCOME, txid)
if prior then
  local clash = other_owner(txid, coord)
  if clash then return { 'no', clash, 'final' } end
  if prior == 'commit' then return { 'yes', 'already committed' } end
  return { 'no', 'transaction ' .. q(txid) .. ' was already aborted' .. aborted_because(prior), 'final' }
end

local ops = cjson.decode(ARGV[4])
local keys = distinct_keys(ops)
local locked, holder = lock_holder(keys, txid)
if locked then return { 'wait', holder, 'key ' .. q(locked) } end
local writes, err = evaluate(ops)
if err then
  -- Remember the NO so that a duplicated Prepare answers the same.
  record_outcome(txid, coord, 'abort:' .. err, now, keep_count, keep_ms)
  return { 'no', err, 'final' }
end

for _, k in ipairs(keys) do redis.call('SET', lock_key(k), txid) end
redis.call('HSET', tk, 'txid', txid, 'coordinator', coord, 'prepared_at_ms', ARGV[3],
  'ops', ARGV[4], 'writes', cjson.encode(writes), 'keys', cjson.encode(keys))
redis.call('ZADD', PREPARED, ARGV[3], txid)
return { 'yes' }
