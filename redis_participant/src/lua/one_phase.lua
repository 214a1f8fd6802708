-- COMMIT ONE-PHASE. ARGV: txid, coordinator, now_ms, ops (JSON), keep_count, keep_ms,
-- may_wait ('1': a key locked by a prepared transaction is answered {'wait', holder, what}
-- with nothing done or recorded, so that the participant waits for the holder; '0', the last
-- try after the wait ran out: the abort is recorded like any other).
-- Returns {decision, result[, reason]} or {'wait', holder, what}.
local txid, coord, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local keep_count, keep_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local tk = tx_key(txid)

if redis.call('EXISTS', tk) == 1 then
  return { 'abort', 'conflict', 'transaction ' .. q(txid)
    .. ' is held prepared by a two-phase Prepare; finish it with commit or abort' }
end
local prior = redis.call('HGET', OUTCOME, txid)
if prior then
  local clash = other_owner(txid, coord)
  if clash then return { 'abort', 'conflict', clash } end
  if prior == 'commit' then return { 'commit', 'already_applied' } end
  return { 'abort', 'already_applied', 'aborted earlier' .. aborted_because(prior) }
end

local ops = cjson.decode(ARGV[4])
local keys = distinct_keys(ops)
if ARGV[7] == '1' then
  local locked, holder = lock_holder(keys, txid)
  if locked then return { 'wait', holder, 'key ' .. q(locked) } end
end
local err = check_locks(keys, txid)
local writes
if not err then writes, err = evaluate(ops) end
if err then
  record_outcome(txid, coord, 'abort:' .. err, now, keep_count, keep_ms)
  return { 'abort', 'applied', err }
end
apply(writes)
record_outcome(txid, coord, 'commit', now, keep_count, keep_ms)
return { 'commit', 'applied' }
