#!/usr/bin/env bash
# Soak: authgate at ~80% of its measured maximum rate for a while, with a
# mix of valid, expired, tampered and absent cookies over many routes, every
# answer checked; memory sampled every second. Appends a "Soak" section to
# BENCHMARKS.md (replacing the previous one).
#
#   bench/soak.sh [seconds]        # default 60
#
# What it does (loopback only, bounded in time, everything started is
# killed on exit; the setup is bench/run.sh's, sourced for its helpers):
#   1. builds authgate and the development provider (release) and vegeta;
#   2. writes a policy of $SOAK_ROUTES routes: app<i>.soak.test admits, by
#      i mod 4, group devops (alice), group users (bob), any signed-in user,
#      or carol by e-mail; public.soak.test is public; anything else has no
#      route;
#   3. gets real cookies through the provider's login form: alice, bob and
#      carol, plus an expired one (alice signed in to an instance with
#      cookie_expire 8s and the same secret, which then stops) and a
#      tampered one (alice's with one character changed);
#   4. builds the request set: every route × {alice, bob, carol, expired,
#      tampered, no cookie}, each tagged with the status it must get
#      (`?want=` in the URL; /oauth2/auth ignores the query);
#   5. measures the maximum rate in a closed loop ($SOAK_WORKERS vegeta
#      workers, one keep-alive connection each, as fast as answers come,
#      $SOAK_PROBE s): every answer counts, whatever its status (vegeta's
#      "throughput" counts only 2xx/3xx, a quarter of this mix);
#   6. runs at $SOAK_LOAD% of it for the given time (open loop, at most
#      2 × $SOAK_WORKERS workers and connections) while sampling authgate's
#      RSS and open descriptors from /proc every second;
#   7. checks every response: wrong status, 5xx and transport errors must
#      all be zero, RSS after the warm-up within 10% (max ≤ 1.10 × min),
#      and the achieved rate at least 90% of the target.
#
# Why the bounds: vegeta's default is to add a worker, and a connection,
# whenever none is free. When the machine stalls for a moment (shared
# cores), it opened ~11,000 connections in a few seconds, its own core
# drowned in them, requests timed out by the ten thousand, and authgate's
# RSS rose with the open connections (each holds its buffers; the
# allocator keeps the pages after they close: a high-water mark, not a
# leak, it stays there over repeated floods). Real clients (nginx, Envoy)
# keep a bounded pool; so does this load.
#
# Environment (all optional):
#   SOAK_ROUTES      routes in the policy (default 200)
#   SOAK_PROBE       seconds of the maximum-rate probe (default 10)
#   SOAK_LOAD        percent of the maximum to soak at (default 80)
#   SOAK_WARMUP      seconds excluded from the RSS check (default 10)
#   SOAK_WORKERS     vegeta workers (= connections) for the probe; the soak
#                    may use twice as many (default 32)
#   SOAK_PORT_BASE   first of two loopback ports used (default 18600)
#   BENCH_OUT        the report (default BENCHMARKS.md)
set -euo pipefail

SOAK_SECONDS="${1:-60}"
SOAK_ROUTES="${SOAK_ROUTES:-200}"
SOAK_PROBE="${SOAK_PROBE:-10}"
SOAK_LOAD="${SOAK_LOAD:-80}"
SOAK_WARMUP="${SOAK_WARMUP:-10}"
SOAK_WORKERS="${SOAK_WORKERS:-32}"
export BENCH_PORT_BASE="${SOAK_PORT_BASE:-18600}"
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"
die() { printf 'bench/soak.sh: error: %s\n' "$*" >&2; exit 1; }

USERS=(alice bob carol)

# write_config EXPIRE: authgate's config with cookie lifetime EXPIRE.
write_config() {
    {
        config_head
        cat <<YAML
cookie_expire: $1
policy:
  - from: http://public.soak.test
    allow_public_unauthenticated_access: true
YAML
        local i
        for ((i = 0; i < SOAK_ROUTES; i++)); do
            printf '  - from: http://app%d.soak.test\n' "$i"
            case $((i % 4)) in
                0) printf '    allowed_groups: [devops]\n' ;;
                1) printf '    allowed_groups: [users]\n' ;;
                2) printf '    allow_any_authenticated_user: true\n' ;;
                3) printf '    allowed_users: [carol@example.com]\n' ;;
            esac
        done
    } >"$WORK/authgate.yaml"
    "$AUTHGATE_BIN" check-config --config "$WORK/authgate.yaml" >/dev/null || die "authgate rejects the soak config"
}

