-- acquire.lua: a job's task starts: turn its reservation into a lease, or take a free slot, or park the job.
-- KEYS: as lib.lua.
-- ARGV[1] call_sid   ARGV[2] task_id (must be the job's current one)   ARGV[3] worker name
-- ARGV[4] lease in ms   ARGV[5] default limit   ARGV[6] the job's events channel (tasks/slots/keys.py events)
-- Returns {"slot", fence, attempts} | {"parked"} | {"stale", reason}.
-- A task without a reservation (a retry after its backoff, an old producer's message) takes a free slot only
-- when no older job of its business waits; else it parks in arrival order and its worker is free at once.
local call_sid, task_id, worker = ARGV[1], ARGV[2], ARGV[3]
local lease_ms, default_limit = tonumber(ARGV[4]), ARGV[5]
local job_key = job_key_of(call_sid)
local now = now_ms()

-- Whether turning a reservation into a lease keeps the business within its limit. Reservations are made within
-- it, so this only counts leases when there are more live holders than the limit: a process that reserved knew
-- a higher default limit than this worker (configuration drift). O(limit) then, O(1) otherwise.
local function within_limit(now, default_limit)
  local limit = business_limit(default_limit)
  if held_at_most(now, limit) then return true end
  local leases = 0
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
    local _, _, holder = parse_info(redis.call('HGET', KEYS[2], member) or '||')
    if holder ~= '' then leases = leases + 1 end
  end
  return leases < limit
end

local job = redis.call('HMGET', job_key, 'status', 'task_id', 'seq', 'attempts', 'parked')
if job[1] ~= 'queued' then return {'stale', 'status ' .. tostring(job[1])} end
if job[2] ~= task_id then return {'stale', 'superseded by ' .. tostring(job[2])} end

local fence, reserved
local info = redis.call('HGET', KEYS[2], call_sid)
if info then
  local held_fence, held_task, held_worker = parse_info(info)
  local expiry = tonumber(redis.call('ZSCORE', KEYS[1], call_sid) or 0)
  if held_task == task_id and held_worker == '' and expiry > now and within_limit(now, default_limit) then
    fence = held_fence  -- the reservation made for this task
    reserved = true
  else
    -- An expired reservation, one over the limit (a process that reserved it knew another limit), or a
    -- superseded attempt of this same job: either way the slot is void.
    redis.call('ZREM', KEYS[1], call_sid)
    redis.call('HDEL', KEYS[2], call_sid)
  end
end

if not fence then
  if not may_take_slot(now, default_limit, job[3] or 0) then
    park(call_sid, job_key, job[3] or 0)
    return {'parked'}
  end
  fence = next_fence(now)
end

redis.call('ZADD', KEYS[1], now + lease_ms, call_sid)
redis.call('HSET', KEYS[2], call_sid, fence .. '|' .. task_id .. '|' .. worker)
if not reserved then
  -- A reservation took the job out of line and off the due set when it was made; a task without one may be
  -- either (a late message of a parked job, a retry whose backoff message arrived).
  if job[5] ~= '0' then redis.call('ZREM', KEYS[3], call_sid) end
  redis.call('ZREM', KEYS[6], call_sid)
end
local attempts = tonumber(job[4] or 0) + 1
redis.call('HSET', job_key, 'status', 'processing', 'fence', fence, 'worker', worker, 'started_at', now,
  'parked', '0', 'attempts', attempts)
-- The change, announced here rather than in a second round trip: the message tasks/slots/events.py publish()
-- sends for it (a channel is no key: this names no key outside the business's hash slot).
redis.call('PUBLISH', ARGV[6], '{"status": "processing", "attempts": ' .. attempts .. ', "error": "", "fence": '
  .. string.format('%d', tonumber(fence)) .. '}')
return {'slot', tonumber(fence), attempts}
