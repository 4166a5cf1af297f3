-- One Open Inference Protocol (V2) infer request with one 20-feature row, reused for
-- every call. The path comes from the WRK_PATH env variable (bench.py sets it).
wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH") or "/v2/models/model/infer"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"input-0","shape":[1,20],"datatype":"FP64","data":' ..
  '[0.49,-1.21,0.33,1.87,-0.42,0.05,-0.77,1.12,0.64,-0.18,' ..
  '0.91,-1.53,0.27,0.08,-0.66,1.44,-0.29,0.72,-1.05,0.36]}]}'

-- Print the latency percentiles and error counts as one parseable line.
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, errors, summary.requests))
end
