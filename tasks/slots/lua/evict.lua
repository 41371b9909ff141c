-- evict.lua: release slots whose holder is gone (compare-and-delete on the fence). The jobs stay `processing`
-- without their slot, which the sweep (sweep.lua) then requeues with a new attempt.
-- KEYS: as lib.lua.
-- ARGV: call_sid, fence, call_sid, fence, ... (the holders found gone)
-- Returns the call_sids released; a holder that meanwhile released, or holds a newer fence, is left alone.
local released = {}
for i = 1, #ARGV, 2 do
  local call_sid, fence = ARGV[i], ARGV[i + 1]
  local info = redis.call('HGET', KEYS[2], call_sid)
  if info and parse_info(info) == fence then
    redis.call('ZREM', KEYS[1], call_sid)
    redis.call('HDEL', KEYS[2], call_sid)
    table.insert(released, call_sid)
  end
end
return released
