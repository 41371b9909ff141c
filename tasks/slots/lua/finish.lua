-- finish.lua: record an attempt's outcome, only if the attempt is still the job's current one (its fence).
-- KEYS: as lib.lua, then KEYS[9] the job hash.
-- ARGV[1] call_sid   ARGV[2] fence   ARGV[3] outcome: ready | failed | retry | cancel   ARGV[4] error text
-- ARGV[5] task id for the retry ("" to put the job back in line at once, without a message)
-- ARGV[6] ms until a retry's message is overdue   ARGV[7] ms to keep a finished job
-- ARGV[8] "1" to reopen: the attempt marked the job ready, then could not store its result; it turns its own
--         `ready` into a retry or a failure (no other attempt can have run meanwhile: the job was finished).
-- Returns "ok" or "stale" (another attempt owns the job now: discard this one's result).
-- A finished job (ready or failed) is noted in `claimed` until the catalog records it too (settle, jobs.py),
-- so the sweep finds one whose worker died in between without reading the whole catalog.
local call_sid, fence, outcome = ARGV[1], ARGV[2], ARGV[3]
local job_key = KEYS[9]
local now = now_ms()
local job = redis.call('HMGET', job_key, 'status', 'fence')
local ours = job[1] == 'processing' or (ARGV[8] == '1' and job[1] == 'ready' and outcome ~= 'ready')
if not ours or job[2] ~= fence then return 'stale' end

if outcome == 'ready' or outcome == 'failed' then
  redis.call('HSET', job_key, 'status', outcome, 'error', ARGV[4], 'done_at', now, 'worker', '')
  redis.call('ZADD', KEYS[8], now, call_sid)
  redis.call('PEXPIRE', job_key, tonumber(ARGV[7]))  -- (in place of any earlier one)
elseif outcome == 'retry' then
  redis.call('PERSIST', job_key)  -- a reopened job had the finished one's
  if ARGV[5] == '' then
    requeue(now, call_sid, job_key, ARGV[4])
  else
    -- A retry after a backoff: its message waits in the broker; if it never runs, the sweep parks the job.
    redis.call('HSET', job_key, 'status', 'queued', 'task_id', ARGV[5], 'error', ARGV[4], 'worker', '',
      'queued_at', now, 'parked', '0')
    redis.call('ZADD', KEYS[6], now + tonumber(ARGV[6]), call_sid)
  end
elseif outcome == 'cancel' then
  redis.call('DEL', job_key)
  redis.call('ZREM', KEYS[3], call_sid)
  redis.call('ZREM', KEYS[6], call_sid)
  redis.call('ZREM', KEYS[8], call_sid)
end
return 'ok'
