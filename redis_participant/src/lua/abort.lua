-- ABORT. ARGV: txid, now_ms, keep_count, keep_ms, reason, coordinator ('' when the message
-- named none). Returns 'applied' | 'already_applied' | 'not_prepared' | 'conflict'.
-- A named coordinator aborts only its own transaction (see commit.lua).
local txid, now = ARGV[1], tonumber(ARGV[2])
local keep_count, keep_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local want = ARGV[6] or ''
local tk = tx_key(txid)

if redis.call('EXISTS', tk) == 0 then
  local prior = redis.call('HGET', OUTCOME, txid)
  if prior and want ~= '' and other_owner(txid, want) then return 'not_prepared' end
  if prior == 'commit' then return 'conflict' end
  if prior then return 'already_applied' end
  -- Presumed abort: nothing here. Remember the abort so that a late, duplicated Prepare for
  -- this txid votes NO instead of locking keys for a transaction that is already over.
  record_outcome(txid, want, 'abort:' .. ARGV[5], now, keep_count, keep_ms)
  return 'not_prepared'
end
local coord = redis.call('HGET', tk, 'coordinator')
if want ~= '' and coord ~= want then return 'not_prepared' end
release(txid)
record_outcome(txid, coord, 'abort:' .. ARGV[5], now, keep_count, keep_ms)
return 'applied'
