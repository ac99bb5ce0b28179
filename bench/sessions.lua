-- wrk script for bench/run: every request carries the Cookie header of the next session in the file
-- named after "--" (one Cookie header value per line, as ssogate-load --cookies-out writes), so the
-- requests are spread over all the sessions held. With no file the requests carry no cookie.
-- done() prints one line "WRK_JSON {...}" with requests/s, bytes, errors and latency percentiles in ms
-- (wrk counts a 3xx as a success: bench/run tells a redirect to the login from the page by the bytes).

local requests = {}
local next_index = 1

function init(args)
  local path = wrk.path
  local file = args[1] and io.open(args[1], "r")
  if file then
    for line in file:lines() do
      if line ~= "" then
        requests[#requests + 1] = wrk.format("GET", path, { Cookie = line })
      end
    end
    file:close()
  end
  if #requests == 0 then
    requests[1] = wrk.format("GET", path)
  end
  -- Threads start at different sessions.
  next_index = math.random(#requests)
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end

function done(summary, latency, requests_made)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local points = { 0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97, 98, 99, 99.5, 99.9, 99.99, 100 }
  local curve = {}
  for i, p in ipairs(points) do
    curve[i] = string.format("[%g, %.3f]", p, latency:percentile(p) / 1000)
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "bytes": %d, "seconds": %.3f, "requests_per_s": %.2f, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"mean_ms": %.3f, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, ' ..
    '"percentiles": [%s]}\n',
    summary.requests, summary.bytes, seconds, summary.requests / seconds,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, table.concat(curve, ", ")))
end
