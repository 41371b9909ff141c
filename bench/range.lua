-- wrk script for the streaming scenario: every request asks for a random 64 KiB-aligned range of the file.
-- Environment: BENCH_FILE_SIZE (bytes), BENCH_CHUNK (bytes). Prints one line "BENCH {json}" when done.
local size = tonumber(os.getenv("BENCH_FILE_SIZE"))
local chunk = tonumber(os.getenv("BENCH_CHUNK"))
local chunks = math.floor(size / chunk)
local counter = 0

function setup(thread)
  thread:set("seed", counter)
  counter = counter + 1
end

function init(args)
  math.randomseed(os.time() + seed)
end

function request()
  local start = math.random(0, chunks - 1) * chunk
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["Range"] = "bytes=" .. start .. "-" .. (start + chunk - 1)
  return wrk.format(nil, nil, headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH {"requests": %d, "bytes": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.bytes, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
