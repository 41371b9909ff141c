-- ready.lua: a stored recording is in the catalog: settle its job, write its fact, announce `ready`, in one
-- round trip (tasks/slots/facts.py announce_ready).
-- KEYS[1] the fact hash   KEYS[2] the business's claimed set (lib.lua's KEYS[8])
-- ARGV[1] ttl (s)   ARGV[2] recording id   ARGV[3] call_sid   ARGV[4] the job's events channel
-- ARGV[5] the `ready` message (tasks/slots/events.py message())   then field, value... of the fact
-- The fact is written as fact.lua writes it: not over the tombstone of the same recording (deleted meanwhile).
-- Returns 1 if the fact was written.
local ttl, id = tonumber(ARGV[1]), ARGV[2]
redis.call('ZREM', KEYS[2], ARGV[3])
local written = 0
if redis.call('HGET', KEYS[1], 'gone') ~= id then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 6))
  redis.call('EXPIRE', KEYS[1], ttl)
  written = 1
end
-- A channel is no key: this names no key outside the business's hash slot.
redis.call('PUBLISH', ARGV[4], ARGV[5])
return written
