#!/usr/bin/env bash
# Scale (issue #21): cold caches and memory with a million live sessions.
# Replaces the "Scale" section of BENCHMARKS.md.
#
#   bench/scale.sh
#   SCALE_SESSIONS=20000 bench/scale.sh     # a quick run to try changes
#   SCALE_ONLY_EMBEDDED=1 bench/scale.sh    # part 3 alone, printed, not written
#
# What it does (loopback only, every load run bounded by its duration and
# a timeout, everything started is killed on exit; helpers from
# bench/run.sh):
#   1. builds authgate and examples/sessions_measure.rs (release); starts a
#      throwaway redis-server on loopback with persistence off (these
#      sessions need not survive it) and seeds SCALE_SESSIONS sessions
#      through `Sessions::create_from` (`sessions_measure seed`: distinct
#      users signed in as Dex's LDAP connector leaves them, ID token and
#      claims included), keeping the cookie values;
#   2. one replica (`authgate serve`, the Redis store), then three replicas
#      (separate processes) behind one nginx (bench/nginx.conf's
#      auth_request wiring, `least_conn`); for each, three loads:
#        warm: SCALE_WARM_SET sessions, cycled (cached after the warm-up),
#        cold: every request a session not used before in the run,
#        zipf: sessions drawn from a Zipf law (s = SCALE_ZIPF_S) over all;
#      closed loop (wrk) for decisions/s, then open loop (vegeta) at
#      BENCH_RATE req/s for p50/p99; per load: Redis commands per decision
#      (INFO commandstats), CPU per decision of authgate (all replicas) and
#      of Redis (/proc), each replica's RSS after the load, and every answer
#      checked to be 200;
#   3. the embedded store with SCALE_SESSIONS sessions (seeded with fsync
#      off through eatmydata: the seeding is not measured, and with two
#      fsyncs per session it would take most of an hour): file size,
#      start-up time (exec until the port accepts), RSS after start and
#      after the loads, decisions/s warm and cold;
#   4. memory per cached session: `sessions_measure cache-rss` with the
#      cache bounded at each of SCALE_CACHE_BOUNDS, filled from Redis;
#   5. writes the section, targets met or missed.
#
# Pinning on two cores: authgate (every replica) and nginx on core 1; wrk,
# vegeta and Redis on core 0 (in production Redis is another machine's
# work; its CPU per decision is reported apart).
#
# Environment (all optional): SCALE_SESSIONS (1000000), SCALE_WARM_SET
# (1000), SCALE_ZIPF_S (1.1), SCALE_CACHE_BOUNDS (the default bound, then
# 25000 50000 100000), SCALE_SKIP_EMBEDDED=1, SCALE_ONLY_EMBEDDED=1 (only part 3,
# no Redis: its figures are printed and BENCHMARKS.md is left alone, as the
# section needs the other parts), SCALE_PORT_BASE (18900), and bench/run.sh's
# BENCH_DURATION (default here 8), BENCH_WARMUP (2), BENCH_CONNECTIONS (32),
# BENCH_RATE (1000), BENCH_RATE_SECONDS (10), BENCH_KEEP_WORK, BENCH_OUT.
set -euo pipefail

export BENCH_PORT_BASE="${SCALE_PORT_BASE:-18900}"
export BENCH_DURATION="${BENCH_DURATION:-8}"
# shellcheck source=bench/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"
# shellcheck source=bench/report.sh
source "$REPO_ROOT/bench/report.sh"
die() { printf 'bench/scale.sh: error: %s\n' "$*" >&2; exit 1; }

SESSIONS="${SCALE_SESSIONS:-1000000}"
WARM_SET="${SCALE_WARM_SET:-1000}"
ZIPF_S="${SCALE_ZIPF_S:-1.1}"
CACHE_BOUNDS="${SCALE_CACHE_BOUNDS:-}"
# The goals of issue #21.
# The issue's "64 MB", in MiB (the unit /proc reports): 64e6 / 2^20.
RSS_GOAL_MIB=61.0
P99_GOAL_US=5000
COLD_RATIO_GOAL=0.5

P_REDIS=$((PORT_BASE + 10))
P_REPLICAS=($((PORT_BASE + 11)) $((PORT_BASE + 12)) $((PORT_BASE + 13)))
P_NGINX=$((PORT_BASE + 14))
P_EMBEDDED=$((PORT_BASE + 15))
APP_URL_PATH="/hello.txt"
# A route without identity headers, so without the signed assertion: the
# cold-plain load splits the session layer's cost from the signing's.
PLAIN_HOST="plain.bench.test"

