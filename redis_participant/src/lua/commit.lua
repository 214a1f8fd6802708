-- COMMIT. ARGV: txid, now_ms, keep_count, keep_ms, coordinator ('' when the message named
-- none). Returns 'applied' | 'already_applied' | 'not_prepared' | 'conflict'.
-- A named coordinator settles only its own transaction: another coordinator's transaction of
-- the same txid is not prepared *for it*, and is left as it is.
local txid, now = ARGV[1], tonumber(ARGV[2])
local keep_count, keep_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local want = ARGV[5] or ''
local tk = tx_key(txid)

if redis.call('EXISTS', tk) == 0 then
  local prior = redis.call('HGET', OUTCOME, txid)
  if not prior then return 'not_prepared' end
  if want ~= '' and other_owner(txid, want) then return 'not_prepared' end
  if prior == 'commit' then return 'already_applied' end
  return 'conflict'
end
local coord = redis.call('HGET', tk, 'coordinator')
if want ~= '' and coord ~= want then return 'not_prepared' end
apply(cjson.decode(redis.call('HGET', tk, 'writes')))
release(txid)
record_outcome(txid, coord, 'commit', now, keep_count, keep_ms)
return 'applied'