# expected COOKIE_KIND ROUTE: the status authgate must answer; ROUTE is a
# route number, "public" or "none".
expected() {
    local kind="$1" route="$2"
    case "$route" in
        public) echo 200; return ;;
        none) echo 403; return ;;
    esac
    case "$kind" in
        expired | tampered | absent) echo 401; return ;;
    esac
    local rule=$((route % 4)) ok=0
    case "$rule:$kind" in
        0:alice | 1:bob | 2:* | 3:carol) ok=1 ;;
    esac
    ((ok)) && echo 200 || echo 403
}

# targets FILE: vegeta JSON targets, one per route × cookie kind.
write_targets() {
    local file="$1" kind route host want cookie
    local -A cookies=([alice]="$COOKIE_alice" [bob]="$COOKIE_bob" [carol]="$COOKIE_carol"
        [expired]="$COOKIE_expired" [tampered]="$COOKIE_tampered" [absent]="")
    : >"$file"
    local routes=(public none)
    for ((route = 0; route < SOAK_ROUTES; route++)); do routes+=("$route"); done
    for route in "${routes[@]}"; do
        case "$route" in
            public) host=public.soak.test ;;
            none) host=unknown.soak.test ;;
            *) host="app$route.soak.test" ;;
        esac
        for kind in alice bob carol expired tampered absent; do
            want="$(expected "$kind" "$route")"
            cookie="${cookies[$kind]}"
            jq -cn --arg url "http://127.0.0.1:$P_AUTHGATE/oauth2/auth?want=$want&kind=$kind" \
                --arg orig "http://$host/page?id=$route" --arg cookie "$cookie" \
                '{method: "GET", url: $url, header: ({"X-Original-URL": [$orig]}
                    + (if $cookie == "" then {} else {"Cookie": [$cookie]} end))}' >>"$file"
        done
    done
}

# check_targets FILE: every target once with curl before the load.
check_targets() {
    local line url orig cookie got want n=0
    while IFS= read -r line; do
        url="$(jq -r .url <<<"$line")"
        orig="$(jq -r '.header["X-Original-URL"][0]' <<<"$line")"
        cookie="$(jq -r '.header.Cookie[0] // ""' <<<"$line")"
        want="${url#*want=}"
        want="${want%%&*}"
        got="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-Original-URL: $orig" \
            ${cookie:+-H "Cookie: $cookie"} "$url")"
        [[ "$got" == "$want" ]] || die "$orig ($url): got $got, want $want"
        n=$((n + 1))
    done < <(awk 'NR % 37 == 1' "$1")
    log "spot-checked $n targets one by one: all as expected"
}

# sample_rss PID FILE: VmRSS (KiB) and open descriptors every second until
# PID or the soak ends.
sample_rss() {
    local pid="$1" file="$2" t=0 fds
    while kill -0 "$pid" 2>/dev/null && [[ ! -e "$WORK/soak.done" ]]; do
        fds="$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
        printf '%s\t%s\t%s\n' "$t" "$(status_kib "$pid" VmRSS)" "$fds" >>"$file"
        sleep 1
        t=$((t + 1))
    done
}

# attack RATE SECONDS OUT [extra vegeta flags]: runs vegeta on core 0.
attack() {
    local rate="$1" seconds="$2" out="$3"
    shift 3
    taskset -c 0 timeout $((seconds + 60)) "$VEGETA_BIN" attack -format=json -targets="$WORK/targets.json" \
        -rate="$rate" -duration="${seconds}s" -timeout=5s -keepalive=true "$@" >"$out"
}

# jq: answers per second from a vegeta JSON report, any status (a 401 or
# 403 is as much an answer as a 200 here; wrong ones are tallied apart).
ANSWERED_RATE='(.requests - ([.status_codes["0"] // 0] | add)) / ((.duration + .wait) / 1e9) | floor'

# tally RESULTS: "total wrong 5xx errors" from vegeta's results.
tally() {
    "$VEGETA_BIN" encode --to json "$1" | jq -r '[.code, .url] | @tsv' | awk -F'\t' '
        { n++; want = $2; sub(/.*want=/, "", want); sub(/&.*/, "", want)
          if ($1 == 0) err++; else if ($1 != want) wrong++
          if ($1 >= 500) five++ }
        END { printf "%d %d %d %d\n", n, wrong + 0, five + 0, err + 0 }'
}

# shellcheck source=bench/report.sh
source "$REPO_ROOT/bench/report.sh"

