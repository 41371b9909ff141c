-- delete.lua: forget a job: its state, its slot and its place in the parked list.
-- KEYS: as lib.lua, then KEYS[7] the job hash.   ARGV[1] call_sid
-- A running attempt then finds its fence gone and discards its result. Returns 1 if a slot was freed.
local call_sid = ARGV[1]
redis.call('DEL', KEYS[7])
redis.call('ZREM', KEYS[6], call_sid)
redis.call('LREM', KEYS[3], 0, call_sid)
local freed = redis.call('ZREM', KEYS[1], call_sid)
redis.call('HDEL', KEYS[2], call_sid)
return freed
