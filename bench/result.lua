-- The line every wrk run of the bench scripts ends with, for them to parse:
-- RESULT requests seconds req/s p50 p99 p99.9 (µs) wrong errors, where
-- "wrong" is what the caller counts as a wrong answer and "errors" are
-- socket errors.
function result_line(summary, latency, wrong)
    local errors = summary.errors.connect + summary.errors.read
        + summary.errors.write + summary.errors.timeout
    io.write(string.format("RESULT %d %.3f %.1f %d %d %d %d %d\n",
        summary.requests, summary.duration / 1e6,
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
        wrong, errors))
end
