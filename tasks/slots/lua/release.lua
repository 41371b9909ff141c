-- release.lua: free a slot (compare-and-delete on the fence) and hand free slots to parked jobs.
-- KEYS: as lib.lua.
-- ARGV[1] call_sid ("" to only hand off)   ARGV[2] fence   ARGV[3] default limit   ARGV[4] job key prefix
-- ARGV[5] reservation in ms   ARGV[6] dispatch deadline in ms   ARGV[7] task id prefix for handed jobs
-- Returns {released (1 or 0), call_sid, task_id, ...}: the caller sends one message per handed job.
local call_sid, fence = ARGV[1], ARGV[2]
local now = now_ms()
local released = 0
if call_sid ~= '' then
  local info = redis.call('HGET', KEYS[2], call_sid)
  if info and parse_info(info) == fence then
    redis.call('ZREM', KEYS[1], call_sid)
    redis.call('HDEL', KEYS[2], call_sid)
    released = 1
  end
end
drop_expired(now)
local handed = hand_off(now, ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7])
table.insert(handed, 1, released)
return handed
