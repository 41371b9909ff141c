-- purge.lua: drop waiting jobs of a business: jobs still `queued` (parked, holding a reservation, or with a
-- message on its way). A running (`processing`) job is left alone. A message still in the broker for a dropped
-- job finds no job and is discarded as stale. The caller passes a bounded batch.
-- KEYS: as lib.lua.
-- ARGV: the call_sids to drop (only those still queued are)
-- Returns the call_sids dropped.
local dropped = {}
for i = 1, #ARGV do
  local call_sid = ARGV[i]
  local job_key = job_key_of(call_sid)
  if redis.call('HGET', job_key, 'status') == 'queued' then
    redis.call('DEL', job_key)
    redis.call('ZREM', KEYS[3], call_sid)
    redis.call('ZREM', KEYS[6], call_sid)
    local info = redis.call('HGET', KEYS[2], call_sid)
    if info then
      local _, _, worker = parse_info(info)
      if worker == '' then
        -- The slot reserved for this job: give it back.
        redis.call('ZREM', KEYS[1], call_sid)
        redis.call('HDEL', KEYS[2], call_sid)
      end
    end
    table.insert(dropped, call_sid)
  end
end
return dropped
