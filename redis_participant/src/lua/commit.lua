-- COMMIT. ARGV: txid, now_ms, keep_count, keep_ms.
-- Returns 'applied' | 'already_applied' | 'not_prepared' | 'conflict'.
local txid, now = ARGV[1], tonumber(ARGV[2])
local keep_count, keep_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local tk = tx_key(txid)

if redis.call('EXISTS', tk) == 0 then
  local prior = redis.call('HGET', OUTCOME, txid)
  if not prior then return 'not_prepared' end
  if prior == 'commit' then return 'already_applied' end
  return 'conflict'
end
local coord = redis.call('HGET', tk, 'coordinator')
apply(cjson.decode(redis.call('HGET', tk, 'writes')))
release(txid)
record_outcome(txid, coord, 'commit', now, keep_count, keep_ms)
return 'applied'
