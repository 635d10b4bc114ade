#!/usr/bin/env bash
# The benchmark: authgate vs oauth2-proxy vs the bare ceiling, direct and
# behind nginx, in one run on one machine; writes BENCHMARKS.md.
#
#   bench/run.sh
#   bench/run.sh grpc   only the gRPC part (bench/grpc.sh)
#
# What it does (every step bounded in time, loopback only, everything it
# starts is killed on exit):
#   1. installs wrk and nginx (Debian), builds the pinned oauth2-proxy and
#      vegeta from bench/*/go.mod (cached), builds authgate, the development
#      provider (examples/devidp.rs) and the ceiling (examples/ceiling.rs)
#      in release;
#   2. starts the provider, authgate, oauth2-proxy, the ceiling and one nginx
#      with a server block per auth target; signs in to authgate and to
#      oauth2-proxy through the provider's login form to get real cookies;
#   3. runs wrk (closed loop: fixed connections, fixed duration) on every
#      case, BENCH_ROUNDS rounds with the servers' order rotated, and keeps
#      the median round; then vegeta at a fixed 1,000 req/s (open loop);
#   4. reads CPU seconds and peak RSS of each server from /proc;
#   5. runs examples/grpc_load.rs against authgate's gRPC Check and the
#      bare tonic handler (examples/bare_authz.rs; bench/grpc.sh);
#   6. runs the criterion benches (decision, policy) and writes the report.
#
# Environment (all optional):
#   BENCH_DURATION     seconds per wrk case (default 6)
#   BENCH_WARMUP       seconds of unmeasured load before each case (default 2)
#   BENCH_CONNECTIONS  wrk connections (default 32)
#   BENCH_ROUNDS       rounds of the wrk cases; the median is reported (default 5)
#   BENCH_RATE         open-loop rate in req/s (default 1000)
#   BENCH_RATE_SECONDS seconds per open-loop case (default 10)
#   BENCH_ROUTES       policy size of authgate; the request hits the last route (default 1000)
#   BENCH_PORT_BASE    first of ten loopback ports used (default 18400)
#   BENCH_SKIP_CRITERION=1  leave out the criterion benches
#   BENCH_KEEP_WORK=1  keep the temporary directory (server logs, configs)
#   BENCH_OUT          the report (default BENCHMARKS.md at the repository root)
#   AUTHGATE_E2E_CACHE where the Go tools are cached (default ~/.cache/authgate-e2e)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:$HOME/.cargo/bin:/usr/local/go/bin:/usr/sbin"
CACHE_DIR="${AUTHGATE_E2E_CACHE:-$HOME/.cache/authgate-e2e}"
DURATION="${BENCH_DURATION:-6}"
WARMUP="${BENCH_WARMUP:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
ROUNDS="${BENCH_ROUNDS:-5}"
RATE="${BENCH_RATE:-1000}"
RATE_SECONDS="${BENCH_RATE_SECONDS:-10}"
ROUTES="${BENCH_ROUTES:-1000}"
PORT_BASE="${BENCH_PORT_BASE:-18400}"
OUT="${BENCH_OUT:-$REPO_ROOT/BENCHMARKS.md}"

APT_PACKAGES=(wrk nginx curl jq util-linux procps binutils)
REQUIRED_PROGRAMS=(wrk nginx curl jq taskset nm go cargo)

# The protected site every case asks about (authgate's policy routes it).
APP_HOST="app.bench.test"
DENY_HOST="admin.bench.test"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/run.sh: error: %s\n' "$*" >&2; exit 1; }
have_program() { command -v "$1" >/dev/null 2>&1; }

# --- processes ---------------------------------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/authgate-bench.XXXXXX")"
PIDS=()
# Stops every process started here: SIGTERM, then SIGKILL after 5 s.
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_servers
    if [[ "${BENCH_KEEP_WORK:-}" == 1 ]]; then
        log "kept the logs and configs in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CPUS CMD...: runs CMD pinned to CPUS, logs to $WORK/NAME.log.
start() {
    local name="$1" cpus="$2"
    shift 2
    taskset -c "$cpus" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    eval "PID_${name//-/_}=$!"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_devidp_for_authgate: the development provider on $P_IDP with one
# client, authgate, and authgate's configuration for it (the callgrind
# scripts; run.sh's own run registers oauth2-proxy too).
start_devidp_for_authgate() {
    local secret
    secret="$(random_token)"
    start devidp 0 "$DEVIDP_BIN" --port "$P_IDP" \
        --client "authgate:$secret:http://127.0.0.1:$P_AUTHGATE/oauth2/callback"
    wait_for_port devidp "$P_IDP" "$PID_devidp"
    write_authgate_config "$secret"
}

# wait_ready PORT: authgate's /readyz answers 200 (discovery done), within
# 120 s: long enough for a server under callgrind, about fifty times slower
# than native (bench/symbol-order.sh, bench/grpc-callgrind.sh).
wait_ready() {
    for _ in $(seq 600); do
        curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$1/readyz" && return 0
        sleep 0.2
    done
    die "authgate is not ready on :$1 after 120 s"
}

wait_for_port() {
    local name="$1" port="$2" pid="$3"
    for _ in $(seq 300); do
        port_busy "$port" && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name exited during start"; }
        sleep 0.1
    done
    cat "$WORK/$name.log" >&2
    die "$name does not listen on 127.0.0.1:$port after 30 s"
}

# --- installation ----------------------------------------------------------------

install_system_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        have_program apt-get || die "apt-get not found; install by hand: ${missing[*]}"
        [[ "$(id -u)" == 0 ]] || die "not root; install by hand: sudo apt-get install ${missing[*]}"
        log "installing: ${missing[*]}"
        apt-get update -qq || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            >/dev/null || die "apt-get install failed for: ${missing[*]}"
    fi
    local prog
    for prog in "${REQUIRED_PROGRAMS[@]}"; do
        have_program "$prog" || die "$prog not found"
    done
}

