-- fact.lua: write a recording's fact, unless that recording was deleted (tasks/slots/facts.py).
-- KEYS[1] the fact hash.   ARGV[1] ttl (s), ARGV[2] recording id, ARGV[3] "write" or "bury", then field, value...
-- "bury" leaves a tombstone naming the deleted recording's id; a later "write" of the same id (a worker that
-- finished, or a status read just before the delete) changes nothing, one of a new registration (new id) does.
-- Returns 1 if written.
local key, ttl, id, mode = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3]
if mode == 'bury' then
  redis.call('DEL', key)
  redis.call('HSET', key, 'gone', id)
  redis.call('EXPIRE', key, ttl)
  return 1
end
if redis.call('HGET', key, 'gone') == id then return 0 end
redis.call('DEL', key)
redis.call('HSET', key, unpack(ARGV, 4))
redis.call('EXPIRE', key, ttl)
return 1