write_section() {
    local out="$OUT" tmp
    tmp="$(mktemp)"
    # A previous Soak section is dropped.
    without_section Soak "$out" >"$tmp"
    {
        cat "$tmp"
        cat <<MD

## Soak

Produced by \`bench/soak.sh $SOAK_SECONDS\` on $(date -u '+%Y-%m-%d %H:%M UTC'), authgate $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown).
authgate (release, in-memory sessions, $SOAK_ROUTES + 1 routes) on core 1,
vegeta on core 0, loopback. The request set: every route × {alice, bob,
carol, expired, tampered, no cookie} plus a public and an unknown host,
$TARGETS requests each tagged with the status it must get; vegeta cycles
through them.

| | |
| --- | --- |
| maximum rate (closed loop: vegeta, $SOAK_WORKERS workers and connections, ${SOAK_PROBE} s) | $MAX_RATE req/s |
| soak rate ($SOAK_LOAD%, open loop, ≤ $((2 * SOAK_WORKERS)) workers and connections) | $RATE req/s for $SOAK_SECONDS s |
| requests answered | $TOTAL |
| achieved rate | $ACHIEVED req/s |
| wrong decisions (status ≠ expected) | $WRONG |
| 5xx | $FIVE |
| transport errors | $ERRORS |
| latency p50 / p99 / max | $P50 / $P99 / $PMAX µs |
| RSS after ${SOAK_WARMUP} s warm-up: min / max (growth) | $RSS_MIN / $RSS_MAX KiB ($GROWTH%) |
| RSS at start of load / end | $RSS_FIRST / $RSS_LAST KiB |
| authgate's open descriptors, max | $FDS_MAX |
| authgate's CPU (its one core) during the soak | $CPU_SHARE% |
| load average before / after | $LOAD_BEFORE / $LOAD_AFTER |
| verdict | $VERDICT |

The maximum is what the closed loop reached, set by whichever side
saturates first; authgate's CPU share tells which: well below 100% means
the load generator (vegeta, alone on its core of a possibly shared
machine) was the limit and authgate had room left. The latencies include
vegeta's own queueing on its core; for authgate's latency at a rate see
the open-loop table above. The load average is the whole machine's (two
cores): above 2, other work competed with the soak.
MD
    } >"$out"
    rm -f "$tmp"
    log "appended the Soak section to $out"
}

main_soak() {
    install_system_packages
    VEGETA_BIN="$(build_go_tool vegeta github.com/tsenart/vegeta/v12 main.Version)"
    build_rust devidp
    local p
    for p in "$P_IDP" "$P_AUTHGATE"; do port_busy "$p" && die "port $p is in use (set SOAK_PORT_BASE)"; done

    local secret
    secret="$(random_token)"
    head -c 32 /dev/urandom | base64 >"$WORK/cookie_secret"
    printf '%s' "$secret" >"$WORK/idp_client_secret"
    log "starting the development provider on :$P_IDP"
    start devidp 0 "$DEVIDP_BIN" --port "$P_IDP" \
        --client "authgate:$secret:http://127.0.0.1:$P_AUTHGATE/oauth2/callback"
    wait_for_port devidp "$P_IDP" "$PID_devidp"

    # An expired cookie: a real login to a short-lived instance.
    # The login-state cookie lives no longer than a session: 8 s leaves the
    # login through the provider time to finish on a busy machine.
    write_config 8s
    start authgate-short 1 "$AUTHGATE_BIN" serve --config "$WORK/authgate.yaml"
    wait_for_port authgate-short "$P_AUTHGATE" "$PID_authgate_short"
    COOKIE_expired="$(login "http://127.0.0.1:$P_AUTHGATE" "/oauth2/start?rd=/oauth2/userinfo" alice _authgate)"
    [[ -n "$COOKIE_expired" ]] || die "no cookie from the short-lived instance"
    local expired_at=$((SECONDS + 9))
    kill "$PID_authgate_short"
    wait "$PID_authgate_short" 2>/dev/null || true
    for _ in $(seq 50); do port_busy "$P_AUTHGATE" || break; sleep 0.1; done

    write_config 14h
    log "starting authgate on :$P_AUTHGATE (core 1)"
    start authgate 1 "$AUTHGATE_BIN" serve --config "$WORK/authgate.yaml"
    wait_for_port authgate "$P_AUTHGATE" "$PID_authgate"
    local user
    for user in "${USERS[@]}"; do
        printf -v "COOKIE_$user" '%s' \
            "$(login "http://127.0.0.1:$P_AUTHGATE" "/oauth2/start?rd=/oauth2/userinfo" "$user" _authgate)"
        local v="COOKIE_$user"
        [[ -n "${!v}" ]] || die "no session cookie for $user"
    done
    COOKIE_tampered="$(tamper "$COOKIE_alice")"
    # Wait until the short-lived instance's cookie is past its 8 s.
    while ((SECONDS < expired_at)); do sleep 1; done

    write_targets "$WORK/targets.json"
    TARGETS="$(wc -l <"$WORK/targets.json")"
    log "$TARGETS targets"
    check_targets "$WORK/targets.json"

    LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
    log "probing the maximum rate for $SOAK_PROBE s"
    attack 0 "$SOAK_PROBE" "$WORK/probe.bin" -workers="$SOAK_WORKERS" -max-workers="$SOAK_WORKERS" \
        -connections="$SOAK_WORKERS" -max-connections="$SOAK_WORKERS"
    MAX_RATE="$("$VEGETA_BIN" report -type=json "$WORK/probe.bin" | jq "$ANSWERED_RATE")"
    read -r probe_total probe_wrong probe_five probe_err <<<"$(tally "$WORK/probe.bin")"
    log "maximum ≈ $MAX_RATE req/s ($probe_total requests, $probe_wrong wrong, $probe_five 5xx, $probe_err errors)"
    ((MAX_RATE > 0)) || die "the probe measured no throughput"
    RATE=$((MAX_RATE * SOAK_LOAD / 100))

    log "soaking at $RATE req/s for $SOAK_SECONDS s"
    local rss_before
    rss_before="$(status_kib "$PID_authgate" VmRSS)"
    local ticks_before
    ticks_before="$(cpu_ticks "$PID_authgate")"
    sample_rss "$PID_authgate" "$WORK/rss.tsv" &
    local sampler=$!
    attack "$RATE" "$SOAK_SECONDS" "$WORK/soak.bin" -workers="$SOAK_WORKERS" -max-workers=$((2 * SOAK_WORKERS)) \
        -connections=$((2 * SOAK_WORKERS)) -max-connections=$((2 * SOAK_WORKERS))
    touch "$WORK/soak.done"
    wait "$sampler" 2>/dev/null || true
    LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
    # authgate's share of its core: near 100% means authgate was the limit.
    CPU_SHARE="$(awk -v t=$(($(cpu_ticks "$PID_authgate") - ticks_before)) -v hz="$(getconf CLK_TCK)" \
        -v s="$SOAK_SECONDS" 'BEGIN { printf "%.0f", t * 100 / hz / s }')"
    kill -0 "$PID_authgate" 2>/dev/null || die "authgate died during the soak"

    read -r TOTAL WRONG FIVE ERRORS <<<"$(tally "$WORK/soak.bin")"
    local report
    report="$("$VEGETA_BIN" report -type=json "$WORK/soak.bin")"
    ACHIEVED="$(jq "$ANSWERED_RATE" <<<"$report")"
    FDS_MAX="$(awk '$3 > m { m = $3 } END { print m + 0 }' "$WORK/rss.tsv")"
    jq -r '.errors[] | select(test("^[0-9]{3} ") | not) | "vegeta error: " + .' <<<"$report" | head -5 >&2
    P50="$(jq '.latencies["50th"] / 1000 | floor' <<<"$report")"
    P99="$(jq '.latencies["99th"] / 1000 | floor' <<<"$report")"
    PMAX="$(jq '.latencies.max / 1000 | floor' <<<"$report")"
    read -r RSS_MIN RSS_MAX RSS_FIRST RSS_LAST <<<"$(awk -v w="$SOAK_WARMUP" '
        $1 >= w { if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2; if (first == "") first = $2; last = $2 }
        END { print min, max, first, last }' "$WORK/rss.tsv")"
    [[ -n "$RSS_MIN" ]] || { RSS_MIN=$rss_before; RSS_MAX=$rss_before; RSS_FIRST=$rss_before; RSS_LAST=$rss_before; }
    GROWTH="$(awk -v a="$RSS_MIN" -v b="$RSS_MAX" 'BEGIN { printf "%.1f", a ? (b - a) * 100 / a : 0 }')"
    local flat
    flat="$(awk -v g="$GROWTH" 'BEGIN { print (g <= 10) ? 1 : 0 }')"
    local kept=$((ACHIEVED * 100 >= RATE * 90))
    if ((WRONG == 0 && FIVE == 0 && ERRORS == 0 && flat && kept)); then
        VERDICT="**passed**: no wrong decision, no 5xx, no error, RSS flat within 10%, rate kept"
    else
        VERDICT="**failed**:"
        ((WRONG == 0)) || VERDICT+=" wrong decisions;"
        ((FIVE == 0)) || VERDICT+=" 5xx;"
        ((ERRORS == 0)) || VERDICT+=" transport errors;"
        ((flat)) || VERDICT+=" RSS grew more than 10%;"
        ((kept)) || VERDICT+=" achieved rate under 90% of the target;"
        VERDICT="${VERDICT%;}"
    fi
    stop_servers
    write_section
    cat <<TXT
soak: $TOTAL requests at $RATE req/s (max $MAX_RATE, achieved $ACHIEVED) for $SOAK_SECONDS s
      wrong $WRONG, 5xx $FIVE, errors $ERRORS; p50 $P50 µs, p99 $P99 µs
      authgate CPU $CPU_SHARE% of its core, descriptors ≤ $FDS_MAX
      RSS after warm-up $RSS_MIN..$RSS_MAX KiB ($GROWTH%); load $LOAD_BEFORE -> $LOAD_AFTER
      $VERDICT
TXT
    [[ "$VERDICT" == "**passed"* ]]
}

main_soak "$@"