# build_go_tool NAME PACKAGE VERSION_VAR: builds PACKAGE from
# bench/NAME/go.mod into the cache (keyed by the pinned version and a hash of
# go.mod + go.sum), as upstream's release does: no cgo, the version stamped
# into VERSION_VAR.
build_go_tool() {
    local name="$1" package="$2" version_var="$3" dir="$REPO_ROOT/bench/$1" version key bin
    version="$(awk -v m="${package%%/cmd/*}" '$1 == m { print $2 }' "$dir/go.mod")"
    [[ -n "$version" ]] || die "cannot read the $name pin from bench/$name/go.mod"
    key="$version-$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-12)"
    bin="$CACHE_DIR/$name-$key/$name"
    if [[ ! -x "$bin" ]]; then
        log "building $name $version (first run only)"
        mkdir -p "$(dirname "$bin")"
        (cd "$dir" && CGO_ENABLED=0 timeout 1200 go build -trimpath \
            -ldflags "-X $version_var=$version" -o "$bin.tmp" "$package") \
            || die "building $name $version failed (see the Go output above)"
        mv "$bin.tmp" "$bin"
    fi
    printf '%s\n' "$bin"
}

# build_rust EXAMPLE...: authgate and the named examples, in release.
build_rust() {
    local examples=() e
    for e in "$@"; do examples+=(--example "$e"); done
    # authgate alone first: built with the examples, Cargo would unify their
    # dev-dependencies' features into it, and it would not be the binary the
    # README builds (nor match bench/symbol-order.txt, whose names carry
    # hashes of exactly that build).
    log "cargo build --release --bin authgate (code layout opted in), then the examples: $*"
    (cd "$REPO_ROOT" && AUTHGATE_CODE_LAYOUT=1 cargo build --release --quiet --bin authgate \
        && cargo build --release --quiet "${examples[@]}") || die "cargo build failed"
    TARGET_DIR="$(cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)"
    # Copies in $WORK: a later build (cargo bench builds authgate again, with
    # the benches' features) or another checkout sharing the target
    # directory must not swap a binary under the run or its report.
    mkdir -p "$WORK/bin"
    cp "$TARGET_DIR/release/authgate" "$WORK/bin/"
    AUTHGATE_BIN="$WORK/bin/authgate"
    for e in "$@"; do
        cp "$TARGET_DIR/release/examples/$e" "$WORK/bin/"
    done
    DEVIDP_BIN="$WORK/bin/devidp"
    CEILING_BIN="$WORK/bin/ceiling"
    BARE_AUTHZ_BIN="$WORK/bin/bare_authz"
    GRPC_LOAD_BIN="$WORK/bin/grpc_load"
}

# code_layout: a sentence on how the measured binary's code is laid out:
# whether build.rs applied bench/symbol-order.txt (its first function opens
# .text) and how many of the file's functions the binary still has.
code_layout() {
    local order="$REPO_ROOT/bench/symbol-order.txt" first lowest total have
    if [[ ! -f "$order" ]]; then
        printf "authgate's code is in the linker's default order (there is no bench/symbol-order.txt)."
        return
    fi
    first="$(grep -v '^#' "$order" | head -n1)"
    lowest="$(nm -n --defined-only "$AUTHGATE_BIN" | awk '$2 ~ /^[tT]$/ { print $3; exit }')"
    total="$(grep -vc '^#' "$order")"
    have="$(nm --defined-only "$AUTHGATE_BIN" | awk 'NR == FNR { if (!/^#/) want[$0] = 1; next }
        ($3 in want) && !seen[$3]++ { n++ } END { print n + 0 }' "$order" -)"
    if [[ "$first" == "$lowest" ]]; then
        printf "authgate's code is laid out in the order of bench/symbol-order.txt (%s of its %s functions are in this binary)." "$have" "$total"
    else
        printf "authgate's code is in the linker's default order: build.rs did not apply bench/symbol-order.txt (%s of its %s functions are in this binary; build.rs says when it applies)." "$have" "$total"
    fi
}

# --- setup -----------------------------------------------------------------------

P_IDP=$PORT_BASE
P_AUTHGATE=$((PORT_BASE + 1))
P_OAUTH2_PROXY=$((PORT_BASE + 2))
P_CEILING=$((PORT_BASE + 3))
P_NGINX_AUTHGATE=$((PORT_BASE + 4))
P_NGINX_CEILING=$((PORT_BASE + 5))
P_NGINX_OAUTH2_PROXY=$((PORT_BASE + 6))
P_GRPC=$((PORT_BASE + 7))

random_token() { head -c 24 /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_'; }

# config_head: authgate's settings shared by this benchmark and
# bench/soak.sh: the provider, the secrets in $WORK, plain-http cookies,
# in-memory sessions, quiet logs.
config_head() {
    cat <<EOF
authenticate_service_url: http://127.0.0.1:$P_AUTHGATE
idp_provider: oidc
idp_provider_url: http://127.0.0.1:$P_IDP/dex
idp_client_id: authgate
idp_client_secret_file: $WORK/idp_client_secret
idp_scopes: [openid, email, profile, groups, offline_access]
cookie_secret_file: $WORK/cookie_secret
cookie_name: _authgate
cookie_secure: false
address: 127.0.0.1:$P_AUTHGATE
session_store: memory
refresh_interval: 1h
log_format: json
log_level: warn
EOF
}

# write_authgate_config CLIENT_SECRET: $WORK/authgate.yaml and its secrets.
# A policy of $ROUTES routes; the benchmarked host is the last one (group
# devops: alice), the one before it admits nobody (the 403 case).
write_authgate_config() {
    head -c 32 /dev/urandom | base64 >"$WORK/cookie_secret"
    printf '%s' "$1" >"$WORK/idp_client_secret"
    {
        config_head
        cat <<EOF
grpc_address: 127.0.0.1:$P_GRPC
policy:
EOF
        local i
        for ((i = 0; i < ROUTES - 2; i++)); do
            printf '  - from: http://app%d.bench.test\n    prefix: /api\n    allowed_groups: [team%d, devops]\n' "$i" "$i"
        done
        printf '  - from: http://%s\n    allowed_groups: [nobody]\n    pass_identity_headers: true\n' "$DENY_HOST"
        printf '  - from: http://%s\n    allowed_groups: [devops]\n    pass_identity_headers: true\n' "$APP_HOST"
    } >"$WORK/authgate.yaml"
    "$AUTHGATE_BIN" check-config --config "$WORK/authgate.yaml" >&2 || die "authgate rejects the bench config"
}

start_servers() {
    local p
    for p in $(seq "$PORT_BASE" $((PORT_BASE + 7))); do
        port_busy "$p" && die "port $p is in use (set BENCH_PORT_BASE)"
    done
    local ag_secret o2p_secret
    ag_secret="$(random_token)"
    o2p_secret="$(random_token)"

    log "starting the development provider on :$P_IDP"
    start devidp 0 "$DEVIDP_BIN" --port "$P_IDP" \
        --client "authgate:$ag_secret:http://127.0.0.1:$P_AUTHGATE/oauth2/callback" \
        --client "oauth2-proxy:$o2p_secret:http://127.0.0.1:$P_OAUTH2_PROXY/oauth2/callback"
    wait_for_port devidp "$P_IDP" "$PID_devidp"

    write_authgate_config "$ag_secret"

    log "starting authgate on :$P_AUTHGATE (core 1)"
    start authgate 1 "$AUTHGATE_BIN" serve --config "$WORK/authgate.yaml"
    wait_for_port authgate "$P_AUTHGATE" "$PID_authgate"

    log "starting oauth2-proxy on :$P_OAUTH2_PROXY (core 1)"
    start oauth2-proxy 1 "$OAUTH2_PROXY_BIN" \
        --provider=oidc \
        --oidc-issuer-url="http://127.0.0.1:$P_IDP/dex" \
        --client-id=oauth2-proxy \
        --client-secret="$o2p_secret" \
        --redirect-url="http://127.0.0.1:$P_OAUTH2_PROXY/oauth2/callback" \
        --scope="openid email profile groups" \
        --cookie-secret="$(head -c 32 /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_' | cut -c1-32)" \
        --cookie-secure=false \
        --email-domain='*' \
        --upstream=static://200 \
        --http-address="127.0.0.1:$P_OAUTH2_PROXY" \
        --request-logging=false \
        --set-xauthrequest=true
    wait_for_port oauth2-proxy "$P_OAUTH2_PROXY" "$PID_oauth2_proxy"

    log "starting the ceiling on :$P_CEILING (core 1)"
    start ceiling 1 "$CEILING_BIN" "127.0.0.1:$P_CEILING"
    wait_for_port ceiling "$P_CEILING" "$PID_ceiling"

    log "starting nginx on :$P_NGINX_AUTHGATE-$P_NGINX_OAUTH2_PROXY (core 1, one worker)"
    mkdir -p "$WORK/nginx/www"
    printf 'hello\n' >"$WORK/nginx/www/hello.txt"
    sed -e "s|{{DIR}}|$WORK/nginx|g" \
        -e "s|{{AUTHGATE}}|127.0.0.1:$P_AUTHGATE|g" \
        -e "s|{{CEILING}}|127.0.0.1:$P_CEILING|g" \
        -e "s|{{OAUTH2_PROXY}}|127.0.0.1:$P_OAUTH2_PROXY|g" \
        -e "s|{{LISTEN_AUTHGATE}}|127.0.0.1:$P_NGINX_AUTHGATE|g" \
        -e "s|{{LISTEN_CEILING}}|127.0.0.1:$P_NGINX_CEILING|g" \
        -e "s|{{LISTEN_OAUTH2_PROXY}}|127.0.0.1:$P_NGINX_OAUTH2_PROXY|g" \
        "$REPO_ROOT/bench/nginx.conf" >"$WORK/nginx/nginx.conf"
    start nginx 1 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/startup.log" \
        -g 'daemon off; master_process off;'
    wait_for_port nginx "$P_NGINX_OAUTH2_PROXY" "$PID_nginx"
}

# login BASE START_PATH USER COOKIE_PREFIX: signs in through the provider's
# form like a browser; prints the session cookie(s) as a Cookie header value.
login() {
    local base="$1" start_path="$2" user="$3" prefix="$4"
    local jar="$WORK/jar.$RANDOM" provider form req action callback code
    local curl=(curl -sS --max-time 10 -c "$jar" -b "$jar")
    provider="$("${curl[@]}" -o /dev/null -w '%{redirect_url}' "$base$start_path")"
    [[ "$provider" == http://127.0.0.1:$P_IDP/* ]] || die "$base$start_path did not redirect to the provider (got '$provider')"
    form="$("${curl[@]}" "$provider")"
    req="$(grep -o 'name="req" value="[^"]*"' <<<"$form" | head -n1 | sed 's/.*value="//; s/"$//')"
    action="$(grep -o 'action="[^"]*"' <<<"$form" | head -n1 | sed 's/action="//; s/"$//; s/&amp;/\&/g')"
    [[ -n "$req" && -n "$action" ]] || die "no login form at $provider"
    [[ "$action" == http* ]] || action="http://127.0.0.1:$P_IDP$action"
    callback="$("${curl[@]}" -o /dev/null -w '%{redirect_url}' \
        --data-urlencode "req=$req" --data-urlencode "login=$user@example.com" \
        --data-urlencode "password=$user" "$action")"
    [[ "$callback" == "$base"/* ]] || die "the provider did not send $user back to $base (got '$callback')"
    code="$("${curl[@]}" -o /dev/null -w '%{http_code}' "$callback")"
    [[ "$code" == 302 ]] || die "$base callback answered $code, not 302"
    # Netscape jar: domain flag path secure expiry name value; HttpOnly
    # cookies are written as comments with a #HttpOnly_ prefix.
    sed 's/^#HttpOnly_//' "$jar" | awk -v p="$prefix" '
        !/^#/ && NF >= 7 && index($6, p) == 1 && $6 !~ /csrf|login/ {
            printf "%s%s=%s", sep, $6, $7; sep = "; " }'
}

# tamper COOKIE_HEADER: the same cookies with one character of each value
# changed in the middle, so they fail authentication, not parsing.
tamper() {
    awk -v RS='; ' -v ORS='' '{
        n = index($0, "="); v = substr($0, n + 1); m = int(length(v) / 2)
        c = substr(v, m, 1); r = (c == "A") ? "B" : "A"
        printf "%s%s%s%s%s", sep, substr($0, 1, n), substr(v, 1, m - 1), r, substr(v, m + 1); sep = "; " }' <<<"$1" | tr -d '\n'
}

# --- measurement ---------------------------------------------------------------

CLK_TCK="$(getconf CLK_TCK)"
# Every server (and nginx) runs on core 1 alone (start … 1 above), so a
# case's servers can use at most this many CPU seconds per second.
SERVER_CORES=1
# Below this share of its core a server was not the bottleneck (the load
# generator or the machine's other work was): a throughput or per-CPU-second
# ratio with such a side measures the load, not the server.
SATURATED_PCT=90
# cpu_share CPU_S SECONDS: the servers' CPU seconds as a percentage of what
# their core(s) could give in SECONDS.
cpu_share() {
    awk -v c="$1" -v d="$2" -v n="$SERVER_CORES" 'BEGIN { printf "%.0f", (d > 0) ? c * 100 / (d * n) : 0 }'
}
# saturated SHARE: "yes" when SHARE (percent) reaches $SATURATED_PCT.
saturated() { awk -v s="$1" -v m="$SATURATED_PCT" 'BEGIN { print (s >= m) ? "yes" : "no" }'; }
# cpu_ticks PID: user + system ticks of the whole process (all threads).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# peak_rss_kib PID: the high-water mark of the resident set.
peak_rss_kib() { status_kib "$1" VmHWM; }
# status_kib PID FIELD: a kB figure of /proc/PID/status.
status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# bench/result.lua's RESULT line, with non-2xx/3xx answers as the wrong ones.
cat >"$WORK/report.lua" <<EOF
dofile("$REPO_ROOT/bench/result.lua")
done = function(summary, latency, requests)
    result_line(summary, latency, summary.errors.status)
end
EOF

# expect_status CODE URL [HEADER...]: one request, checked, before the load.
expect_status() {
    local want="$1" url="$2" got
    shift 2
    local args=() h
    for h in "$@"; do args+=(-H "$h"); done
    got="$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "${args[@]}" "$url")"
    [[ "$got" == "$want" ]] || die "$url answered $got, expected $want (headers: $*)"
}

# Each case: name | server pids (space-separated, ';' between) | expected status | URL | headers ('|'-joined).
declare -A CASE_URL CASE_HEADERS CASE_PIDS CASE_STATUS
CASES=()
add_case() {
    local name="$1" pids="$2" status="$3" url="$4"
    shift 4
    CASES+=("$name")
    CASE_PIDS[$name]="$pids"
    CASE_STATUS[$name]="$status"
    CASE_URL[$name]="$url"
    local joined="" h
    for h in "$@"; do joined+="$h"$'\n'; done
    CASE_HEADERS[$name]="$joined"
}

case_headers() { local line; while IFS= read -r line; do [[ -n "$line" ]] && printf '%s\n' "$line"; done <<<"${CASE_HEADERS[$1]}"; }

define_cases() {
    local original="X-Original-URL: http://$APP_HOST/hello.txt"
    local denied="X-Original-URL: http://$DENY_HOST/hello.txt"
    local ag="http://127.0.0.1:$P_AUTHGATE/oauth2/auth"
    local o2p="http://127.0.0.1:$P_OAUTH2_PROXY/oauth2/auth"
    local ceil="http://127.0.0.1:$P_CEILING/oauth2/auth"
    add_case ceiling "$PID_ceiling" 200 "$ceil" "$original" "Cookie: $AG_COOKIE"
    add_case authgate "$PID_authgate" 200 "$ag" "$original" "Cookie: $AG_COOKIE"
    add_case oauth2-proxy "$PID_oauth2_proxy" 202 "$o2p" "$original" "Cookie: $O2P_COOKIE"
    add_case authgate-401 "$PID_authgate" 401 "$ag" "$original" "Cookie: $AG_BAD_COOKIE"
    add_case oauth2-proxy-401 "$PID_oauth2_proxy" 401 "$o2p" "$original" "Cookie: $O2P_BAD_COOKIE"
    add_case authgate-403 "$PID_authgate" 403 "$ag" "$denied" "Cookie: $AG_COOKIE"
    add_case oauth2-proxy-403 "$PID_oauth2_proxy" 403 "$o2p?allowed_groups=nobody" "$original" "Cookie: $O2P_COOKIE"
    local site="/hello.txt"
    add_case nginx+ceiling "$PID_nginx $PID_ceiling" 200 "http://127.0.0.1:$P_NGINX_CEILING$site" "Host: $APP_HOST" "Cookie: $AG_COOKIE"
    add_case nginx+authgate "$PID_nginx $PID_authgate" 200 "http://127.0.0.1:$P_NGINX_AUTHGATE$site" "Host: $APP_HOST" "Cookie: $AG_COOKIE"
    add_case nginx+oauth2-proxy "$PID_nginx $PID_oauth2_proxy" 200 "http://127.0.0.1:$P_NGINX_OAUTH2_PROXY$site" "Host: $APP_HOST" "Cookie: $O2P_COOKIE"
}

check_cases() {
    local name headers
    for name in "${CASES[@]}"; do
        mapfile -t headers < <(case_headers "$name")
        expect_status "${CASE_STATUS[$name]}" "${CASE_URL[$name]}" "${headers[@]}"
    done
}

# run_wrk NAME ROUND: warm-up, then the measured run; appends a row to
# $WORK/wrk.tsv: case round req/s p50 p99 p99.9 cpu_s cpu_us_per_req rss_kib bad errors
# cpu_share_percent (of the measured seconds wrk reports).
run_wrk() {
    local name="$1" round="$2" headers args=() h pid
    mapfile -t headers < <(case_headers "$name")
    for h in "${headers[@]}"; do args+=(-H "$h"); done
    local wrk=(taskset -c 0 timeout $((DURATION + WARMUP + 30)) wrk -t1 -c"$CONNECTIONS" --timeout 5s "${args[@]}")
    "${wrk[@]}" -d"${WARMUP}s" "${CASE_URL[$name]}" >/dev/null
    local before=0 after=0
    for pid in ${CASE_PIDS[$name]}; do before=$((before + $(cpu_ticks "$pid"))); done
    local out
    out="$("${wrk[@]}" -d"${DURATION}s" -s "$WORK/report.lua" "${CASE_URL[$name]}")"
    for pid in ${CASE_PIDS[$name]}; do after=$((after + $(cpu_ticks "$pid"))); done
    local main_pid="${CASE_PIDS[$name]##* }"
    local rss
    rss="$(peak_rss_kib "$main_pid")"
    local result
    result="$(grep '^RESULT ' <<<"$out")" || die "wrk printed no result for $name: $out"
    # shellcheck disable=SC2086
    set -- $result
    local requests="$2" seconds="$3" rps="$4" p50="$5" p99="$6" p999="$7" status_errors="$8" socket_errors="$9"
    local want_ok=1
    [[ "${CASE_STATUS[$name]}" == 2* ]] || want_ok=0
    # For the 401/403 cases every response is a "status error" to wrk.
    local bad
    if ((want_ok)); then bad="$status_errors"; else bad=$((requests - status_errors)); fi
    local cpu_s
    cpu_s="$(awk -v t=$((after - before)) -v k="$CLK_TCK" 'BEGIN { printf "%.2f", t / k }')"
    local cpu_us
    cpu_us="$(awk -v c="$cpu_s" -v n="$requests" 'BEGIN { printf "%.1f", n ? c * 1e6 / n : 0 }')"
    local share
    share="$(cpu_share "$cpu_s" "$seconds")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$rps" "$p50" "$p99" "$p999" \
        "$cpu_s" "$cpu_us" "$rss" "$bad" "$socket_errors" "$share" >>"$WORK/wrk.tsv"
    log "$(printf '%-20s round %s: %9.0f req/s  p50 %5d µs  p99 %6d µs  p99.9 %6d µs  cpu %5s s (%s%%)  wrong %s  errors %s' \
        "$name" "$round" "$rps" "$p50" "$p99" "$p999" "$cpu_s" "$share" "$bad" "$socket_errors")"
}

# run_rate NAME: vegeta at $RATE req/s for $RATE_SECONDS s; appends
# case p50 p90 p99 max success to $WORK/rate.tsv (µs).
run_rate() {
    local name="$1" headers h targets="$WORK/targets.$RANDOM"
    mapfile -t headers < <(case_headers "$name")
    {
        printf 'GET %s\n' "${CASE_URL[$name]}"
        for h in "${headers[@]}"; do printf '%s\n' "$h"; done
    } >"$targets"
    # Warm-up at the same rate, then the measured run.
    taskset -c 0 timeout 60 "$VEGETA_BIN" attack -targets="$targets" -rate="$RATE" -duration=2s >/dev/null
    taskset -c 0 timeout $((RATE_SECONDS + 60)) "$VEGETA_BIN" attack -targets="$targets" -rate="$RATE" \
        -duration="${RATE_SECONDS}s" >"$WORK/rate.$name.bin"
    "$VEGETA_BIN" report -type=json "$WORK/rate.$name.bin" | jq -r --arg n "$name" \
        '[$n, (.latencies["50th"]/1000|floor), (.latencies["90th"]/1000|floor), (.latencies["99th"]/1000|floor),
          (.latencies.max/1000|floor), .success, .throughput] | @tsv' >>"$WORK/rate.tsv"
    log "$(awk -F'\t' -v n="$name" '$1 == n { printf "%-20s at %s req/s: p50 %d µs  p90 %d µs  p99 %d µs  max %d µs  success %s", n, r, $2, $3, $4, $5, $6 }' r="$RATE" "$WORK/rate.tsv")"
}

# --- criterion -----------------------------------------------------------------

run_criterion() {
    : >"$WORK/criterion.tsv"
    if [[ "${BENCH_SKIP_CRITERION:-}" == 1 ]]; then
        return
    fi
    log "cargo bench --bench decision --bench policy (a few minutes)"
    (cd "$REPO_ROOT" && timeout 1800 cargo bench --quiet --bench decision --bench policy -- --noplot) \
        >"$WORK/criterion.log" 2>&1 || { tail -n 30 "$WORK/criterion.log" >&2; die "cargo bench failed"; }
    local f id
    while IFS= read -r f; do
        id="$(jq -r .full_id "$(dirname "$f")/benchmark.json")"
        jq -r --arg id "$id" '[$id, .median.point_estimate, .median.confidence_interval.lower_bound,
            .median.confidence_interval.upper_bound] | @tsv' "$f" >>"$WORK/criterion.tsv"
    done < <(find "$TARGET_DIR/criterion" -path '*/new/estimates.json' \
        \( -path '*decide_*' -o -path '*/parse*' -o -path '*/evaluate/*' \) | sort)
}

# --- report --------------------------------------------------------------------

# Each case's median over the rounds, column by column (a round disturbed by
# other work on the machine moves no median).
median_rows() {
    local name col
    : >"$WORK/median.tsv"
    for name in "${CASES[@]}"; do
        local row="$name"
        for col in $(seq 2 12); do
            row+=$'\t'"$(awk -F'\t' -v c="$name" -v f="$col" '$1 == c { print $f }' "$WORK/wrk.tsv" \
                | sort -g | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }')"
        done
        printf '%s\n' "$row" >>"$WORK/median.tsv"
    done
}

field() { awk -F'\t' -v c="$1" -v f="$2" '$1 == c { print $f }' "$WORK/median.tsv"; }
rate_field() { awk -F'\t' -v c="$1" -v f="$2" '$1 == c { print $f }' "$WORK/rate.tsv"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# mem_row LABEL NAME: a row of the memory table from RSS_/ANON_/FILE_NAME.
mem_row() {
    local peak="RSS_$2" anon="ANON_$2" file="FILE_$2"
    printf '| %s | %s | %s | %s |' "$1" "$(mib "${!peak}")" "$(mib "${!anon}")" "$(mib "${!file}")"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    ok = (op == ">=") ? (v >= t) : (v <= t); print ok ? "**met**" : "**missed**" }'; }
# saturated_verdict VALUE OP TARGET NAME SHARE [NAME SHARE...]: the verdict
# of a throughput or per-CPU-second ratio, or "invalid (…)" naming each side
# whose servers used less than $SATURATED_PCT % of their core(s).
saturated_verdict() {
    local value="$1" op="$2" target="$3" why=""
    shift 3
    while (($# >= 2)); do
        if [[ "$(saturated "$2")" == no ]]; then
            why+="${why:+; }$1 not saturated: $2%"
        fi
        shift 2
    done
    if [[ -n "$why" ]]; then
        printf 'invalid (%s)' "$why"
    else
        verdict "$value" "$op" "$target"
    fi
}

write_report() {
    median_rows
    local load_after
    load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
    local ag_rps o2p_rps ceil_rps ng_ag_rps ng_ceil_rps ag_p99 o2p_p99 ag_rss o2p_rss
    ag_rps="$(field authgate 3)"; o2p_rps="$(field oauth2-proxy 3)"; ceil_rps="$(field ceiling 3)"
    ng_ag_rps="$(field nginx+authgate 3)"; ng_ceil_rps="$(field nginx+ceiling 3)"
    ag_p99="$(field authgate 5)"; o2p_p99="$(field oauth2-proxy 5)"
    ag_rss="$RSS_authgate"; o2p_rss="$RSS_oauth2_proxy"
    local ceil_rss="$RSS_ceiling" nginx_rss="$RSS_nginx"
    local r_tput r_p99 r_ceil r_nginx r_rss r_cpu
    r_tput="$(ratio "$ag_rps" "$o2p_rps")"
    r_p99="$(ratio "$ag_p99" "$o2p_p99")"
    r_ceil="$(ratio "$ag_rps" "$ceil_rps")"
    r_nginx="$(ratio "$ng_ag_rps" "$ng_ceil_rps")"
    r_rss="$(ratio "$ag_rss" "$o2p_rss")"
    r_cpu="$(ratio "$(field authgate 8)" "$(field oauth2-proxy 8)")"
    # Capacity: requests per CPU second relative to the ceiling's. Unlike
    # req/s it does not depend on how much of the core the server got, nor
    # on whether wrk kept up: the steadier figure on a shared machine.
    local c_ceil c_nginx
    c_ceil="$(ratio "$(field ceiling 8)" "$(field authgate 8)")"
    c_nginx="$(ratio "$(field nginx+ceiling 8)" "$(field nginx+authgate 8)")"
    # Each case's servers' share of their core, for the ratios' validity.
    local s_ag s_o2p s_ceil s_ng_ag s_ng_ceil
    s_ag="$(field authgate 12)"; s_o2p="$(field oauth2-proxy 12)"; s_ceil="$(field ceiling 12)"
    s_ng_ag="$(field nginx+authgate 12)"; s_ng_ceil="$(field nginx+ceiling 12)"
    local rate_ag_p99
    rate_ag_p99="$(rate_field authgate 4)"
    local decide_median=""
    decide_median="$(awk -F'\t' '$1 ~ /decide_allow_1000_routes/ { printf "%.2f", $2 / 1000 }' "$WORK/criterion.tsv")"

    local previous="$WORK/previous.md"
    rm -f "$previous"
    [[ ! -f "$OUT" ]] || cp "$OUT" "$previous"
    {
        cat <<EOF
# Benchmarks

Produced by \`bench/run.sh\` (each run rewrites its sections and keeps the
ones other scripts wrote: Sessions, Soak; see
[the method](#method) and run it yourself — absolute numbers depend on the
machine, the **ratios** measured in one run are what to compare).

Run: $(date -u '+%Y-%m-%d %H:%M UTC'), authgate $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$REPO_ROOT" && git diff --quiet HEAD -- . ':(exclude)BENCHMARKS.md' 2>/dev/null || echo ' (with uncommitted changes)').

## Ratios

Medians of $ROUNDS rounds, all from this one run. A throughput or
per-CPU-second ratio is "invalid" when a side's servers used less than
${SATURATED_PCT} % of their core during the measured seconds: then the load
generator or the machine, not the server, set the pace.

| ratio | value | target | |
| --- | ---: | ---: | --- |
| authgate / oauth2-proxy, throughput | ${r_tput}× | ≥ 5× | $(saturated_verdict "$r_tput" ">=" 5 authgate "$s_ag" oauth2-proxy "$s_o2p") |
| authgate / oauth2-proxy, p99 latency | $r_p99 | ≤ 0.20 | $(verdict "$r_p99" "<=" 0.2) |
| authgate / ceiling, throughput | $r_ceil | ≥ 0.85 | $(saturated_verdict "$r_ceil" ">=" 0.85 authgate "$s_ag" ceiling "$s_ceil") |
| (nginx + authgate) / (nginx + ceiling), throughput | $r_nginx | ≥ 0.90 | $(saturated_verdict "$r_nginx" ">=" 0.9 nginx+authgate "$s_ng_ag" nginx+ceiling "$s_ng_ceil") |
| authgate / ceiling, requests per CPU second | $c_ceil | ≥ 0.90 | $(saturated_verdict "$c_ceil" ">=" 0.9 authgate "$s_ag" ceiling "$s_ceil") |
| (nginx + authgate) / (nginx + ceiling), requests per CPU second | $c_nginx | (≥ 0.90) | $(saturated_verdict "$c_nginx" ">=" 0.9 nginx+authgate "$s_ng_ag" nginx+ceiling "$s_ng_ceil") |
| authgate / oauth2-proxy, peak RSS | $r_rss | ≤ 0.50 | $(verdict "$r_rss" "<=" 0.5) |
| authgate / oauth2-proxy, anonymous RSS at the end | $(ratio "$ANON_authgate" "$ANON_oauth2_proxy") | | |
| authgate / oauth2-proxy, CPU per request | $r_cpu | | |
| authgate p99 at $RATE req/s (open loop) | ${rate_ag_p99} µs | < 1,000 µs (aim < 200) | $(verdict "$rate_ag_p99" "<=" 1000) |
| the ceiling's p99 at $RATE req/s (this machine's floor) | $(rate_field ceiling 4) µs | | |
| authgate p50 at $RATE req/s | $(rate_field authgate 2) µs (ceiling $(rate_field ceiling 2) µs) | | |
EOF
        if [[ -n "$decide_median" ]]; then
            printf '| criterion: decision path, 1,000 routes, median | %s µs | ≤ 2 µs | %s |\n' \
                "$decide_median" "$(verdict "$decide_median" "<=" 2)"
        fi
        cat <<EOF

## Closed loop (wrk, $CONNECTIONS connections, ${DURATION} s per case)

Each figure is the median of its $ROUNDS rounds. CPU is user +
system time of the server process(es) during the measured ${DURATION} s
(nginx + auth target for the nginx rows); "CPU share" is that CPU time
over the measured seconds and the $SERVER_CORES core(s) the servers are
pinned to, "saturated" whether it reached ${SATURATED_PCT} % (the server was the
bottleneck); RSS is the server's peak resident set (VmHWM) after the case. "wrong" counts responses with another
status than expected; "errors" counts socket errors.

| case | expected | req/s | p50 µs | p99 µs | p99.9 µs | CPU s | CPU µs/req | CPU share | saturated | peak RSS MiB | wrong | errors |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |
EOF
        local name
        for name in "${CASES[@]}"; do
            awk -F'\t' -v c="$name" -v s="${CASE_STATUS[$name]}" -v sat="$(saturated "$(field "$name" 12)")" '$1 == c {
                printf "| %s | %s | %.0f | %d | %d | %d | %s | %s | %s %% | %s | %.1f | %s | %s |\n",
                    c, s, $3, $4, $5, $6, $7, $8, $12, sat, $9 / 1024, $10, $11 }' "$WORK/median.tsv"
        done
        cat <<EOF

Every round, for the spread:

| case | round | req/s | p50 µs | p99 µs | p99.9 µs |
| --- | ---: | ---: | ---: | ---: | ---: |
$(sort -t$'\t' -k1,1 -k2,2n "$WORK/wrk.tsv" | awk -F'\t' '{ printf "| %s | %s | %.0f | %d | %d | %d |\n", $1, $2, $3, $4, $5, $6 }')

## Open loop (vegeta, $RATE req/s for ${RATE_SECONDS} s)

Latency at a fixed arrival rate, as a site with $RATE req/s would see it
(the closed-loop p99 above is mostly queueing behind $CONNECTIONS busy
connections). Includes the load generator's own overhead: the ceiling row
is the floor.

| case | p50 µs | p90 µs | p99 µs | max µs | success | req/s |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
$(awk -F'\t' '{ printf "| %s | %d | %d | %d | %d | %.4f | %.0f |\n", $1, $2, $3, $4, $5, $6, $7 }' "$WORK/rate.tsv")

## Memory

Peak RSS is VmHWM at the end of the run (so it includes start-up: reading
and compiling the policy). RSS at the end splits into anonymous memory
(heap, stacks: what the process allocated) and file-backed pages (the
executable's code and data that were touched: shared, reclaimable).
$(code_layout)

| server | peak RSS MiB | anonymous MiB | file-backed MiB |
| --- | ---: | ---: | ---: |
$(mem_row "authgate ($ROUTES routes)" authgate)
$(mem_row oauth2-proxy oauth2_proxy)
$(mem_row ceiling ceiling)
$(mem_row "nginx (one worker, no master)" nginx)
EOF
        if [[ -s "$WORK/criterion.tsv" ]]; then
            cat <<EOF

## Criterion (in-process, \`cargo bench --bench decision --bench policy\`)

Medians with their 95% confidence interval. \`decide_allow_1000_routes\`
is the whole decision: open the cookie, find the session in the cache,
evaluate 1,000 routes (the request hits the last), render the identity
headers. \`parse_evaluate/N\`: a policy of N routes, the request hitting the
last one as a user in 300 groups; sub-linear growth from 1,000 to 10,000
routes shows the host index at work (a scan would be ten times slower).

| benchmark | median | 95% CI |
| --- | ---: | --- |
$(awk -F'\t' 'function t(ns) { return ns >= 1000 ? sprintf("%.2f µs", ns / 1000) : sprintf("%.0f ns", ns) }
    { printf "| %s | %s | %s – %s |\n", $1, t($2), t($3), t($4) }' "$WORK/criterion.tsv")
EOF
        fi
        cat <<EOF

## Machine

| | |
| --- | --- |
| CPU | $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) × $(nproc --all) |
| memory | $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) |
| kernel | $(uname -sr) |
| load average before / after | $LOAD_BEFORE / $load_after |
| pinning | $PINNING |
| authgate | release build, $ROUTES-route policy, in-memory sessions, log level warn |
| oauth2-proxy | $("$OAUTH2_PROXY_BIN" --version 2>&1 | head -n1), cookie sessions, \`--request-logging=false\` |
| nginx | $(nginx -v 2>&1 | sed 's|nginx version: ||'), one worker, no master process, access log off |
| wrk | $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2) |
| vegeta | $("$VEGETA_BIN" -version 2>&1 | awk '/Version/ { print $2 }') |

The machine may be shared: a load average above the number of cores during
the run means other work competed for the CPU, which lowers every absolute
figure; the ratios, measured side by side with the order rotated every
round, are affected much less.

## Method

- **One provider for both.** \`examples/devidp.rs\` runs authgate's
  development OpenID provider (the one behind \`authgate demo\`). authgate
  and oauth2-proxy are both registered clients; each gets its session cookie
  from a real login: \`/oauth2/start\` → the provider's form, posted as
  alice → the callback (\`curl\`, in \`bench/run.sh\`).
- **The cases.** (a) authgate \`/oauth2/auth\` with its cookie and
  \`X-Original-URL\` naming the last of $ROUTES routes (group \`devops\`);
  (b) oauth2-proxy \`/oauth2/auth\` with its cookie (it answers 202);
  (c) the ceiling, \`examples/ceiling.rs\`: a bare hyper server (tokio,
  hyper-util's HTTP/1.1 + h2c connection, \`TCP_NODELAY\`; no router, no
  middleware) answering 200 with the same identity headers, the
  \`X-Auth-Request-Jwt\` assertion included (signed once at start), without
  looking at the request; (d) nginx (\`bench/nginx.conf\`: the
  \`auth_request\` wiring of \`examples/nginx/nginx.conf\`, plain HTTP, one
  worker) serving a static file behind each auth target; (e) a tampered
  cookie (one character changed: decryption fails, 401) and a valid cookie
  on a route that refuses the user (403; for oauth2-proxy
  \`?allowed_groups=nobody\`). Every case's status is checked before it is
  loaded, and the "wrong" column counts any other status under load.
- **Closed loop:** wrk, one thread, $CONNECTIONS keep-alive connections,
  ${WARMUP} s warm-up then ${DURATION} s measured, p99.9 from wrk's
  histogram through a Lua \`done\` hook. $ROUNDS rounds; in each round the
  cases run in a rotated order, so slow drift of a shared machine does not
  always hit the same server; the table keeps each case's median round.
- **Open loop:** vegeta (pinned in \`bench/vegeta/go.mod\`) at a fixed
  $RATE req/s, so latency is measured at a rate rather than at saturation.
- **CPU and memory** from \`/proc/<pid>/stat\` (utime + stime, all threads)
  before and after each measured run, and \`/proc/<pid>/status\` (VmHWM,
  RssAnon, RssFile). CPU per request gives the "requests per CPU second"
  ratios: on a machine shared with other work a server does not get its
  whole core, and wrk may not keep up with the ceiling, so req/s ratios
  can flatter or wrong a server. CPU per request depends less on either,
  but a server that waits for its load wakes up for fewer requests at a
  time and pays more per request: both kinds of ratio hold only while
  both sides were saturated (the "CPU share" column), and are marked
  invalid otherwise.
- **Versions are pinned:** oauth2-proxy v7.15.6 and vegeta are built from
  the Go module proxy with \`bench/oauth2-proxy/go.mod\` and
  \`bench/vegeta/go.mod\` (their go.sum checks every module), wrk and nginx
  are Debian's.
- **Bounded:** every load run has a fixed duration and a \`timeout\`,
  traffic stays on 127.0.0.1, and every process started is killed on exit.
EOF
    } >"$OUT"
    carry_over_sections "$previous" "$OUT"
    log "wrote $OUT"
}

# carry_over_sections OLD NEW: appends to NEW every "## " section of OLD that
# NEW lacks (the Sessions and Soak sections come from other scripts, the gRPC
# one is spliced in afterwards), so a full run drops none of them.
carry_over_sections() {
    local old="$1" new="$2"
    [[ -f "$old" ]] || return 0
    awk -v grpc="$GRPC_MARK_BEGIN" '
        NR == FNR { if (/^## /) have[$0] = 1; next }
        $0 == grpc { keep = 1 }
        /^## / { keep = !($0 in have) }
        keep' "$new" "$old" >"$WORK/carried.md"
    if [[ -s "$WORK/carried.md" ]]; then
        { printf '\n'; cat "$WORK/carried.md"; } >>"$new"
    fi
}

# shellcheck source=bench/grpc.sh
source "$REPO_ROOT/bench/grpc.sh"

# --- main ------------------------------------------------------------------------

main() {
    local only="${1:-}"
    [[ -z "$only" || "$only" == grpc ]] || die "unknown argument '$only' (only 'grpc' is known)"
    install_system_packages
    build_grpc_tools
    OAUTH2_PROXY_BIN="$(build_go_tool oauth2-proxy github.com/oauth2-proxy/oauth2-proxy/v7 \
        github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION)"
    VEGETA_BIN="$(build_go_tool vegeta github.com/tsenart/vegeta/v12 main.Version)"
    build_rust devidp ceiling bare_authz grpc_load
    LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
    if (($(nproc) >= 2)); then
        PINNING="servers and nginx on core 1, load generators (wrk, vegeta) on core 0 (taskset)"
    else
        die "needs at least 2 cores to pin the load generator and the servers apart"
    fi
    start_servers
    start_bare_authz

    if [[ "$only" == grpc ]]; then
        AG_COOKIE="$(login "http://127.0.0.1:$P_AUTHGATE" "/oauth2/start?rd=/oauth2/userinfo" alice _authgate)"
        [[ -n "$AG_COOKIE" ]] || die "no authgate session cookie after the login"
        GRPC_LOAD_BEFORE="$LOAD_BEFORE"
        run_grpc_bench
        stop_servers
        splice_grpc_section "$OUT"
        return
    fi

    log "signing in to authgate and oauth2-proxy as alice"
    AG_COOKIE="$(login "http://127.0.0.1:$P_AUTHGATE" "/oauth2/start?rd=/oauth2/userinfo" alice _authgate)"
    O2P_COOKIE="$(login "http://127.0.0.1:$P_OAUTH2_PROXY" "/oauth2/start?rd=/" alice _oauth2_proxy)"
    [[ -n "$AG_COOKIE" ]] || die "no authgate session cookie after the login"
    [[ -n "$O2P_COOKIE" ]] || die "no oauth2-proxy session cookie after the login"
    AG_BAD_COOKIE="$(tamper "$AG_COOKIE")"
    O2P_BAD_COOKIE="$(tamper "$O2P_COOKIE")"
    log "authgate cookie ${#AG_COOKIE} bytes, oauth2-proxy cookie ${#O2P_COOKIE} bytes"

    define_cases
    check_cases
    : >"$WORK/wrk.tsv"
    : >"$WORK/rate.tsv"
    local round i n=${#CASES[@]}
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((i = 0; i < n; i++)); do
            run_wrk "${CASES[$(((i + round - 1) % n))]}" "$round"
        done
    done
    local name
    for name in ceiling authgate oauth2-proxy nginx+ceiling nginx+authgate; do
        run_rate "$name"
    done
    GRPC_LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
    run_grpc_bench
    # Peak memory is read while the servers still run; the criterion benches
    # run after they are gone, so nothing else competes for the CPU.
    RSS_authgate="$(peak_rss_kib "$PID_authgate")"
    RSS_oauth2_proxy="$(peak_rss_kib "$PID_oauth2_proxy")"
    RSS_ceiling="$(peak_rss_kib "$PID_ceiling")"
    RSS_nginx="$(peak_rss_kib "$PID_nginx")"
    local n pid
    for n in authgate oauth2_proxy ceiling nginx; do
        pid="PID_$n"
        printf -v "ANON_$n" '%s' "$(status_kib "${!pid}" RssAnon)"
        printf -v "FILE_$n" '%s' "$(status_kib "${!pid}" RssFile)"
    done
    stop_servers
    run_criterion
    write_report
    splice_grpc_section "$OUT"
}

# Sourced by bench/soak.sh for its helpers: run only when executed.
[[ "${BASH_SOURCE[0]}" != "$0" ]] || main "$@"
