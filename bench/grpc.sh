# The gRPC part of bench/run.sh (sourced by it, not run alone): Envoy's
# ext_authz `Check` against authgate's gRPC listener and against the bare
# tonic handler (examples/bare_authz.rs), in the same run, driven by
# examples/grpc_load.rs.
#
#   bench/run.sh grpc     only this part; replaces its section of BENCHMARKS.md
#
# The load generator is ours, not ghz: ghz (grpc-go) saturated its own core
# at about 10k calls/s, a seventh of what a server core answers, so the
# servers idled and every ratio was invalid. grpc_load speaks HTTP/2 through
# h2 on one thread, resends one encoded request frame, and still decodes and
# checks every answer (any answer but alice's OK allow fails the run).
# grpcurl, an independent client, checks each server's answer before the load.
#
# Uses from run.sh: start, wait_for_port, log, die, cpu_share, saturated,
# ratio, saturated_verdict, $WORK, $CACHE_DIR, $REPO_ROOT, $P_GRPC,
# $APP_HOST, $AG_COOKIE, $ROUNDS, $DURATION, $WARMUP, $CLK_TCK,
# $GRPC_LOAD_BIN, $SATURATED_PCT.
# shellcheck shell=bash disable=SC2154

GRPC_MARK_BEGIN='<!-- bench/grpc.sh: begin -->'
GRPC_MARK_END='<!-- bench/grpc.sh: end -->'
# HTTP/2 connections of the load (Envoy keeps a few per worker to its
# ext_authz cluster), and calls in flight on each: enough that the servers,
# not the round trips, set the pace.
GRPC_H2_CONNECTIONS="${BENCH_GRPC_CONNECTIONS:-4}"
GRPC_IN_FLIGHT="${BENCH_GRPC_IN_FLIGHT:-16}"

# build_grpc_tools: grpcurl (the version scripts/test.sh pins, same cache),
# for the answer check before the load.
build_grpc_tools() {
    local version
    version="$(awk -F= '$1 == "GRPCURL_VERSION" { print $2 }' "$REPO_ROOT/scripts/test.sh")"
    [[ -n "$version" ]] || die "cannot read GRPCURL_VERSION from scripts/test.sh"
    GRPCURL_BIN="$CACHE_DIR/grpcurl-$version/grpcurl"
    if [[ ! -x "$GRPCURL_BIN" ]]; then
        log "building grpcurl $version (first run only)"
        mkdir -p "$(dirname "$GRPCURL_BIN")"
        GOBIN="$(dirname "$GRPCURL_BIN")" go install -trimpath \
            "github.com/fullstorydev/grpcurl/cmd/grpcurl@$version" || die "building grpcurl failed"
    fi
}

# start_bare_authz: the bare handler on $P_BARE, core 1 like the servers.
start_bare_authz() {
    P_BARE=$((PORT_BASE + 8))
    port_busy "$P_BARE" && die "port $P_BARE is in use (set BENCH_PORT_BASE)"
    log "starting the bare Check handler on :$P_BARE (core 1)"
    start bare-authz 1 "$BARE_AUTHZ_BIN" "127.0.0.1:$P_BARE"
    wait_for_port bare-authz "$P_BARE" "$PID_bare_authz"
}

# The CheckRequest both servers get: what Envoy sends for a browser's GET of
# the benchmarked host, with alice's session cookie.
grpc_request() {
    jq -cn --arg host "$APP_HOST" --arg cookie "$AG_COOKIE" '{attributes: {request: {http: {
        method: "GET", scheme: "http", host: $host, path: "/hello.txt",
        headers: {cookie: $cookie, accept: "text/html", "user-agent": "bench"}}}}}'
}

# check_grpc_answer PORT: one Check through grpcurl; the answer must be an
# allow (status code 0) with alice's identity headers.
check_grpc_answer() {
    local out
    out="$(grpc_request | timeout 10 "$GRPCURL_BIN" -plaintext -emit-defaults \
        -protoset "$REPO_ROOT/src/grpc/envoy_authz.protoset" -d @ \
        "127.0.0.1:$1" envoy.service.auth.v3.Authorization/Check)" || die "Check on :$1 failed"
    jq -e '.status.code == 0 and
        ([.okResponse.headers[].header | select(.key == "x-auth-request-email") | .value] == ["alice@example.com"])' \
        <<<"$out" >/dev/null || die "Check on :$1 is not alice's allow: $out"
}

# grpc_load_args: grpc_load's options for the Check load (the request of
# grpc_request), one word a line; the address and timing are the caller's.
grpc_load_args() {
    printf '%s\n' --host "$APP_HOST" --path /hello.txt --cookie "$AG_COOKIE" \
        --connections "$GRPC_H2_CONNECTIONS" --in-flight "$GRPC_IN_FLIGHT"
}

# run_grpc_load NAME PORT ROUND PID: $WARMUP s of warm-up then $DURATION s
# measured, on core 0; appends name round rps p50 p99 ok errors cpu_s
# cpu_us_per_call cpu_share_percent client_cpu_share_percent to
# $WORK/grpc.tsv. grpc_load reads the server's CPU time and its own at the
# edges of the measured window.
run_grpc_load() {
    local name="$1" port="$2" round="$3" pid="$4" args out
    mapfile -t args < <(grpc_load_args)
    out="$(taskset -c 0 timeout $((DURATION + WARMUP + 60)) "$GRPC_LOAD_BIN" "127.0.0.1:$port" "${args[@]}" \
        --warmup "$WARMUP" --duration "$DURATION" --server-pid "$pid" --clk-tck "$CLK_TCK")" \
        || die "grpc_load on $name failed (not every answer was alice's allow): $out"
    jq -r --arg n "$name" --arg r "$round" '
        [$n, $r, (.rps | floor), (.p50_us | floor), (.p99_us | floor), (.outcomes.Allowed // 0),
         .unexpected, .server_cpu_s, (.server_cpu_us_per_call * 10 | round / 10),
         (.server_cpu_share_percent | round), (.client_cpu_share_percent | round)]
        | @tsv' <<<"$out" >>"$WORK/grpc.tsv"
    log "$(awk -F'\t' -v n="$name" -v r="$round" '$1 == n && $2 == r {
        printf "%-16s round %s: %7d calls/s  p50 %5d µs  p99 %6d µs  cpu %s s (%s%%, grpc_load %s%%)  errors %s",
            n, r, $3, $4, $5, $8, $10, $11, $7 }' "$WORK/grpc.tsv")"
}

