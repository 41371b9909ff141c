-- lib.lua: helpers prepended to every semaphore script (tasks/slots/scripts.py joins them).
-- Every script that uses these (but write_fact, at the end) takes the same KEYS, all tagged with {business_id}
-- (tasks/slots/keys.py):
--   KEYS[1] holders      ZSET  call_sid -> lease expiry (ms, Redis TIME); a reservation's too. Expired members
--                              no longer count; only the sweep removes them (it requeues or re-parks their job)
--   KEYS[2] holder-info  HASH  call_sid -> "fence|task_id|worker" ("" worker = a reservation)
--   KEYS[3] waiting      ZSET  call_sid -> arrival sequence: the parked jobs, oldest first
--   KEYS[4] fence        counter: the fence of the last attempt (never below Redis TIME * 10)
--   KEYS[5] limit        the business's own limit (absent = default)
--   KEYS[6] due          ZSET  call_sid -> deadline (ms) of a queued job whose message is out without a slot
--   KEYS[7] seq          counter: the arrival sequence of the business's jobs
--   KEYS[8] claimed      ZSET  call_sid -> when (ms) a job finished (ready or failed) before the catalog knew
-- Job hashes are built from KEYS[1] (job_key_of), so they share its hash tag: every key a script touches is
-- in the business's Redis Cluster slot. No helper reads a whole set: each costs O(log n) in the backlog.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function business_limit(default_limit)
  local own = tonumber(redis.call('GET', KEYS[5]))
  if own == nil then return tonumber(default_limit) end
  return own
end

-- "fence|task_id|worker" -> fence, task_id, worker (tasks/slots/semaphore.py owns the same format)
local function parse_info(info)
  local fence, task_id, worker = string.match(info, '^([^|]*)|([^|]*)|(.*)$')
  return fence, task_id, worker
end

-- The job hash of call_sid: its key is the holders key with "holders" replaced by "job:" .. call_sid.
local function job_key_of(call_sid)
  return string.sub(KEYS[1], 1, -8) .. 'job:' .. call_sid
end

-- The next fence of this business: above the last one, and above Redis TIME (ms) * 10. A Redis restored
-- from an older snapshot, or a promoted replica that lagged, forgets the fences it handed out last; the clock
-- does not, so every new fence is above every earlier one as long as a business took fewer than 10 slots a
-- millisecond on average. The values stay below 1e14 (until the year 2286), exact in Lua's doubles.
local function next_fence(now)
  local last = tonumber(redis.call('GET', KEYS[4])) or 0
  if last < now * 10 then
    redis.call('SET', KEYS[4], string.format('%d', now * 10))  -- behind the clock: restored, or first use
  end
  return redis.call('INCR', KEYS[4])
end

-- Slots held now: leases and reservations not yet expired. O(log n).
local function live_holders(now)
  return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
end

-- Whether at most n slots are held now. The holders set keeps expired members until the sweep removes them, so
-- its size bounds the live count from above: within n (the common case), the O(1) size answers, and only a
-- business near its limit pays for counting the live ones (a ZCOUNT costs several times a ZCARD).
local function held_at_most(now, n)
  if redis.call('ZCARD', KEYS[1]) <= n then return true end
  return live_holders(now) <= n
end

-- Whether a job that arrived as number `seq` may take a free slot now: one is free, and no older job waits.
-- A head of the line whose job is gone (its state lost) is dropped on the way, a few at most per call.
local function may_take_slot(now, default_limit, seq)
  if not held_at_most(now, business_limit(default_limit) - 1) then return false end
  for _ = 1, 8 do
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    if oldest[1] == nil then return true end
    if redis.call('HGET', job_key_of(oldest[1]), 'status') == 'queued' then
      return tonumber(seq) <= tonumber(oldest[2])
    end
    redis.call('ZREM', KEYS[3], oldest[1])
  end
  return false
end

-- Park a queued job in arrival order (its place is its sequence number, kept through retries and re-parks).
local function park(call_sid, job_key, seq)
  redis.call('ZADD', KEYS[3], seq, call_sid)
  redis.call('ZREM', KEYS[6], call_sid)
  redis.call('HSET', job_key, 'parked', '1')
end

-- Reserve a slot for a queued job's task: a short lease the task turns into its own when it starts. If the
-- message is lost, the reservation expires by itself and the sweep parks the job again.
local function reserve(now, call_sid, job_key, task_id, reservation_ms)
  local fence = next_fence(now)
  redis.call('ZADD', KEYS[1], now + reservation_ms, call_sid)
  redis.call('HSET', KEYS[2], call_sid, fence .. '|' .. task_id .. '|')
  redis.call('ZREM', KEYS[3], call_sid)
  redis.call('ZREM', KEYS[6], call_sid)
  redis.call('HSET', job_key, 'task_id', task_id, 'parked', '0', 'queued_at', now)
end

-- Hand free slots to the oldest parked jobs: each gets a reservation and a new task id; the caller sends a
-- Celery message for each. Task ids are task_prefix .. "." .. n, unique per call. Nothing parked: one ZCARD.
-- Returns a flat list {call_sid, task_id, ...}.
local function hand_off(now, default_limit, reservation_ms, task_prefix)
  local handed = {}
  if redis.call('ZCARD', KEYS[3]) == 0 then return handed end
  local free = business_limit(default_limit) - live_holders(now)
  while free > 0 do
    local popped = redis.call('ZPOPMIN', KEYS[3])
    if popped[1] == nil then break end
    local call_sid = popped[1]
    local job_key = job_key_of(call_sid)
    -- A parked job may have been deleted or purged meanwhile: skip it without spending a slot.
    if redis.call('HGET', job_key, 'status') == 'queued' then
      local task_id = task_prefix .. '.' .. (#handed / 2 + 1)
      reserve(now, call_sid, job_key, task_id, reservation_ms)
      table.insert(handed, call_sid)
      table.insert(handed, task_id)
      free = free - 1
    end
  end
  return handed
end

-- Put a job that lost its attempt back in line at its arrival place, as `queued` (a new attempt will run).
local function requeue(now, call_sid, job_key, error)
  -- No message is valid until a hand-off names a new task id: a late redelivery of the old one is stale.
  redis.call('HSET', job_key, 'status', 'queued', 'task_id', '', 'worker', '', 'error', error, 'queued_at', now)
  park(call_sid, job_key, redis.call('HGET', job_key, 'seq') or 0)
end

-- The scripts whose KEYS[1] is a recording's fact hash (fact.lua, ready.lua; tasks/slots/facts.py): write it
-- whole, from field, value... at ARGV[first] on, unless it holds the tombstone of the same recording `id` (deleted
-- meanwhile). Returns 1 if written.
local function write_fact(id, ttl, first)
  if redis.call('HGET', KEYS[1], 'gone') == id then return 0 end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, first))
  redis.call('EXPIRE', KEYS[1], ttl)
  return 1
end