# Nothing listens here: decisions on the seeded sessions need no provider
# (their refresh is due never), so the replicas keep retrying discovery.
P_NO_PROVIDER=$((PORT_BASE + 19))

APT_PACKAGES+=(redis-server redis-tools eatmydata)
REQUIRED_PROGRAMS+=(redis-server redis-cli eatmydata)

STARTED_AT=$SECONDS
progress() { log "[$((SECONDS - STARTED_AT)) s] $*"; }

# --- servers -------------------------------------------------------------------

start_redis() {
    start redis 0 redis-server --bind 127.0.0.1 --port "$P_REDIS" --save '' --appendonly no \
        --dir "$WORK" --protected-mode yes
    wait_for_port redis "$P_REDIS" "$PID_redis"
}

redis() { redis-cli -p "$P_REDIS" "$@"; }

# redis_calls: commands Redis has run so far, its own INFO calls left out
# (0 when no Redis runs: SCALE_ONLY_EMBEDDED).
redis_calls() {
    [[ -n "${PID_redis:-}" ]] || { echo 0; return; }
    redis info commandstats | tr -d '\r' |
        awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" { n += $3 } END { print n + 0 }'
}

# write_replica_config NAME PORT STORE: $WORK/NAME.yaml (its gRPC
# listener on PORT + 10, unused).
write_replica_config() {
    cat >"$WORK/$1.yaml" <<EOF
authenticate_service_url: http://127.0.0.1:$2
idp_provider: oidc
idp_provider_url: http://127.0.0.1:$P_NO_PROVIDER/dex
idp_client_id: authgate
idp_client_secret_file: $WORK/idp_client_secret
cookie_secret_file: $WORK/cookie_secret
cookie_name: _authgate
cookie_secure: false
address: 127.0.0.1:$2
grpc_address: 127.0.0.1:$(($2 + 10))
session_store: $3
refresh_interval: 1h
log_format: json
log_level: error
policy:
  - from: http://$APP_HOST
    allowed_groups: [devops]
    pass_identity_headers: true
  - from: http://$PLAIN_HOST
    allowed_groups: [devops]
    pass_identity_headers: false
EOF
    "$AUTHGATE_BIN" check-config --config "$WORK/$1.yaml" >/dev/null || die "authgate rejects $WORK/$1.yaml"
}

# start_replica NAME PORT STORE: sets STARTUP_MS (exec until the port accepts).
start_replica() {
    write_replica_config "$1" "$2" "$3"
    local t0 t1
    t0="$(date +%s%N)"
    start "$1" 1 "$AUTHGATE_BIN" serve --config "$WORK/$1.yaml"
    local pid="PID_$1"
    for _ in $(seq 6000); do
        port_busy "$2" && break
        kill -0 "${!pid}" 2>/dev/null || { cat "$WORK/$1.log" >&2; die "$1 exited during start"; }
        sleep 0.01
    done
    port_busy "$2" || die "$1 does not listen on :$2 after 60 s"
    t1="$(date +%s%N)"
    STARTUP_MS=$(((t1 - t0) / 1000000))
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}

start_nginx() {
    mkdir -p "$WORK/nginx/www"
    printf 'hello\n' >"$WORK/nginx/www/hello.txt"
    local servers="least_conn;" p
    for p in "${P_REPLICAS[@]}"; do servers+=" server 127.0.0.1:$p;"; done
    # bench/nginx.conf's authgate server block; its other two blocks get
    # ports nothing listens on (they are not loaded).
    sed -e "s|{{DIR}}|$WORK/nginx|g" \
        -e "s|server {{AUTHGATE}};|$servers|" \
        -e "s|{{CEILING}}|127.0.0.1:$P_NO_PROVIDER|g" \
        -e "s|{{OAUTH2_PROXY}}|127.0.0.1:$P_NO_PROVIDER|g" \
        -e "s|{{LISTEN_AUTHGATE}}|127.0.0.1:$P_NGINX|g" \
        -e "s|{{LISTEN_CEILING}}|127.0.0.1:$((PORT_BASE + 16))|g" \
        -e "s|{{LISTEN_OAUTH2_PROXY}}|127.0.0.1:$((PORT_BASE + 17))|g" \
        "$REPO_ROOT/bench/nginx.conf" >"$WORK/nginx/nginx.conf"
    grep -q least_conn "$WORK/nginx/nginx.conf" || die "bench/nginx.conf has no 'server {{AUTHGATE}};' line to replace"
    start nginx 1 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/startup.log" \
        -g 'daemon off; master_process off;'
    wait_for_port nginx "$P_NGINX" "$PID_nginx"
}

