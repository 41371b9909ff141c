-- migrate.lua: move one business's state from the layout of earlier releases (a LIST of parked jobs, a ZSET of
-- every live job that each sweep read whole) to this one, a bounded batch a call; the caller repeats until 0.
-- KEYS: as lib.lua, then KEYS[9] the old parked LIST, KEYS[10] the old active ZSET.
-- ARGV[1] batch size   ARGV[2] ms until a queued job's message is overdue
-- Returns how many entries the old keys still hold.
local batch, deadline_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()

local function seq_of(job_key)
  local seq = redis.call('HGET', job_key, 'seq')
  if not seq then
    seq = redis.call('INCR', KEYS[7])
    redis.call('HSET', job_key, 'seq', seq)
  end
  return seq
end

for _, call_sid in ipairs(redis.call('LRANGE', KEYS[9], 0, batch - 1)) do
  local job_key = job_key_of(call_sid)
  if redis.call('HGET', job_key, 'status') == 'queued' then park(call_sid, job_key, seq_of(job_key)) end
end
redis.call('LTRIM', KEYS[9], batch, -1)

for _, call_sid in ipairs(redis.call('ZRANGE', KEYS[10], 0, batch - 1)) do
  local job_key = job_key_of(call_sid)
  local job = redis.call('HMGET', job_key, 'status', 'parked')
  local seq = job[1] and seq_of(job_key)
  local held = redis.call('ZSCORE', KEYS[1], call_sid)
  if job[1] == 'queued' and job[2] == '1' then
    park(call_sid, job_key, seq)
  elseif job[1] == 'queued' and not held then
    redis.call('ZADD', KEYS[6], 'NX', now + deadline_ms, call_sid)
  elseif job[1] == 'processing' and not held then
    requeue(now, call_sid, job_key, 'moved to the new slot layout; requeued')
  end
end
redis.call('ZREMRANGEBYRANK', KEYS[10], 0, batch - 1)
return redis.call('LLEN', KEYS[9]) + redis.call('ZCARD', KEYS[10])
