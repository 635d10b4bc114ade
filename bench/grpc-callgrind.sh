#!/usr/bin/env bash
# Instructions per gRPC `Check` (callgrind): authgate against the bare tonic
# handler (examples/bare_authz.rs), the same request and load as
# bench/grpc.sh. Prints one line per server and their ratio.
#
#   bench/grpc-callgrind.sh
#
# Why: instruction counts repeat on a busy machine where calls per CPU
# second do not, so this is the comparison to trust while others build.
# They leave out what instructions do not show (cache misses, syscall
# time), so the quiet machine's bench/run.sh grpc stays the measure.
#
# What it does: builds as bench/run.sh does, starts the provider, authgate
# and the bare handler under callgrind (core 1), signs in as alice, then for
# each server: grpc_load for BENCH_CG_WARMUP seconds (default 3), counters
# zeroed, grpc_load for BENCH_CG_SECONDS seconds (default 10), a dump.
# Ir/call is the dump's instruction total over the calls grpc_load had
# answered (all, checked to be OK allows): everything the server ran in
# that window, tonic, hyper and tokio included.
set -euo pipefail
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

CG_WARMUP="${BENCH_CG_WARMUP:-3}"
CG_SECONDS="${BENCH_CG_SECONDS:-10}"

# ir_per_call NAME PORT PID: warm-up, zeroed counters, the measured load and
# a dump; prints "NAME calls Ir Ir/call".
ir_per_call() {
    local name="$1" port="$2" pid="$3" args out calls ir dump
    mapfile -t args < <(grpc_load_args)
    taskset -c 0 timeout $((CG_WARMUP + 120)) "$GRPC_LOAD_BIN" "127.0.0.1:$port" "${args[@]}" \
        --warmup 0 --duration "$CG_WARMUP" >/dev/null || die "grpc_load warm-up on $name failed"
    callgrind_control --zero "$pid" >/dev/null
    out="$(taskset -c 0 timeout $((CG_SECONDS + 120)) "$GRPC_LOAD_BIN" "127.0.0.1:$port" "${args[@]}" \
        --warmup 0 --duration "$CG_SECONDS")" || die "grpc_load on $name failed: $out"
    callgrind_control --dump=measured "$pid" >/dev/null
    calls="$(jq -r '.outcomes.Allowed' <<<"$out")"
    dump="$(grep -l '^desc: Trigger: dump measured' "$WORK/$name.cg".* | tail -n1)"
    ir="$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")"
    awk -v n="$name" -v c="$calls" -v i="$ir" 'BEGIN { printf "%s %d %d %.0f\n", n, c, i, i / c }'
}

main_callgrind() {
    APT_PACKAGES+=(valgrind)
    REQUIRED_PROGRAMS+=(valgrind callgrind_control)
    install_system_packages
    build_grpc_tools
    build_rust devidp bare_authz grpc_load
    start_devidp_for_authgate
    log "starting authgate and the bare handler under callgrind (core 1)"
    local callgrind=(valgrind --tool=callgrind --dump-instr=no)
    start authgate 1 "${callgrind[@]}" --callgrind-out-file="$WORK/authgate.cg" \
        "$AUTHGATE_BIN" serve --config "$WORK/authgate.yaml"
    wait_ready "$P_AUTHGATE"
    P_BARE=$((PORT_BASE + 8))
    port_busy "$P_BARE" && die "port $P_BARE is in use (set BENCH_PORT_BASE)"
    start bare-authz 1 "${callgrind[@]}" --callgrind-out-file="$WORK/bare.cg" \
        "$BARE_AUTHZ_BIN" "127.0.0.1:$P_BARE"
    wait_for_port bare-authz "$P_BARE" "$PID_bare_authz"
    AG_COOKIE="$(login "http://127.0.0.1:$P_AUTHGATE" "/oauth2/start?rd=/oauth2/userinfo" alice _authgate)"
    [[ -n "$AG_COOKIE" ]] || die "no authgate session cookie after the login"
    check_grpc_answer "$P_BARE"
    check_grpc_answer "$P_GRPC"
    log "Check under callgrind: ${CG_WARMUP} s of warm-up, then ${CG_SECONDS} s counted, each server"
    local bare ag
    bare="$(ir_per_call bare "$P_BARE" "$PID_bare_authz")"
    ag="$(ir_per_call authgate "$P_GRPC" "$PID_authgate")"
    printf 'authgate %s, %s\nserver calls Ir Ir/call\n%s\n%s\n' \
        "$(cd "$REPO_ROOT" && git rev-parse --short HEAD)" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$bare" "$ag"
    awk -v b="${bare##* }" -v a="${ag##* }" 'BEGIN { printf "bare / authgate Ir per call: %.2f\n", b / a }'
}

main_callgrind "$@"
