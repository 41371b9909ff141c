-- purge.lua: drop waiting jobs of a business: jobs still `queued` (parked, holding a reservation, or with a
-- message on its way). A running (`processing`) job is left alone. A message still in the broker for a dropped
-- job finds no job and is discarded as stale.
-- KEYS: as lib.lua.
-- ARGV[1] job key prefix   ARGV[2..n] call_sids to drop (only those still queued are)
-- Returns the call_sids dropped.
local job_prefix = ARGV[1]
local dropped = {}
for i = 2, #ARGV do
  local call_sid = ARGV[i]
  local job_key = job_prefix .. call_sid
  if redis.call('HGET', job_key, 'status') == 'queued' then
    redis.call('DEL', job_key)
    redis.call('ZREM', KEYS[6], call_sid)
    redis.call('LREM', KEYS[3], 0, call_sid)
    local info = redis.call('HGET', KEYS[2], call_sid)
    if info then
      local _, _, worker = parse_info(info)
      if worker == '' then
        -- The slot a release reserved for this job: give it back.
        redis.call('ZREM', KEYS[1], call_sid)
        redis.call('HDEL', KEYS[2], call_sid)
      end
    end
    table.insert(dropped, call_sid)
  end
end
return dropped