# --- sessions ------------------------------------------------------------------

# seed STORE OUT: SESSIONS sessions into STORE, cookie values to OUT; sets
# SEED_SECONDS.
seed() {
    local t0=$SECONDS out
    out="$(timeout 3600 "${SEED_WRAPPER[@]}" "$MEASURE_BIN" seed "$1" "$WORK/cookie_secret" "$SESSIONS" "$2")" ||
        die "seeding $1 failed"
    log "$out"
    SEED_SECONDS=$((SECONDS - t0))
    [[ "$(wc -l <"$2")" == "$SESSIONS" ]] || die "$2 does not hold $SESSIONS cookie values"
}

# zipf_file OUT COUNT: COUNT cookie values of $COOKIES drawn from a Zipf law
# (rank r, line r of the file, has weight r^-s), one per line.
zipf_file() {
    awk -v n="$SESSIONS" -v s="$ZIPF_S" -v k="$2" -v seed=21 '
        BEGIN {
            srand(seed)
            for (r = 1; r <= n; r++) { total += r ^ (-s); cdf[r] = total }
            for (j = 1; j <= k; j++) {
                u = rand() * total; lo = 1; hi = n
                while (lo < hi) { mid = int((lo + hi) / 2); if (cdf[mid] < u) lo = mid + 1; else hi = mid }
                pick[j] = lo; need[lo] = 1
            }
            delete cdf
        }
        NR in need { value[NR] = $0 }
        END { for (j = 1; j <= k; j++) print value[pick[j]] }' "$COOKIES" >"$1"
}

# zipf_hit_ratio K: the share of Zipf draws that land on the K most
# frequent sessions, the best any cache of K entries can do.
zipf_hit_ratio() {
    awk -v n="$SESSIONS" -v s="$ZIPF_S" -v k="$1" 'BEGIN {
        for (r = 1; r <= n; r++) { t += r ^ (-s); if (r <= k) h += r ^ (-s) }
        printf "%.2f", h / t }'
}

# --- loads ---------------------------------------------------------------------

# Where the cold walk is in $COOKIES: every load starts past the sessions
# any earlier load used, so no cold request finds its session cached.
COLD_NEXT=0
ZIPF_NEXT=0

# window MODE: sets W_FILE, W_FIRST and W_COUNT to the cookie values the
# next load of MODE walks: at most RESERVE of them (the most it can use).
window() {
    local reserve="${RESERVE:-400000}"
    case "$1" in
        warm) W_FILE="$COOKIES" W_FIRST=0 W_COUNT="$WARM_SET" ;;
        cold | cold-plain)
            if ((COLD_NEXT + 1000 >= SESSIONS)); then
                log "the cold walk wrapped around (SCALE_SESSIONS is small for this run)"
                COLD_NEXT=0
                COLD_WRAPPED=1
            fi
            W_FILE="$COOKIES" W_FIRST="$COLD_NEXT" W_COUNT="$reserve" ;;
        zipf)
            ((ZIPF_NEXT + 1000 < ZIPF_COUNT)) || ZIPF_NEXT=0
            W_FILE="$ZIPF" W_FIRST="$ZIPF_NEXT" W_COUNT="$reserve" ;;
    esac
}

# advance MODE USED: moves MODE's cursor past USED values.
advance() {
    case "$1" in
        cold | cold-plain) COLD_NEXT=$((COLD_NEXT + $2 + CONNECTIONS)) ;;
        zipf) ZIPF_NEXT=$((ZIPF_NEXT + $2 + CONNECTIONS)) ;;
    esac
}

cpu_sum() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
# redis_cpu: Redis's CPU ticks so far (0 when no Redis runs).
redis_cpu() { if [[ -n "${PID_redis:-}" ]]; then cpu_ticks "$PID_redis"; else echo 0; fi; }

# rss_list KIND PID...: "a / b / c" MiB of VmRSS (or another status field).
rss_list() {
    local field="$1" p out=""
    shift
    for p in "$@"; do out+="${out:+ / }$(mib "$(status_kib "$p" "$field")")"; done
    printf '%s' "$out"
}

