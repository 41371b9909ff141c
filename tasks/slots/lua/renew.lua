-- renew.lua: extend a held lease, only for the attempt that holds it.
-- KEYS: as lib.lua.   ARGV[1] call_sid   ARGV[2] fence   ARGV[3] lease in ms
-- Returns 1 when renewed, 0 when the lease is gone (expired, reclaimed or superseded): the attempt must stop.
-- An expired lease stays in holders for the sweep, which requeues its job.
local call_sid, fence, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local info = redis.call('HGET', KEYS[2], call_sid)
if not info or parse_info(info) ~= fence then return 0 end
local expiry = tonumber(redis.call('ZSCORE', KEYS[1], call_sid))
if expiry == nil or expiry <= now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, call_sid)
return 1
