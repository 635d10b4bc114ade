#!/usr/bin/env bash
# Tracing cost: authgate's decisions/s and CPU per decision with traces off
# and on (OTLP/gRPC to a running Jaeger), in one short run. Replaces the
# "Tracing cost" section of BENCHMARKS.md.
#
#   bench/tracing.sh
#
# What it does (loopback only, bounded in time, everything started is
# killed on exit; the setup is bench/run.sh's, sourced for its helpers):
#   1. builds authgate and the development provider (release); takes the
#      Jaeger that scripts/test.sh builds and caches;
#   2. starts the provider, and Jaeger (on core 0, with the load generator:
#      its work is the collector's, not authgate's);
#   3. per round and per mode — off, on at TRACE_RATIO, on at 1 — starts
#      authgate on core 1 (in-memory sessions, so a fresh login each time),
#      signs in as alice, and runs wrk on `/oauth2/auth` for the allowed
#      case (a cached session, no I/O: the path tracing must not slow);
#      records requests/s and authgate's CPU time per request (/proc);
#   4. reports the median round of each mode and the spans Jaeger received.
#
# Environment (all optional): BENCH_DURATION (default 6), BENCH_WARMUP
# (2), BENCH_CONNECTIONS (32), BENCH_ROUNDS (3), TRACE_RATIO (0.01),
# TRACE_PORT_BASE (18700), BENCH_OUT (BENCHMARKS.md).
set -euo pipefail

export BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
export BENCH_PORT_BASE="${TRACE_PORT_BASE:-18700}"
TRACE_RATIO="${TRACE_RATIO:-0.01}"
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"
die() { printf 'bench/tracing.sh: error: %s\n' "$*" >&2; exit 1; }

P_OTLP=$((PORT_BASE + 8))
P_JAEGER_QUERY=$((PORT_BASE + 9))
P_JAEGER_GRPC=$((PORT_BASE + 10))
MODES=(off "on-$TRACE_RATIO" on-1)

jaeger_binary() {
    local version
    version="$(sed -n 's/^JAEGER_VERSION=//p' "$REPO_ROOT/scripts/test.sh")"
    local bin="$CACHE_DIR/jaeger-$version/jaeger"
    [[ -x "$bin" ]] || die "Jaeger $version is not built: run scripts/test.sh once (it builds and caches it)"
    printf '%s\n' "$bin"
}

start_jaeger() {
    sed -e "s/{{OTLP}}/127.0.0.1:$P_OTLP/" -e "s/{{QUERY}}/127.0.0.1:$P_JAEGER_QUERY/" \
        -e "s/{{QUERY_GRPC}}/127.0.0.1:$P_JAEGER_GRPC/" \
        "$REPO_ROOT/tests/e2e/jaeger/config.yaml.tmpl" >"$WORK/jaeger.yaml"
    start jaeger 0 "$(jaeger_binary)" --config "$WORK/jaeger.yaml"
    wait_for_port jaeger "$P_OTLP" "$PID_jaeger"
    wait_for_port jaeger "$P_JAEGER_QUERY" "$PID_jaeger"
}