# wrk_walk URL FILE FIRST COUNT SECONDS HEADER...: prints wrk's RESULT fields.
wrk_walk() {
    local url="$1" file="$2" first="$3" count="$4" secs="$5"
    shift 5
    local args=() h
    for h in "$@"; do args+=(-H "$h"); done
    local out
    out="$(taskset -c 0 timeout $((secs + 60)) wrk -t1 -c"$CONNECTIONS" --timeout 5s -d"${secs}s" \
        "${args[@]}" -s "$REPO_ROOT/bench/walk.lua" "$url" -- "$file" "$first" "$count")" ||
        die "wrk failed on $url"
    grep '^RESULT ' <<<"$out" | cut -d' ' -f2- || die "wrk printed no result: $out"
}

# closed_loop SETUP MODE URL "PIDS" HEADER...: warm-up then the measured wrk
# run; appends a row to $WORK/closed.tsv: setup mode req/s p50 p99 p99.9
# ag_cpu_us redis_cpu_us redis_ops wrong errors rss_after.
closed_loop() {
    local setup="$1" mode="$2" url="$3" pids="$4"
    shift 4
    local r
    window "$mode"
    r="$(wrk_walk "$url" "$W_FILE" "$W_FIRST" "$W_COUNT" "$WARMUP" "$@")"
    advance "$mode" "${r%% *}"
    # shellcheck disable=SC2086
    local cpu0 rcpu0 ops0
    cpu0="$(cpu_sum $pids)"; rcpu0="$(redis_cpu)"; ops0="$(redis_calls)"
    window "$mode"
    r="$(wrk_walk "$url" "$W_FILE" "$W_FIRST" "$W_COUNT" "$DURATION" "$@")"
    # shellcheck disable=SC2086
    local cpu1 rcpu1 ops1
    cpu1="$(cpu_sum $pids)"; rcpu1="$(redis_cpu)"; ops1="$(redis_calls)"
    # shellcheck disable=SC2086
    set -- $r
    local requests="$1" rps="$3" p50="$4" p99="$5" p999="$6" wrong="$7" errors="$8"
    advance "$mode" "$requests"
    local per="awk -v n=$requests -v k=$CLK_TCK"
    # shellcheck disable=SC2086
    printf '%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$setup" "$mode" "$rps" "$p50" "$p99" "$p999" \
        "$($per -v t=$((cpu1 - cpu0)) 'BEGIN { printf "%.1f", t / k * 1e6 / n }')" \
        "$($per -v t=$((rcpu1 - rcpu0)) 'BEGIN { printf "%.1f", t / k * 1e6 / n }')" \
        "$(awk -v n="$requests" -v o=$((ops1 - ops0)) 'BEGIN { printf "%.3f", o / n }')" \
        "$wrong" "$errors" "$(rss_list VmRSS $pids)" >>"$WORK/closed.tsv"
    progress "$(tail -n1 "$WORK/closed.tsv" | awk -F'\t' '{ printf "%s %s closed: %s req/s, p50 %s µs, p99 %s µs, authgate %s µs CPU/decision, Redis %s µs, %s Redis commands/decision, %s wrong, %s errors, RSS %s MiB", $1, $2, $3, $4, $5, $7, $8, $9, $10, $11, $12 }')"
    [[ "$wrong" == 0 && "$errors" == 0 ]] || die "$setup $mode: $wrong answers other than 200, $errors socket errors"
}

