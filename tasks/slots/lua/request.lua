-- request.lua: create the job or return the one that exists (the dedup point: N concurrent requests, one job).
-- A new job takes a reserved slot when its business has one free and nobody older waits: the caller sends its
-- one Celery message. Otherwise it parks at once, without a message: the broker only holds work that can run.
-- KEYS: as lib.lua, then KEYS[9] the job hash.
-- ARGV[1] call_sid   ARGV[2] new task id   ARGV[3] media_url   ARGV[4] catalog recording id
-- ARGV[5] dedup window in ms   ARGV[6] mode: "fetch" (a failed job gets a new attempt), "stream" (a failed job
--         stays failed), "force" (the store lost the file: run even inside the dedup window)
-- ARGV[7] default limit   ARGV[8] reservation in ms
-- ARGV[9] the job's broker message for the new task id ("" for none: the caller sends it), with KEYS[10] the
--         broker queue's list it goes on: pushed here as kombu's Redis transport would, in the step that reserves
--         the slot, so the message is out the moment the job exists. KEYS[10] and KEYS[11] are the keys outside the
--         business's hash slot: in the broker's database, which is REDIS_URL's (celeryconfig.py).
-- ARGV[10] the job's events channel, ARGV[11] the message announcing it queued there ("" for no announcement)
-- ARGV[12] Celery's events channel, ARGV[13] the task-sent event of the pushed message ("" for none)
-- ARGV[14] business_id, added to the set of businesses, KEYS[11], when the caller gives that key (with a message)
-- Returns {"enqueued", task_id, sent (1 or 0)} | {"parked"} | {"exists", status} | {"ready"} | {"failed", error}.
local call_sid, task_id, mode = ARGV[1], ARGV[2], ARGV[6]
local job_key = KEYS[9]
local now = now_ms()
local job = redis.call('HMGET', job_key, 'status', 'done_at', 'error', 'recording_id')
local status = job[1]
if job[4] and job[4] ~= ARGV[4] then
  status = false  -- the recording was deleted and registered again: its old job is void
end
if status == 'queued' or status == 'processing' then return {'exists', status} end
if status == 'ready' and mode ~= 'force' and now - tonumber(job[2] or 0) < tonumber(ARGV[5]) then
  return {'ready'}
end
if status == 'failed' and mode == 'stream' then return {'failed', job[3] or ''} end

local seq = redis.call('INCR', KEYS[7])
local info = redis.call('HGET', KEYS[2], call_sid)
if info and select(3, parse_info(info)) == '' then
  -- A slot reserved for this job's earlier life (its state was lost, or it was registered again): void.
  redis.call('ZREM', KEYS[1], call_sid)
  redis.call('HDEL', KEYS[2], call_sid)
end
redis.call('DEL', job_key)
redis.call('ZREM', KEYS[8], call_sid)
redis.call('HSET', job_key, 'status', 'queued', 'task_id', '', 'media_url', ARGV[3], 'recording_id', ARGV[4],
  'attempts', 0, 'error', '', 'parked', '0', 'fence', '', 'worker', '', 'queued_at', now, 'created_at', now,
  'seq', seq)
if KEYS[11] then redis.call('SADD', KEYS[11], ARGV[14]) end
-- The change, announced here rather than in a round trip of its own (a channel is no key).
if (ARGV[10] or '') ~= '' then redis.call('PUBLISH', ARGV[10], ARGV[11]) end
if may_take_slot(now, ARGV[7], seq) then
  reserve(now, call_sid, job_key, task_id, tonumber(ARGV[8]))
  if (ARGV[9] or '') == '' then return {'enqueued', task_id, 0} end  -- (a caller of eight arguments sends itself)
  redis.call('LPUSH', KEYS[10], ARGV[9])
  if (ARGV[13] or '') ~= '' then redis.call('PUBLISH', ARGV[12], ARGV[13]) end
  return {'enqueued', task_id, 1}
end
park(call_sid, job_key, seq)
return {'parked'}