# run_grpc_bench: $ROUNDS rounds, bare and authgate alternating first.
run_grpc_bench() {
    check_grpc_answer "$P_BARE"
    check_grpc_answer "$P_GRPC"
    : >"$WORK/grpc.tsv"
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
        if ((round % 2)); then
            run_grpc_load bare "$P_BARE" "$round" "$PID_bare_authz"
            run_grpc_load authgate "$P_GRPC" "$round" "$PID_authgate"
        else
            run_grpc_load authgate "$P_GRPC" "$round" "$PID_authgate"
            run_grpc_load bare "$P_BARE" "$round" "$PID_bare_authz"
        fi
    done
}

# grpc_median NAME COLUMN
grpc_median() {
    awk -F'\t' -v c="$1" -v f="$2" '$1 == c { print $f }' "$WORK/grpc.tsv" \
        | sort -g | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }'
}

# grpc_section: the report's gRPC section (markdown, between the markers).
grpc_section() {
    local ag bare r c s_ag s_bare
    ag="$(grpc_median authgate 3)"
    bare="$(grpc_median bare 3)"
    s_ag="$(grpc_median authgate 10)"
    s_bare="$(grpc_median bare 10)"
    r="$(ratio "$ag" "$bare")"
    c="$(ratio "$(grpc_median bare 9)" "$(grpc_median authgate 9)")"
    cat <<EOF
$GRPC_MARK_BEGIN
## Envoy ext_authz over gRPC ($((GRPC_H2_CONNECTIONS * GRPC_IN_FLIGHT)) concurrent calls, ${DURATION} s per case)

Run: $(date -u '+%Y-%m-%d %H:%M UTC'), authgate $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown); load average before / after: $GRPC_LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg).

The same \`CheckRequest\` (a browser's GET of the last of $ROUTES routes,
alice's session cookie from a real login) sent by \`examples/grpc_load.rs\`
over $GRPC_H2_CONNECTIONS HTTP/2 connections with $GRPC_IN_FLIGHT calls in flight on
each, to authgate's gRPC listener and to \`examples/bare_authz.rs\`: the
same stack (tonic, envoy-types, tokio) answering every call with OK and
alice's identity headers without looking at the request. Both checked with
grpcurl to answer alice's allow first; during the load grpc_load decodes
every answer, and any that is not an OK allow fails the run. ${WARMUP} s of
warm-up on the same connections before each measured ${DURATION} s.
Servers on core 1, grpc_load on core 0 (taskset). Medians of $ROUNDS rounds,
the order alternating. "CPU share" is the server's CPU time over the
measured seconds, "grpc_load" the load generator's; a ratio is "invalid"
when a side's server used less than ${SATURATED_PCT} % of its core (the load
generator, if its share is near 100 %, or else the machine's other work set
the pace, not the server).

| ratio | value | target | |
| --- | ---: | ---: | --- |
| authgate / bare handler, calls per second | $r | ≥ 0.9 | $(saturated_verdict "$r" ">=" 0.9 authgate "$s_ag" bare "$s_bare") |
| authgate / bare handler, calls per CPU second | $c | ≥ 0.85 | $(saturated_verdict "$c" ">=" 0.85 authgate "$s_ag" bare "$s_bare") |

| server | calls/s | p50 µs | p99 µs | CPU µs/call | CPU share | saturated | grpc_load | errors |
| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |
| bare handler | $bare | $(grpc_median bare 4) | $(grpc_median bare 5) | $(grpc_median bare 9) | $s_bare % | $(saturated "$s_bare") | $(grpc_median bare 11) % | $(grpc_median bare 7) |
| authgate | $ag | $(grpc_median authgate 4) | $(grpc_median authgate 5) | $(grpc_median authgate 9) | $s_ag % | $(saturated "$s_ag") | $(grpc_median authgate 11) % | $(grpc_median authgate 7) |

Every round:

| server | round | calls/s | p50 µs | p99 µs | CPU s | CPU share | grpc_load |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$(sort -t$'\t' -k1,1 -k2,2n "$WORK/grpc.tsv" | awk -F'\t' '{ printf "| %s | %s | %d | %d | %d | %s | %s %% | %s %% |\n", $1, $2, $3, $4, $5, $8, $10, $11 }')
$GRPC_MARK_END
EOF
}

# splice_grpc_section FILE: replaces the section between the markers in
# FILE, or appends it.
splice_grpc_section() {
    local file="$1" section="$WORK/grpc.md"
    grpc_section >"$section"
    if [[ -f "$file" ]] && grep -qF "$GRPC_MARK_BEGIN" "$file"; then
        awk -v b="$GRPC_MARK_BEGIN" -v e="$GRPC_MARK_END" -v s="$section" '
            $0 == b { while ((getline line < s) > 0) print line; skip = 1; next }
            $0 == e { skip = 0; next }
            !skip' "$file" >"$file.tmp" && mv "$file.tmp" "$file"
    else
        { printf '\n'; cat "$section"; } >>"$file"
    fi
    log "wrote the gRPC section of $file"
}
