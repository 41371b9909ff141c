-- lib.lua: helpers prepended to every semaphore script (tasks/semaphore.py joins them).
-- Every script that uses these takes the same KEYS, all tagged with {business_id}:
--   KEYS[1] holders      ZSET  call_sid -> lease expiry (ms, Redis TIME)
--   KEYS[2] holder-info  HASH  call_sid -> "fence|task_id|worker" ("" worker = a reservation)
--   KEYS[3] parked       LIST  call_sids waiting for a slot, oldest first
--   KEYS[4] fence        counter, INCR'd for every attempt
--   KEYS[5] limit        the business's own limit (absent = default)
--   KEYS[6] active       ZSET  call_sid -> last change (ms) of jobs queued or processing

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function business_limit(default_limit)
  local own = tonumber(redis.call('GET', KEYS[5]))
  if own == nil then return tonumber(default_limit) end
  return own
end

-- "fence|task_id|worker" -> fence, task_id, worker
local function parse_info(info)
  local fence, task_id, worker = string.match(info, '^([^|]*)|([^|]*)|(.*)$')
  return fence, task_id, worker
end

-- Expired leases stop counting: drop them. Their jobs stay `processing` with no holder, which the sweeper
-- sees and requeues. Returns how many were dropped.
local function drop_expired(now)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for _, call_sid in ipairs(expired) do
    redis.call('ZREM', KEYS[1], call_sid)
    redis.call('HDEL', KEYS[2], call_sid)
  end
  return #expired
end

-- Hand free slots to parked jobs: each gets a short reservation lease and a new task id; the caller sends a
-- Celery message for each. Task ids are task_prefix .. "." .. n, unique per call.
-- Returns a flat list {call_sid, task_id, ...}.
local function hand_off(now, default_limit, job_prefix, reservation_ms, deadline_ms, task_prefix)
  local handed = {}
  local free = business_limit(default_limit) - redis.call('ZCARD', KEYS[1])
  while free > 0 do
    local call_sid = redis.call('LPOP', KEYS[3])
    if not call_sid then break end
    local job_key = job_prefix .. call_sid
    -- A parked job may have been deleted or purged meanwhile: skip it without spending a slot.
    if redis.call('HGET', job_key, 'status') == 'queued' and redis.call('HGET', job_key, 'parked') == '1' then
      local task_id = task_prefix .. '.' .. (#handed / 2 + 1)
      local fence = redis.call('INCR', KEYS[4])
      redis.call('ZADD', KEYS[1], now + reservation_ms, call_sid)
      redis.call('HSET', KEYS[2], call_sid, fence .. '|' .. task_id .. '|')
      redis.call('HSET', job_key, 'task_id', task_id, 'parked', '0', 'queued_at', now,
        'deadline', now + deadline_ms)
      redis.call('ZADD', KEYS[6], now, call_sid)
      table.insert(handed, call_sid)
      table.insert(handed, task_id)
      free = free - 1
    end
  end
  return handed
end