# open_loop SETUP MODE URL HEADER...: vegeta at RATE req/s; appends setup mode
# p50 p99 max success wrong to $WORK/open.tsv.
open_loop() {
    local setup="$1" mode="$2" url="$3"
    shift 3
    local n=$((RATE * RATE_SECONDS)) targets="$WORK/targets"
    RESERVE=$n window "$mode"
    # Headers joined with \n escapes, which awk -v turns into newlines.
    awk -v a="$W_FIRST" -v k="$W_COUNT" -v url="$url" -v h="$(printf '%s\\n' "$@")" '
        NR > a && NR <= a + k { printf "GET %s\n%sCookie: _authgate=%s\n\n", url, h, $0 }' "$W_FILE" >"$targets"
    advance "$mode" "$n"
    taskset -c 0 timeout $((RATE_SECONDS + 60)) "$VEGETA_BIN" attack -targets="$targets" -rate="$RATE" \
        -duration="${RATE_SECONDS}s" >"$WORK/open.bin" || die "vegeta failed"
    "$VEGETA_BIN" report -type=json "$WORK/open.bin" | jq -r --arg s "$setup" --arg m "$mode" \
        '[$s, $m, (.latencies["50th"]/1000|floor), (.latencies["99th"]/1000|floor), (.latencies.max/1000|floor),
          .success, (.requests - (.status_codes["200"] // 0))] | @tsv' >>"$WORK/open.tsv"
    progress "$(tail -n1 "$WORK/open.tsv" | awk -F'\t' '{ printf "%s %s open loop: p50 %s µs, p99 %s µs, max %s µs, %s wrong", $1, $2, $3, $4, $5, $7 }')"
}

# check_one URL HEADER...: one cold request, before the load.
check_one() {
    local url="$1" got
    shift
    local args=() h
    for h in "$@"; do args+=(-H "$h"); done
    got="$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "${args[@]}" \
        -H "Cookie: _authgate=$(sed -n "$((SESSIONS / 2))p" "$COOKIES")" "$url")"
    [[ "$got" == 200 ]] || die "$url answered $got to a seeded session, not 200"
}

# loads SETUP URL "PIDS" PLAIN_HEADER HEADER...: every load, closed then
# open loop; PLAIN_HEADER names the route without identity headers.
loads() {
    local setup="$1" url="$2" pids="$3" plain="$4"
    shift 4
    check_one "$url" "$@"
    local mode
    for mode in warm cold zipf; do closed_loop "$setup" "$mode" "$url" "$pids" "$@"; done
    closed_loop "$setup" cold-plain "$url" "$pids" "$plain" "${@:2}"
    for mode in warm cold zipf; do open_loop "$setup" "$mode" "$url" "$@"; done
}

# --- the parts -------------------------------------------------------------------

redis_part() {
    start_redis
    progress "seeding $SESSIONS sessions into Redis"
    SEED_WRAPPER=()
    seed "redis://127.0.0.1:$P_REDIS" "$WORK/cookies.txt"
    REDIS_SEED_SECONDS=$SEED_SECONDS
    REDIS_KEYS="$(redis dbsize)"
    REDIS_MEMORY="$(redis info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { printf "%.0f", $2 / 1048576 }')"
    progress "seeded in $REDIS_SEED_SECONDS s: $REDIS_KEYS keys, Redis uses $REDIS_MEMORY MiB"
    COOKIES="$WORK/cookies.txt"
    ZIPF="$WORK/zipf.txt"
    ZIPF_COUNT="${SCALE_ZIPF_DRAWS:-600000}"
    zipf_file "$ZIPF" "$ZIPF_COUNT"
    progress "drew $ZIPF_COUNT Zipf sessions (s = $ZIPF_S)"

    local store="redis://127.0.0.1:$P_REDIS"
    start_replica r1 "${P_REPLICAS[0]}" "$store"
    RSS_START_REDIS="$(status_kib "$PID_r1" VmRSS)"
    loads one "http://127.0.0.1:${P_REPLICAS[0]}/oauth2/auth" "$PID_r1" \
        "X-Original-URL: http://$PLAIN_HOST$APP_URL_PATH" \
        "X-Original-URL: http://$APP_HOST$APP_URL_PATH" "X-Original-Method: GET"
    HWM_ONE="$(rss_list VmHWM "$PID_r1")"
    stop_pid "$PID_r1"

    local i
    for i in 1 2 3; do start_replica "r$i" "${P_REPLICAS[$((i - 1))]}" "$store"; done
    start_nginx
    loads three "http://127.0.0.1:$P_NGINX$APP_URL_PATH" "$PID_r1 $PID_r2 $PID_r3" "Host: $PLAIN_HOST" \
        "Host: $APP_HOST" "X-Forwarded-For: 127.0.0.1"
    HWM_THREE="$(rss_list VmHWM "$PID_r1" "$PID_r2" "$PID_r3")"
    stop_pid "$PID_nginx"
    for i in 1 2 3; do local pid="PID_r$i"; stop_pid "${!pid}"; done

    : >"$WORK/cache.tsv"
    local bound out
    for bound in $CACHE_BOUNDS; do
        ((bound < SESSIONS)) || continue
        out="$(taskset -c 1 timeout 600 "$MEASURE_BIN" cache-rss "$store" "$WORK/cookie_secret" "$COOKIES" "$bound")" ||
            die "cache-rss $bound failed"
        progress "cache bound $bound: $out"
        awk -v b="$bound" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
            END { printf "%s\t%s\t%s\t%s\n", b, v["rss_anon_before_kib"], v["rss_anon_after_kib"], v["bytes_per_session"] }' \
            <<<"$out" >>"$WORK/cache.tsv"
    done
}

embedded_part() {
    mkdir -p "$WORK/embedded"
    local file="$WORK/embedded/sessions.redb"
    progress "seeding $SESSIONS sessions into the embedded store (fsync off while seeding)"
    SEED_WRAPPER=(eatmydata)
    seed "embedded:$file" "$WORK/cookies-embedded.txt"
    EMB_SEED_SECONDS=$SEED_SECONDS
    EMB_FILE_MIB="$(mib $(($(stat -c %s "$file") / 1024)))"
    progress "seeded in $EMB_SEED_SECONDS s; the file is $EMB_FILE_MIB MiB"
    # Cold start: the file's pages leave the OS cache first when we may.
    sync
    if [[ -w /proc/sys/vm/drop_caches ]]; then
        echo 1 >/proc/sys/vm/drop_caches
        EMB_CACHE_NOTE="the OS page cache dropped before the start"
    else
        EMB_CACHE_NOTE="the file in the OS page cache (not root: caches not dropped)"
    fi
    start_replica emb "$P_EMBEDDED" "embedded:$file"
    EMB_STARTUP_MS=$STARTUP_MS
    sleep 1
    EMB_RSS_START="$(rss_list VmRSS "$PID_emb")"
    local saved_cookies="${COOKIES:-}" saved_next=$COLD_NEXT
    COOKIES="$WORK/cookies-embedded.txt"
    COLD_NEXT=0
    local url="http://127.0.0.1:$P_EMBEDDED/oauth2/auth"
    local headers=("X-Original-URL: http://$APP_HOST$APP_URL_PATH" "X-Original-Method: GET")
    check_one "$url" "${headers[@]}"
    closed_loop embedded warm "$url" "$PID_emb" "${headers[@]}"
    closed_loop embedded cold "$url" "$PID_emb" "${headers[@]}"
    open_loop embedded cold "$url" "${headers[@]}"
    EMB_RSS_AFTER="$(rss_list VmRSS "$PID_emb")"
    EMB_HWM="$(rss_list VmHWM "$PID_emb")"
    EMB_THREADS="$(status_kib "$PID_emb" Threads)"
    stop_pid "$PID_emb"
    COOKIES="$saved_cookies"
    COLD_NEXT=$saved_next
}

# --- report ----------------------------------------------------------------------

col() { awk -F'\t' -v s="$1" -v m="$2" -v c="$3" '$1 == s && $2 == m { print $c }' "$4"; }

write_section() {
    local tmp
    tmp="$(mktemp)"
    without_section Scale "$OUT" >"$tmp"
    local setup mode
    {
        cat "$tmp"
        cat <<MD

## Scale

Produced by \`bench/scale.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), authgate $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$REPO_ROOT" && git diff --quiet HEAD -- . ':(exclude)BENCHMARKS.md' 2>/dev/null || echo ' (with uncommitted changes)'), in $((SECONDS - STARTED_AT)) s.
$SESSIONS live sessions, each as a Dex login leaves it (distinct users,
five groups, every ID-token claim, a Dex-sized refresh token and ID
token), made through \`Sessions::create_from\` by \`sessions_measure
seed\`. Redis: Debian's \`redis-server\` on loopback, persistence off;
seeded in $REDIS_SEED_SECONDS s, $REDIS_KEYS keys, $REDIS_MEMORY MiB used. authgate
(release, session cache at its default bound) and nginx on core 1; wrk,
vegeta and Redis on core 0. Load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after
(two cores: above 2, other work competed and every figure is low).

Loads: **warm** cycles $WARM_SET sessions (cached after the warm-up);
**cold** gives every request a session no earlier request of the run
used; **cold-plain** is cold on a route with \`pass_identity_headers:
false\`, so without the ES256 assertion that a new session's first
request to a route otherwise signs$([[ -n "${COLD_WRAPPED:-}" ]] && printf ' (it wrapped around: SCALE_SESSIONS was too small for the run)'); **zipf** draws sessions from a Zipf law, s = $ZIPF_S,
over all $SESSIONS (a cache of $(printf '%s' "$CACHE_DEFAULT") sessions can at best
hit $(zipf_hit_ratio "$CACHE_DEFAULT") of them). "one": one replica, asked directly; "three":
three replicas (separate processes) behind one nginx (\`least_conn\`,
bench/nginx.conf's \`auth_request\` wiring), the site's request through
nginx. Every answer is checked to be 200 (a 302 to the login counts as
wrong).

| target | measured | goal | |
| --- | ---: | ---: | --- |
MD
        local s warm cold ratio
        for s in one three; do
            warm="$(col "$s" warm 3 "$WORK/closed.tsv")"; cold="$(col "$s" cold 3 "$WORK/closed.tsv")"
            ratio="$(ratio "$cold" "$warm")"
            printf '| %s: cold / warm decisions/s | %s (%s / %s) | ≥ %s | %s |\n' "$s" "$ratio" "$cold" "$warm" \
                "$COLD_RATIO_GOAL" "$(verdict "$ratio" ">=" "$COLD_RATIO_GOAL")"
            for mode in cold zipf; do
                local p99
                p99="$(col "$s" "$mode" 4 "$WORK/open.tsv")"
                printf '| %s: %s p99 at %s req/s | %s µs | ≤ %s µs | %s |\n' "$s" "$mode" "$RATE" "$p99" \
                    "$P99_GOAL_US" "$(verdict "$p99" "<=" "$P99_GOAL_US")"
            done
        done
        local worst
        worst="$(tr '/' '\n' <<<"$HWM_ONE / $HWM_THREE" | sort -g | tail -n1 | tr -d ' ')"
        printf '| peak RSS per replica (VmHWM), Redis, default cache bound | %s MiB | ≤ %s MiB (64 MB) | %s |\n' \
            "$worst" "$RSS_GOAL_MIB" "$(verdict "$worst" "<=" "$RSS_GOAL_MIB")"
        if [[ -n "${EMB_HWM:-}" ]]; then
            printf '| peak RSS, embedded store, %s sessions | %s MiB | ≤ %s MiB (64 MB) | %s |\n' \
                "$SESSIONS" "$EMB_HWM" "$RSS_GOAL_MIB" "$(verdict "$EMB_HWM" "<=" "$RSS_GOAL_MIB")"
            warm="$(col embedded warm 3 "$WORK/closed.tsv")"; cold="$(col embedded cold 3 "$WORK/closed.tsv")"
            ratio="$(ratio "$cold" "$warm")"
            printf '| embedded: cold / warm decisions/s | %s (%s / %s) | ≥ %s | %s |\n' "$ratio" "$cold" "$warm" \
                "$COLD_RATIO_GOAL" "$(verdict "$ratio" ">=" "$COLD_RATIO_GOAL")"
            local p99
            p99="$(col embedded cold 4 "$WORK/open.tsv")"
            printf '| embedded: cold p99 at %s req/s | %s µs | ≤ %s µs | %s |\n' "$RATE" "$p99" \
                "$P99_GOAL_US" "$(verdict "$p99" "<=" "$P99_GOAL_US")"
        fi
        cat <<MD

**Closed loop** (wrk, one thread, $CONNECTIONS connections, ${WARMUP} s
warm-up then ${DURATION} s measured; one run per row). CPU per decision is
user + system time from /proc over the measured run divided by the
decisions: authgate's summed over its replicas (nginx's not included), and
Redis's. Redis commands per decision: the \`INFO commandstats\` calls
delta over the decisions (a miss is one \`GET\`). RSS: each replica's
VmRSS after the load.

| setup | load | decisions/s | p50 µs | p99 µs | p99.9 µs | authgate CPU µs/decision | Redis CPU µs/decision | Redis commands/decision | wrong | errors | RSS after, MiB |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
$(awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 }' "$WORK/closed.tsv")

**Open loop** (vegeta at $RATE req/s for ${RATE_SECONDS} s; the cold load's
sessions are again ones no earlier request used):

| setup | load | p50 µs | p99 µs | max µs | success | wrong |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
$(awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }' "$WORK/open.tsv")

The signed assertion's share of a cold decision (one replica): $(awk -F'\t' '$1 == "one" && $2 == "cold" { c = $7 } $1 == "one" && $2 == "cold-plain" { p = $7 }
    END { printf "%.1f of %.1f µs of authgate CPU", c - p, c }' "$WORK/closed.tsv"); it is cached per session, route and host
(as many as sessions are cached, $CACHE_DEFAULT by default), so only a session's first request to a route
signs.

**Memory, Redis store.** One replica: VmRSS $(mib "$RSS_START_REDIS") MiB after start, peak
(VmHWM) $HWM_ONE MiB over its loads; three replicas: peaks $HWM_THREE MiB.
MD
        if [[ -n "${EMB_HWM:-}" ]]; then
            cat <<MD

**Embedded store** ($SESSIONS sessions; seeded in $EMB_SEED_SECONDS s with
fsync off, which the seeding only is): file $EMB_FILE_MIB MiB; start-up
(exec until the port accepts, $EMB_CACHE_NOTE) $EMB_STARTUP_MS ms;
VmRSS $EMB_RSS_START MiB after start, $EMB_RSS_AFTER MiB after the loads,
peak $EMB_HWM MiB; $EMB_THREADS threads after the loads.
MD
        fi
        cat <<MD

**Memory per cached session** (\`sessions_measure cache-rss\`: the
session cache and the cookie memo bounded at N, filled with N sessions
loaded from Redis, anonymous RSS before and after; one process per bound,
two runtime threads). The best Zipf (s = $ZIPF_S) hit ratio is the share of
draws landing on the N most frequent of $SESSIONS sessions.

| bound N | anonymous RSS before, MiB | after, MiB | bytes per cached session | best Zipf hit ratio |
| ---: | ---: | ---: | ---: | ---: |
$(while IFS=$'\t' read -r b before after per; do
    printf '| %s | %s | %s | %s | %s |\n' "$b" "$(mib "$before")" "$(mib "$after")" "$per" "$(zipf_hit_ratio "$b")"
done <"$WORK/cache.tsv")
MD
    } >"$OUT"
    rm -f "$tmp"
    log "wrote the Scale section of $OUT"
}

main_scale() {
    install_system_packages
    VEGETA_BIN="$(build_go_tool vegeta github.com/tsenart/vegeta/v12 main.Version)"
    build_rust sessions_measure
    MEASURE_BIN="$WORK/bin/sessions_measure"
    CACHE_DEFAULT="$(sed -n 's/^pub const DEFAULT_CACHE_ENTRIES: u64 = \([0-9_]*\);/\1/p' \
        "$REPO_ROOT/src/session/manager.rs" | tr -d _)"
    [[ -n "$CACHE_DEFAULT" ]] || die "cannot read DEFAULT_CACHE_ENTRIES from src/session/manager.rs"
    CACHE_BOUNDS="${CACHE_BOUNDS:-$CACHE_DEFAULT 25000 50000 100000}"
    local p
    for p in "$P_REDIS" "${P_REPLICAS[@]}" "$P_NGINX" "$P_EMBEDDED" "$P_NO_PROVIDER" \
        $((P_REPLICAS[0] + 10)) $((P_REPLICAS[1] + 10)) $((P_REPLICAS[2] + 10)) $((P_EMBEDDED + 10)); do
        port_busy "$p" && die "port $p is in use (set SCALE_PORT_BASE)"
    done
    head -c 32 /dev/urandom | base64 >"$WORK/cookie_secret"
    random_token >"$WORK/idp_client_secret"
    LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
    : >"$WORK/closed.tsv"
    : >"$WORK/open.tsv"
    if [[ "${SCALE_ONLY_EMBEDDED:-}" == 1 ]]; then
        embedded_part
        stop_servers
        embedded_summary
        return
    fi
    redis_part
    [[ "${SCALE_SKIP_EMBEDDED:-}" == 1 ]] || embedded_part
    stop_servers
    write_section
}

# embedded_summary: part 3's figures on stdout (SCALE_ONLY_EMBEDDED).
embedded_summary() {
    printf 'embedded store, %s sessions: file %s MiB, seeded in %s s (fsync off)\n' \
        "$SESSIONS" "$EMB_FILE_MIB" "$EMB_SEED_SECONDS"
    printf 'start-up %s ms (%s)\n' "$EMB_STARTUP_MS" "$EMB_CACHE_NOTE"
    printf 'VmRSS %s MiB after start, %s MiB after the loads, peak (VmHWM) %s MiB (goal <= %s); %s threads\n' \
        "$EMB_RSS_START" "$EMB_RSS_AFTER" "$EMB_HWM" "$RSS_GOAL_MIB" "$EMB_THREADS"
    printf 'closed loop: load decisions/s p50 p99 p99.9 (µs) authgate-CPU-µs/decision RSS-after\n'
    awk -F'\t' '{ print "  " $2, $3, $4, $5, $6, $7, $12 }' "$WORK/closed.tsv"
    printf 'open loop at %s req/s: load p50 p99 max (µs) wrong\n' "$RATE"
    awk -F'\t' '{ print "  " $2, $3, $4, $5, $7 }' "$WORK/open.tsv"
}

main_scale "$@"
