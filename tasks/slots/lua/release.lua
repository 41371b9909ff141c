-- release.lua: free a slot (compare-and-delete on the fence) and hand free slots to parked jobs.
-- KEYS: as lib.lua.
-- ARGV[1] call_sid ("" to only hand off)   ARGV[2] fence   ARGV[3] default limit   ARGV[4] reservation in ms
-- ARGV[5] task id prefix for handed jobs
-- Returns {released (1 or 0), call_sid, task_id, ...}: the caller sends one message per handed job.
-- A slot released while its job is still `processing` under this fence (the attempt ended without recording
-- an outcome) puts the job back in line, so a job never stays `processing` without a slot.
local call_sid, fence = ARGV[1], ARGV[2]
local released = 0
if call_sid ~= '' then
  local info = redis.call('HGET', KEYS[2], call_sid)
  if info and parse_info(info) == fence then
    redis.call('ZREM', KEYS[1], call_sid)
    redis.call('HDEL', KEYS[2], call_sid)
    released = 1
    local job_key = job_key_of(call_sid)
    local job = redis.call('HMGET', job_key, 'status', 'fence')
    if job[1] == 'processing' and job[2] == fence then
      requeue(now_ms(), call_sid, job_key, 'the attempt ended without an outcome; requeued')
    end
  end
end
-- Nothing parked, the common case: no clock read and no hand-off.
if redis.call('ZCARD', KEYS[3]) == 0 then return {released} end
local handed = hand_off(now_ms(), ARGV[3], tonumber(ARGV[4]), ARGV[5])
table.insert(handed, 1, released)
return handed
