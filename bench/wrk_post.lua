-- wrk script: POST the JSON body in $WRK_BODY_FILE, with a bearer token when $WRK_TOKEN is set,
-- and print one machine-readable summary line (latencies in microseconds).
wrk.method = "POST"
local handle = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.body = handle:read("*a")
handle:close()
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("WRK_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "socket_errors": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, errors.connect + errors.read + errors.write + errors.timeout,
    errors.status, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
