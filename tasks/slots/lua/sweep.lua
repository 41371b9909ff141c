-- sweep.lua: one bounded recovery step for one business. It visits only what is due, through the indexes
-- ordered by deadline, at most ARGV[6] entries of each; the caller calls again while `more` says so.
--   * expired leases (crashed or stalled workers): their jobs go back in line with a new attempt to come (or
--     fail past max attempts); expired reservations (lost hand-offs): their jobs go back in line;
--   * `queued` jobs whose message is overdue (a retry's message lost or very late): back in line;
--   * finished jobs the catalog has not heard of for a lease (`claimed`): returned for the caller to settle;
--   * free slots go to the oldest parked jobs.
-- Idempotent: two sweepers at once only repeat each other's no-ops.
-- KEYS: as lib.lua.
-- ARGV[1] default limit   ARGV[2] reservation in ms   ARGV[3] max attempts   ARGV[4] task id prefix
-- ARGV[5] ms to keep a finished job   ARGV[6] batch size   ARGV[7] ms a finished job may wait for the catalog
-- Returns JSON {"reclaimed": n, "reparked": n, "requeued": n, "overdue": n, "dispatch": [[call_sid, task_id]...],
--               "failed": [call_sid...], "claimed": [[call_sid, status, live lease 0/1]...], "more": bool}.
local default_limit, reservation_ms = ARGV[1], tonumber(ARGV[2])
local max_attempts, task_prefix, keep_ms = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local batch, claim_grace_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
local reclaimed, reparked, requeued, overdue = 0, 0, 0, 0
local failed, claimed, dispatch = {}, {}, {}

local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, batch)
for _, call_sid in ipairs(expired) do
  local info = redis.call('HGET', KEYS[2], call_sid)
  redis.call('ZREM', KEYS[1], call_sid)
  redis.call('HDEL', KEYS[2], call_sid)
  local job_key = job_key_of(call_sid)
  local job = redis.call('HMGET', job_key, 'status', 'task_id', 'fence', 'attempts', 'seq')
  local fence, task_id, worker = '', '', ''
  if info then fence, task_id, worker = parse_info(info) end
  if info and worker == '' then
    if job[1] == 'queued' and job[2] == task_id then
      park(call_sid, job_key, job[5] or 0)
      reparked = reparked + 1
    end
  else
    reclaimed = reclaimed + 1
    if job[1] == 'processing' and job[3] == fence then
      if tonumber(job[4] or 0) >= max_attempts then
        redis.call('HSET', job_key, 'status', 'failed', 'error', 'worker lost during the last attempt',
          'done_at', now, 'worker', '')
        redis.call('ZADD', KEYS[8], now, call_sid)
        redis.call('PEXPIRE', job_key, keep_ms)
        table.insert(failed, call_sid)
      else
        requeue(now, call_sid, job_key, 'lease lost; requeued')
        requeued = requeued + 1
      end
    end
  end
end

local late = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, batch)
for _, call_sid in ipairs(late) do
  redis.call('ZREM', KEYS[6], call_sid)
  local job_key = job_key_of(call_sid)
  local job = redis.call('HMGET', job_key, 'status', 'seq')
  if job[1] == 'queued' then
    redis.call('HSET', job_key, 'task_id', '')  -- the late message, if it comes, is stale
    park(call_sid, job_key, job[2] or 0)
    overdue = overdue + 1
  end
end

local settled = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now - claim_grace_ms, 'LIMIT', 0, batch)
for _, call_sid in ipairs(settled) do
  local status = redis.call('HGET', job_key_of(call_sid), 'status') or ''
  local live = 0
  if tonumber(redis.call('ZSCORE', KEYS[1], call_sid) or 0) > now then live = 1 end
  table.insert(claimed, {call_sid, status, live})
end

local handed = hand_off(now, default_limit, reservation_ms, task_prefix .. '.h')
for i = 1, #handed, 2 do table.insert(dispatch, {handed[i], handed[i + 1]}) end
return cjson.encode({reclaimed = reclaimed, reparked = reparked, requeued = requeued, overdue = overdue,
  dispatch = dispatch, failed = failed, claimed = claimed,
  more = (#expired == batch or #late == batch or #settled == batch)})
