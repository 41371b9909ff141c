-- acquire.lua: take a slot for a job's current task, or park the job.
-- KEYS: as lib.lua (holders, holder-info, parked, fence, limit, active).
-- ARGV[1] call_sid   ARGV[2] task_id (must be the job's current one)   ARGV[3] worker name
-- ARGV[4] lease in ms   ARGV[5] default limit   ARGV[6] job key prefix
-- Returns {"slot", fence, attempts} | {"parked", position} | {"stale", reason}.
local call_sid, task_id, worker = ARGV[1], ARGV[2], ARGV[3]
local lease_ms, default_limit, job_key = tonumber(ARGV[4]), ARGV[5], ARGV[6] .. ARGV[1]
local now = now_ms()

local job = redis.call('HMGET', job_key, 'status', 'task_id')
if job[1] ~= 'queued' then return {'stale', 'status ' .. tostring(job[1])} end
if job[2] ~= task_id then return {'stale', 'superseded by ' .. tostring(job[2])} end

drop_expired(now)
local fence
local info = redis.call('HGET', KEYS[2], call_sid)
if info then
  local held_fence, held_task, held_worker = parse_info(info)
  if held_task == task_id and held_worker == '' then
    fence = held_fence  -- the reservation a release handed to this task
  else
    -- A superseded attempt of this same job still holds a slot: the job was requeued, so its lease is void.
    redis.call('ZREM', KEYS[1], call_sid)
    redis.call('HDEL', KEYS[2], call_sid)
  end
end

if not fence then
  if redis.call('ZCARD', KEYS[1]) >= business_limit(default_limit) then
    if not redis.call('LPOS', KEYS[3], call_sid) then redis.call('RPUSH', KEYS[3], call_sid) end
    redis.call('HSET', job_key, 'parked', '1')
    return {'parked', redis.call('LPOS', KEYS[3], call_sid)}
  end
  fence = next_fence(now)
end

redis.call('ZADD', KEYS[1], now + lease_ms, call_sid)
redis.call('HSET', KEYS[2], call_sid, fence .. '|' .. task_id .. '|' .. worker)
redis.call('LREM', KEYS[3], 0, call_sid)
local attempts = redis.call('HINCRBY', job_key, 'attempts', 1)
redis.call('HSET', job_key, 'status', 'processing', 'fence', fence, 'worker', worker, 'started_at', now,
  'parked', '0')
redis.call('ZADD', KEYS[6], now, call_sid)
return {'slot', tonumber(fence), attempts}
