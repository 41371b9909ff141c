-- ready.lua: a stored recording is in the catalog: settle its job, write its fact, announce `ready`, in one
-- round trip (tasks/slots/facts.py announce_ready).
-- KEYS[1] the fact hash   KEYS[2] the business's claimed set (lib.lua's KEYS[8])
-- ARGV[1] ttl (s)   ARGV[2] recording id   ARGV[3] call_sid   ARGV[4] the job's events channel
-- ARGV[5] the `ready` message (tasks/slots/events.py message())   then field, value... of the fact
-- The fact is written as fact.lua writes it (lib.lua write_fact): not over the tombstone of the same recording.
-- Returns 1 if the fact was written.
redis.call('ZREM', KEYS[2], ARGV[3])
local written = write_fact(ARGV[2], tonumber(ARGV[1]), 6)
-- A channel is no key: this names no key outside the business's hash slot.
redis.call('PUBLISH', ARGV[4], ARGV[5])
return written
