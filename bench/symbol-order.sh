#!/usr/bin/env bash
# Writes bench/symbol-order.txt: the functions authgate runs, in the order
# the linker is to lay them out (build.rs hands the file to lld).
#
#   bench/symbol-order.sh
#
# Why: a code fault makes a whole 64 KiB page-cache folio resident. Left in
# the linker's default order, the code run at start-up (clap, the YAML
# parse, url/idna, rustls, key generation, the runtime) is spread over the
# whole 11 MB of .text, and about 130 faults keep 8 MiB of it resident.
# Laid out together, the code that runs fits in about 3 MiB.
#
# What it does: builds authgate in release as the README does, runs it under
# callgrind through start, discovery, a login, every front end (nginx's
# /oauth2/auth allow, 401 and 403; Traefik's /forward-auth; the gRPC Check;
# /metrics) and the benchmark's loads on /oauth2/auth and Check, then lists
# the functions of the binary that ran: the loads' first, hottest first,
# then start-up, then shutdown.
#
# When to run it: before a release or a benchmark, and always after a
# change to Cargo.lock, the Rust toolchain or the release profile. Symbol
# names carry hashes of those, and survive other changes, except a few dozen
# local functions LTO renames (`write_str.4588`): their numbers move with
# any code change. A stale file matches fewer functions and the binary falls
# back towards the default layout (never wrong, only larger); bench/run.sh
# reports how many of the file's functions the binary it measures has.
set -euo pipefail
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

ORDER_FILE="$REPO_ROOT/bench/symbol-order.txt"

# exercise: every front end once each way, then a load on /oauth2/auth.
exercise() {
    local ag="http://127.0.0.1:$P_AUTHGATE"
    local allow="X-Original-URL: http://$APP_HOST/hello.txt" deny="X-Original-URL: http://$DENY_HOST/hello.txt"
    expect_status 200 "$ag/oauth2/auth" "$allow" "Cookie: $AG_COOKIE"
    expect_status 401 "$ag/oauth2/auth" "$allow" "Cookie: $(tamper "$AG_COOKIE")"
    expect_status 401 "$ag/oauth2/auth" "$allow"
    expect_status 403 "$ag/oauth2/auth" "$deny" "Cookie: $AG_COOKIE"
    expect_status 200 "$ag/forward-auth" "X-Forwarded-Proto: http" "X-Forwarded-Host: $APP_HOST" \
        "X-Forwarded-Uri: /hello.txt" "Cookie: $AG_COOKIE"
    expect_status 200 "$ag/metrics"
    check_grpc_answer "$P_GRPC"
    # The benchmark's loads: 32 HTTP/1.1 connections, 64 concurrent Checks
    # over a few HTTP/2 connections.
    timeout 60 wrk -t1 -c"$CONNECTIONS" -d5s -H "$allow" -H "Cookie: $AG_COOKIE" "$ag/oauth2/auth" >/dev/null
    local load
    mapfile -t load < <(grpc_load_args)
    timeout 60 "$GRPC_LOAD_BIN" "127.0.0.1:$P_GRPC" "${load[@]}" --warmup 0 --duration 5 >/dev/null \
        || die "grpc_load failed"
}

# functions PART: the binary's functions that ran in callgrind dump PART,
# one "self-cost name" line each.
functions() {
    awk '
        # "ob=(3) /path" names object 3 at its first use, "ob=(3)" refers to
        # it later; the first use may be a callee (cob=, cfn=).
        function define(table,    id) {
            id = $1; sub(/^[a-z]+=/, "", id)
            if (NF > 1) table[id] = substr($0, index($0, " ") + 1)
            return id
        }
        /^c?ob=/ { id = define(obj); if (/^ob=/) in_bin = obj[id] ~ /\/authgate$/; next }
        /^c?fn=/ { id = define(name); if (/^fn=/) { fn = in_bin ? name[id] : ""; skip = 0 }; next }
        /^calls=/ { skip = 1; next }
        /^[0-9+*-]/ { if (skip) { skip = 0; next }
                      if (fn != "") cost[fn] += $2; next }
        # callgrind marks recursion levels with a quote (f'"'"'2), and names
        # code without a symbol by address or "(below main)".
        END { for (f in cost) { s = f; sub(/'"'"'[0-9]+$/, "", s)
                                if (s ~ /^[_A-Za-z]/) total[s] += cost[f] }
              for (s in total) if (total[s] > 0) printf "%d %s\n", total[s], s }
    ' "$1"
}

main_order() {
    export LC_ALL=C
    APT_PACKAGES+=(valgrind)
    REQUIRED_PROGRAMS+=(valgrind callgrind_control)
    install_system_packages
    build_grpc_tools
    build_rust devidp grpc_load
    # build.rs trusts the file's toolchain to link with rust-lld (GNU ld has
    # no --symbol-ordering-file): write none for any other.
    readelf -p .comment "$AUTHGATE_BIN" | grep -q 'Linker: LLD' \
        || die "this toolchain does not link authgate with rust-lld (Rust 1.90+ on x86_64 Linux): no order file"
    start_devidp_for_authgate
    # Loopback is the proxy here, so /forward-auth believes X-Forwarded-*.
    printf 'trusted_proxies: [127.0.0.1/32]\n' >>"$WORK/authgate.yaml"

    log "starting authgate under callgrind"
    local out="$WORK/callgrind.out"
    start authgate 1 valgrind --tool=callgrind --demangle=no --dump-instr=no \
        --callgrind-out-file="$out" "$AUTHGATE_BIN" serve --config "$WORK/authgate.yaml"
    wait_ready "$P_AUTHGATE"
    AG_COOKIE="$(login "http://127.0.0.1:$P_AUTHGATE" "/oauth2/start?rd=/oauth2/userinfo" alice _authgate)"
    [[ -n "$AG_COOKIE" ]] || die "no authgate session cookie after the login"
    callgrind_control --dump=start "$PID_authgate" >/dev/null
    log "exercising every front end, then 5 s of load on /oauth2/auth and on Check"
    exercise
    callgrind_control --dump=load "$PID_authgate" >/dev/null
    kill -TERM "$PID_authgate"
    wait "$PID_authgate" || true

    # Parts: .1 start-up and login, .2 the requests, the last one shutdown.
    local parts=("$out".*)
    ((${#parts[@]} >= 2)) || die "callgrind wrote ${#parts[@]} numbered dumps, expected 2 or 3"
    functions "$out.2" | sort -k1,1nr | cut -d' ' -f2- >"$WORK/load"
    functions "$out.1" | cut -d' ' -f2- | sort >"$WORK/start"
    if [[ -f "$out" ]]; then functions "$out"; else functions "$out.3"; fi | cut -d' ' -f2- | sort >"$WORK/stop"
    {
        printf '# authgate functions in link order: written by bench/symbol-order.sh, read by build.rs.\n'
        printf '# toolchain: %s\n' "$(rustc -V)"
        printf '# Cargo.lock: %s\n' "$(sha256sum "$REPO_ROOT/Cargo.lock" | cut -c1-16)"
        cat "$WORK/load"
        sort "$WORK/load" | comm -23 "$WORK/start" -
        sort "$WORK/load" "$WORK/start" | comm -23 "$WORK/stop" -
    } >"$ORDER_FILE.tmp"
    mv "$ORDER_FILE.tmp" "$ORDER_FILE"
    log "$(grep -vc '^#' "$ORDER_FILE") functions ($(wc -l <"$WORK/load") on the load path) in $ORDER_FILE"
    log "rebuild (AUTHGATE_CODE_LAYOUT=1 cargo build --release) to lay the binary out in this order"
}

main_order "$@"
