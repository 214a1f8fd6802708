-- COMMIT ONE-PHASE. ARGV: txid, coordinator, now_ms, ops (JSON), keep_count, keep_ms.
-- Returns {decision, result[, reason]}.
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
local err = check_locks(distinct_keys(ops), txid)
local writes
if not err then writes, err = evaluate(ops) end
if err then
  record_outcome(txid, coord, 'abort:' .. err, now, keep_count, keep_ms)
  return { 'abort', 'applied', err }
end
apply(writes)
record_outcome(txid, coord, 'commit', now, keep_count, keep_ms)
return { 'commit', 'applied' }