# write_config MODE: authgate.yaml for one mode (off, on-RATIO).
write_config() {
    {
        config_head
        if [[ "$1" != off ]]; then
            cat <<YAML
tracing_provider: otlp
tracing_otlp_endpoint: http://127.0.0.1:$P_OTLP
tracing_sample_rate: ${1#on-}
YAML
        fi
        cat <<YAML
policy:
  - from: http://$APP_HOST
    allowed_groups: [devops]
YAML
    } >"$WORK/authgate.yaml"
    "$AUTHGATE_BIN" check-config --config "$WORK/authgate.yaml" >/dev/null || die "authgate rejects the config of $1"
}

# measure MODE ROUND: one wrk run against a fresh authgate in MODE; appends
# mode round rps p50 p99 cpu_us_per_request bad errors to $WORK/trace.tsv.
measure() {
    local mode="$1" round="$2"
    write_config "$mode"
    start authgate 1 "$AUTHGATE_BIN" serve --config "$WORK/authgate.yaml"
    wait_for_port authgate "$P_AUTHGATE" "$PID_authgate"
    local cookie
    cookie="$(login "http://127.0.0.1:$P_AUTHGATE" "/oauth2/start?rd=/oauth2/userinfo" alice _authgate)"
    [[ -n "$cookie" ]] || die "no session cookie ($mode)"
    local url="http://127.0.0.1:$P_AUTHGATE/oauth2/auth"
    local args=(-H "Cookie: $cookie" -H "X-Original-URL: http://$APP_HOST/" -H "X-Original-Method: GET")
    local status
    status="$(curl -s -o /dev/null -w '%{http_code}' "${args[@]}" "$url")"
    [[ "$status" == 200 ]] || die "the allowed case answered $status ($mode)"
    local wrk=(taskset -c 0 timeout $((DURATION + WARMUP + 30)) wrk -t1 -c"$CONNECTIONS" --timeout 5s "${args[@]}")
    "${wrk[@]}" -d"${WARMUP}s" "$url" >/dev/null
    local before after out
    before="$(cpu_ticks "$PID_authgate")"
    out="$("${wrk[@]}" -d"${DURATION}s" -s "$WORK/report.lua" "$url")"
    after="$(cpu_ticks "$PID_authgate")"
    local result
    result="$(grep '^RESULT ' <<<"$out")" || die "wrk printed no result: $out"
    # shellcheck disable=SC2086
    set -- $result
    local requests="$2" rps="$4" p50="$5" p99="$6" bad="$8" errors="$9"
    local cpu_us
    cpu_us="$(awk -v t=$((after - before)) -v k="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.2f", n ? t / k * 1e6 / n : 0 }')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$round" "$rps" "$p50" "$p99" "$cpu_us" "$bad" "$errors" >>"$WORK/trace.tsv"
    log "$(printf '%-8s round %s: %9.0f req/s  p50 %5d µs  p99 %6d µs  cpu %6s µs/req  wrong %s  errors %s' \
        "$mode" "$round" "$rps" "$p50" "$p99" "$cpu_us" "$bad" "$errors")"
    # SIGTERM: the graceful shutdown sends the buffered spans.
    kill "$PID_authgate"
    for _ in $(seq 100); do kill -0 "$PID_authgate" 2>/dev/null || break; sleep 0.1; done
    for _ in $(seq 50); do port_busy "$P_AUTHGATE" || break; sleep 0.1; done
}

# median MODE COLUMN: the median of COLUMN over the rounds of MODE.
median() {
    awk -F'\t' -v m="$1" -v c="$2" '$1 == m { print $c }' "$WORK/trace.tsv" | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# spread MODE COLUMN: min–max over the rounds.
spread() {
    awk -F'\t' -v m="$1" -v c="$2" '$1 == m { if (min == "" || $c < min) min = $c; if ($c > max) max = $c }
        END { printf "%s–%s", min, max }' "$WORK/trace.tsv"
}

write_section() {
    local out="$OUT" tmp mode
    tmp="$(mktemp)"
    if [[ -f "$out" ]]; then
        awk '/^## Tracing cost$/ { skip = 1; next } skip && /^## / { skip = 0 } !skip' "$out" >"$tmp"
    fi
    sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$tmp"
    local off_rps off_cpu
    off_rps="$(median off 3)"
    off_cpu="$(median off 6)"
    {
        cat "$tmp"
        cat <<MD

## Tracing cost

Produced by \`bench/tracing.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), authgate $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown).
\`/oauth2/auth\` for a signed-in user on an allowed route (the session
cached: no I/O), wrk with $CONNECTIONS connections for ${DURATION} s after
${WARMUP} s of warm-up, $ROUNDS rounds per mode in turn, median round
(min–max in brackets). authgate (release) on core 1, wrk and Jaeger
v2 (OTLP/gRPC, memory storage) on core 0. "on" sends every sampled span to
Jaeger; a decision's span is sampled at the ratio (no \`traceparent\`
from a proxy here).

| traces | decisions/s | vs off | authgate CPU per decision | vs off | p50 / p99 |
| --- | --- | --- | --- | --- | --- |
MD
        for mode in "${MODES[@]}"; do
            local rps cpu
            rps="$(median "$mode" 3)"
            cpu="$(median "$mode" 6)"
            printf '| %s | %.0f (%s) | %s | %s µs (%s) | %s | %s / %s µs |\n' \
                "$mode" "$rps" "$(spread "$mode" 3 | awk -F'–' '{ printf "%.0f–%.0f", $1, $2 }')" \
                "$(ratio "$rps" "$off_rps")" "$cpu" "$(spread "$mode" 6)" "$(ratio "$cpu" "$off_cpu")" \
                "$(median "$mode" 4)" "$(median "$mode" 5)"
        done
        cat <<MD

Jaeger answered a query for 20 of authgate's decision traces with $SPANS
spans (it had received them; its memory store keeps the newest 100,000
traces). A decision the sampler drops still gets ids, a sampling
decision and a context for its I/O, but sets no attribute and exports
nothing. Decisions/s is set by whichever side saturates first and by the
other work on the machine; authgate's CPU per decision is the figure to
compare. The load
average was $LOAD_BEFORE before and $LOAD_AFTER after (two cores, shared
with other work: above 2 the figures are noisy; compare the modes within
one run, not across runs).
MD
    } >"$out"
    rm -f "$tmp"
    log "wrote the Tracing cost section of $out"
}

main_tracing() {
    install_system_packages
    build_rust devidp
    local p
    for p in "$P_IDP" "$P_AUTHGATE" "$P_OTLP" "$P_JAEGER_QUERY" "$P_JAEGER_GRPC"; do
        port_busy "$p" && die "port $p is in use (set TRACE_PORT_BASE)"
    done
    local secret
    secret="$(random_token)"
    head -c 32 /dev/urandom | base64 >"$WORK/cookie_secret"
    printf '%s' "$secret" >"$WORK/idp_client_secret"
    start devidp 0 "$DEVIDP_BIN" --port "$P_IDP" \
        --client "authgate:$secret:http://127.0.0.1:$P_AUTHGATE/oauth2/callback"
    wait_for_port devidp "$P_IDP" "$PID_devidp"
    start_jaeger
    LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
    : >"$WORK/trace.tsv"
    local round mode
    for ((round = 1; round <= ROUNDS; round++)); do
        for mode in "${MODES[@]}"; do
            measure "$mode" "$round"
        done
    done
    LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
    # What Jaeger holds: a few traces of authgate's decisions (its memory
    # store keeps the newest 100,000; a count of all would be a huge answer).
    SPANS="$(curl -s "http://127.0.0.1:$P_JAEGER_QUERY/api/traces?service=authgate&operation=authgate.decision&limit=20&lookback=1h" |
        jq '[.data[].spans | length] | add // 0')"
    stop_servers
    write_section
    cat "$WORK/trace.tsv"
}

main_tracing "$@"
