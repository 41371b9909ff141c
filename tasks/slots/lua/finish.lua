-- finish.lua: record an attempt's outcome, only if the attempt is still the job's current one (its fence).
-- KEYS: as lib.lua, then KEYS[7] the job hash.
-- ARGV[1] call_sid   ARGV[2] fence   ARGV[3] outcome: ready | failed | retry | cancel   ARGV[4] error text
-- ARGV[5] task id for the retry   ARGV[6] ms until a retry is overdue   ARGV[7] ms to keep a finished job
-- ARGV[8] "1" to reopen: the attempt marked the job ready, then could not store its result; it turns its own
--         `ready` into a retry or a failure (no other attempt can have run meanwhile: the job was finished).
-- Returns "ok" or "stale" (another attempt owns the job now: discard this one's result).
local call_sid, fence, outcome = ARGV[1], ARGV[2], ARGV[3]
local job_key = KEYS[7]
local now = now_ms()
local job = redis.call('HMGET', job_key, 'status', 'fence')
local ours = job[1] == 'processing' or (ARGV[8] == '1' and job[1] == 'ready' and outcome ~= 'ready')
if not ours or job[2] ~= fence then return 'stale' end
redis.call('PERSIST', job_key)

if outcome == 'ready' or outcome == 'failed' then
  redis.call('HSET', job_key, 'status', outcome, 'error', ARGV[4], 'done_at', now, 'worker', '')
  redis.call('ZREM', KEYS[6], call_sid)
  redis.call('PEXPIRE', job_key, tonumber(ARGV[7]))
elseif outcome == 'retry' then
  redis.call('HSET', job_key, 'status', 'queued', 'task_id', ARGV[5], 'error', ARGV[4], 'worker', '',
    'queued_at', now, 'deadline', now + tonumber(ARGV[6]), 'parked', '0')
  redis.call('ZADD', KEYS[6], now, call_sid)
elseif outcome == 'cancel' then
  redis.call('DEL', job_key)
  redis.call('ZREM', KEYS[6], call_sid)
end
return 'ok'
