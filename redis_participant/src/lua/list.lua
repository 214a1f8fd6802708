-- LIST PREPARED. No arguments. Returns a flat array: txid, coordinator, prepared_at_ms, ...
local ids = redis.call('ZRANGE', PREPARED, 0, -1)
local out = {}
for _, txid in ipairs(ids) do
  local f = redis.call('HMGET', tx_key(txid), 'coordinator', 'prepared_at_ms')
  out[#out + 1] = txid
  out[#out + 1] = f[1] or ''
  out[#out + 1] = f[2] or '0'
end
return out
