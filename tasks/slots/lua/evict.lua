-- evict.lua: end the leases of holders whose worker is gone (compare on the fence): their lease expires now,
-- so they stop counting at once and the sweep (sweep.lua) requeues their jobs with a new attempt.
-- KEYS: as lib.lua.
-- ARGV: call_sid, fence, call_sid, fence, ... (the holders found gone)
-- Returns the call_sids evicted; a holder that meanwhile released, or holds a newer fence, is left alone.
local evicted = {}
for i = 1, #ARGV, 2 do
  local call_sid, fence = ARGV[i], ARGV[i + 1]
  local info = redis.call('HGET', KEYS[2], call_sid)
  if info and parse_info(info) == fence then
    redis.call('ZADD', KEYS[1], 'XX', 0, call_sid)
    table.insert(evicted, call_sid)
  end
end
return evicted
