-- wrk script: POST the file named by BENCH_UPLOAD as multipart/form-data field
-- "file", and print the latency percentiles and error counts as one JSON line.
local path = os.getenv("BENCH_UPLOAD")
local handle = assert(io.open(path, "rb"))
local upload = handle:read("*a")
handle:close()

local boundary = "----mnistbenchmarkboundary7d3f"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n"
  .. 'Content-Disposition: form-data; name="file"; filename="digit.png"\r\n'
  .. "Content-Type: image/png\r\n\r\n"
  .. upload .. "\r\n--" .. boundary .. "--\r\n"

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
