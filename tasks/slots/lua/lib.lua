-- lib.lua: helpers prepended to every semaphore script (tasks/slots/scripts.py joins them).
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

-- The next fence of this business. A missing counter starts from Redis TIME (milliseconds * 10), so a Redis that
-- lost its data (flushed, or restarted empty) never hands out a fence that an attempt from before the loss may
-- still hold: fences only grow, as long as a business took fewer than 10 slots a millisecond on average since
-- its counter started. The values stay below 1e14 (until the year 2286), so Lua prints them as plain integers.
local function next_fence(now)
  if redis.call('EXISTS', KEYS[4]) == 0 then
    redis.call('SET', KEYS[4], string.format('%d', now * 10))
  end
  return redis.call('INCR', KEYS[4])
end

-- The job hash of call_sid: its key is the holders key with "holders" replaced by "job:" .. call_sid.
local function job_key_of(call_sid)
  return string.sub(KEYS[1], 1, -8) .. 'job:' .. call_sid
end

-- Expired leases stop counting: drop them. The job of an expired running attempt stays `processing` with no
-- holder, which the sweeper sees and requeues. An expired reservation means the hand-off message was lost (or
-- is very late): its job goes back to the head of the parked list, to be handed the next free slot with a new
-- task id (the late message, if it comes, is then stale).
-- Returns (leases dropped, reservations re-parked).
local function drop_expired(now)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  local leases, reparked = 0, 0
  for i = #expired, 1, -1 do
    local call_sid = expired[i]
    local info = redis.call('HGET', KEYS[2], call_sid)
    redis.call('ZREM', KEYS[1], call_sid)
    redis.call('HDEL', KEYS[2], call_sid)
    local reservation = false
    if info then
      local _, task_id, worker = parse_info(info)
      if worker == '' then
        local job_key = job_key_of(call_sid)
        local job = redis.call('HMGET', job_key, 'status', 'task_id')
        if job[1] == 'queued' and job[2] == task_id then
          reservation = true
          redis.call('LREM', KEYS[3], 0, call_sid)
          redis.call('LPUSH', KEYS[3], call_sid)
          redis.call('HSET', job_key, 'parked', '1')
        end
      end
    end
    if reservation then reparked = reparked + 1 else leases = leases + 1 end
  end
  return leases, reparked
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
      local fence = next_fence(now)
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
