-- fact.lua: write a recording's fact, unless that recording was deleted (tasks/slots/facts.py).
-- KEYS[1] the fact hash.   ARGV[1] ttl (s), ARGV[2] recording id, ARGV[3] "write" or "bury", then field, value...
-- "bury" leaves a tombstone naming the deleted recording's id; a later "write" of the same id (a worker that
-- finished, or a status read just before the delete) changes nothing, one of a new registration (new id) does.
-- Returns 1 if written.
local ttl, id, mode = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if mode == 'bury' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'gone', id)
  redis.call('EXPIRE', KEYS[1], ttl)
  return 1
end
return write_fact(id, ttl, 4)
