-- sweep.lua: one business's recovery pass. Idempotent: two sweepers at once only repeat each other's no-ops.
--   * drop expired leases (crashed or stalled workers) and re-park jobs whose reservation expired (lost hand-off);
--   * requeue jobs left `processing` without their slot, with a new attempt (or fail them past max attempts);
--   * re-dispatch `queued` jobs whose message is overdue (lost hand-off, lost message, flushed broker);
--   * re-park parked jobs missing from the parked list;
--   * hand free slots to parked jobs.
-- KEYS: as lib.lua.
-- ARGV[1] default limit   ARGV[2] job key prefix   ARGV[3] reservation in ms   ARGV[4] dispatch deadline in ms
-- ARGV[5] max attempts   ARGV[6] task id prefix   ARGV[7] ms to keep a finished job
-- Returns JSON {"reclaimed": n, "reparked": n, "requeued": n, "dispatch": [[call_sid, task_id], ...],
--               "failed": [call_sid, ...]}.
local default_limit, job_prefix = ARGV[1], ARGV[2]
local reservation_ms, deadline_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_attempts, task_prefix, keep_ms = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local now = now_ms()
local reclaimed, reparked = drop_expired(now)
local dispatch, failed = {}, {}
local requeued, serial = 0, 0
local function new_task_id()
  serial = serial + 1
  return task_prefix .. '.s' .. serial
end

for _, call_sid in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
  local job_key = job_prefix .. call_sid
  local job = redis.call('HMGET', job_key, 'status', 'fence', 'parked', 'deadline', 'attempts')
  local status = job[1]
  if status == 'processing' then
    local info = redis.call('HGET', KEYS[2], call_sid)
    local held_fence = info and parse_info(info)
    if held_fence ~= job[2] then
      if tonumber(job[5] or 0) >= max_attempts then
        redis.call('HSET', job_key, 'status', 'failed', 'error', 'worker lost during the last attempt',
          'done_at', now, 'worker', '')
        redis.call('ZREM', KEYS[6], call_sid)
        redis.call('PEXPIRE', job_key, keep_ms)
        table.insert(failed, call_sid)
      else
        local task_id = new_task_id()
        redis.call('HSET', job_key, 'status', 'queued', 'task_id', task_id, 'worker', '', 'parked', '0',
          'error', 'lease lost; requeued', 'queued_at', now, 'deadline', now + deadline_ms)
        redis.call('ZADD', KEYS[6], now, call_sid)
        table.insert(dispatch, {call_sid, task_id})
        requeued = requeued + 1
      end
    end
  elseif status == 'queued' then
    if job[3] == '1' then
      if not redis.call('LPOS', KEYS[3], call_sid) then redis.call('RPUSH', KEYS[3], call_sid) end
    elseif tonumber(job[4] or 0) < now then
      local task_id = new_task_id()
      redis.call('HSET', job_key, 'task_id', task_id, 'queued_at', now, 'deadline', now + deadline_ms)
      -- Keep a reservation this job was handed: the new message claims it.
      local info = redis.call('HGET', KEYS[2], call_sid)
      if info then
        local fence, _, worker = parse_info(info)
        if worker == '' then redis.call('HSET', KEYS[2], call_sid, fence .. '|' .. task_id .. '|') end
      end
      table.insert(dispatch, {call_sid, task_id})
    end
  else
    redis.call('ZREM', KEYS[6], call_sid)  -- finished, or its hash expired or was deleted
  end
end

local handed = hand_off(now, default_limit, job_prefix, reservation_ms, deadline_ms, task_prefix .. '.h')
for i = 1, #handed, 2 do table.insert(dispatch, {handed[i], handed[i + 1]}) end
return cjson.encode({reclaimed = reclaimed, reparked = reparked, requeued = requeued, dispatch = dispatch,
  failed = failed})
