-- request_limits.lua: one request against every limit of a scope (api/limits.py), checked and, only when every
-- limit lets it through, counted in all of them: atomically, on Redis's clock.
-- KEYS[i]     HASH  limit i's counters for one caller: w = the index of the current fixed window (Redis TIME in
--                   ms // the window), c = requests counted in window w, p = requests counted in window w - 1.
--                   The keys of one call share the caller's hash tag: one Redis Cluster slot.
-- ARGV[2i-1]  limit i's amount (requests per window)     ARGV[2i]  limit i's window in ms
-- Returns 0 when the request passes (it is then counted in every limit), else {i, seconds}: i the first limit
-- it is over, seconds (rounded up, at least 1) until every limit would let a request through again.
--
-- Sliding window counter: the previous window counts by the part of it that a window ending now still covers,
-- weighted = p * (1 - elapsed / window) + c, and a request passes when weighted + 1 <= amount.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- When (ms) a limit that refuses now lets a request through, if no other request comes. The weighted count
-- only falls as time passes, so the limits that let this request through keep doing so until then.
local function passes_at(amount, width, start, current, previous)
  if amount < 1 then return start + width end -- a limit of 0 never does: try again in a window
  if current + 1 <= amount then
    -- In this window, once the previous window's share has shrunk enough (previous > 0, or it would pass).
    return start + width - width * (amount - 1 - current) / previous
  end
  -- In the next window, where this window's count (current >= amount >= 1) becomes the previous one.
  return start + 2 * width - width * (amount - 1) / current
end

local counts = {}
local over, ready_at = 0, now
for i = 1, #KEYS do
  local amount, width = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local index = math.floor(now / width)
  local start = index * width
  local saved = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
  local window, current, previous = tonumber(saved[1]), tonumber(saved[2]) or 0, tonumber(saved[3]) or 0
  if window ~= index then
    -- The window moved on: the saved current window is now the previous one, or older and no longer counts.
    if window == index - 1 then previous = current else previous = 0 end
    current = 0
  end
  if previous * (start + width - now) / width + current + 1 > amount then
    if over == 0 then over = i end
    ready_at = math.max(ready_at, passes_at(amount, width, start, current, previous))
  end
  -- The counters matter until the next window ends (as its previous one): expire them then.
  counts[i] = {index, current + 1, previous, start + 2 * width - now}
end

if over > 0 then
  return {over, math.max(1, math.ceil((ready_at - now) / 1000))}
end
for i = 1, #KEYS do
  local c = counts[i]
  redis.call('HSET', KEYS[i], 'w', c[1], 'c', c[2], 'p', c[3])
  redis.call('PEXPIRE', KEYS[i], c[4])
end
return 0
