-- delete.lua: forget a job: its state, its slot and its place in line.
-- KEYS: as lib.lua, then KEYS[9] the job hash.   ARGV[1] call_sid
-- A running attempt then finds its fence gone and discards its result. Returns 1 if a live slot was freed.
local call_sid = ARGV[1]
local now = now_ms()
redis.call('DEL', KEYS[9])
redis.call('ZREM', KEYS[3], call_sid)
redis.call('ZREM', KEYS[6], call_sid)
redis.call('ZREM', KEYS[8], call_sid)
local expiry = tonumber(redis.call('ZSCORE', KEYS[1], call_sid) or 0)
redis.call('ZREM', KEYS[1], call_sid)
redis.call('HDEL', KEYS[2], call_sid)
if expiry > now then return 1 end
return 0
