#!/usr/bin/env bash
# Sign-out at scale (issue #21): three `authgate serve` replicas (release)
# sharing one Redis answer a steady background load about many signed-in
# users; sessions are revoked one at a time (by cookie, as sign-out does;
# then a few by listed id, as `authgate sessions revoke --session` does),
# and every replica is polled every millisecond with the revoked cookie
# until it answers 401 (examples/signout_measure.rs). Replaces
# the "Sign-out at scale" section of BENCHMARKS.md with the delay
# distribution over all (replica, revocation) pairs.
#
#   bench/signout.sh
#
# Loopback only, bounded in time (the measurement gives up on a replica
# after 5 s per revocation; the whole run after SIGNOUT_TIMEOUT), and
# everything started here is stopped on exit. Needs redis-server (what
# scripts/test.sh installs). Run it on a quiet machine: on a shared one the
# tail measures the neighbours.
#
# Environment (all optional):
#   SIGNOUT_SESSIONS     signed-in users the background load asks about (default 5000)
#   SIGNOUT_REVOCATIONS  sessions signed out by cookie, one at a time (default 200)
#   SIGNOUT_BY_ID        sessions then revoked by listed id, one at a time (default 20)
#   SIGNOUT_RATE         background load, requests per second over all replicas (default 1500)
#   SIGNOUT_REPLICAS     authgate replicas (default 3)
#   SIGNOUT_PORT_BASE    first of 1 + 2 × replicas loopback ports (default 18700)
#   SIGNOUT_TIMEOUT      seconds the measurement may take at most (default 600)
#   BENCH_OUT            the report (default BENCHMARKS.md)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SESSIONS="${SIGNOUT_SESSIONS:-5000}"
REVOCATIONS="${SIGNOUT_REVOCATIONS:-200}"
BY_ID="${SIGNOUT_BY_ID:-20}"
RATE="${SIGNOUT_RATE:-1500}"
REPLICAS="${SIGNOUT_REPLICAS:-3}"
PORT_BASE="${SIGNOUT_PORT_BASE:-18700}"
TIMEOUT="${SIGNOUT_TIMEOUT:-600}"
OUT="${BENCH_OUT:-$REPO_ROOT/BENCHMARKS.md}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/signout.sh: error: %s\n' "$*" >&2; exit 1; }
command -v redis-server >/dev/null || die "redis-server is required (scripts/test.sh installs it)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/authgate-signout.XXXXXX")"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() {
    local _
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1 (logs in $WORK)"
}

log "building authgate and examples/signout_measure.rs (release)"
(cd "$REPO_ROOT" && cargo build --release --quiet --bin authgate --example signout_measure)
TARGET_DIR="$(cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)"
AUTHGATE_BIN="$TARGET_DIR/release/authgate"
MEASURE_BIN="$TARGET_DIR/release/examples/signout_measure"

REDIS_PORT="$PORT_BASE"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"

# One configuration per replica (its own ports), the same secret and store.
ADDRS=()
for ((i = 0; i < REPLICAS; i++)); do
    http=$((PORT_BASE + 1 + 2 * i))
    grpc=$((http + 1))
    cat >"$WORK/authgate-$i.yaml" <<YAML
authenticate_service_url: https://auth.example.test
# Never asked: the sessions are made through the library.
idp_provider_url: http://127.0.0.1:9/dex
idp_client_id: authgate
idp_client_secret: client-secret
cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=
address: 127.0.0.1:$http
grpc_address: 127.0.0.1:$grpc
session_store: redis://127.0.0.1:$REDIS_PORT
refresh_interval: 24h
log_level: warn
policy:
  - id: app
    from: https://app.example.test
    allowed_groups: [devops]
YAML
    "$AUTHGATE_BIN" serve --config "$WORK/authgate-$i.yaml" >"$WORK/authgate-$i.log" 2>&1 &
    PIDS+=($!)
    ADDRS+=("127.0.0.1:$http")
done
for addr in "${ADDRS[@]}"; do wait_port "${addr##*:}"; done

log "measuring: $SESSIONS signed-in users, $REVOCATIONS + $BY_ID revocations, $RATE req/s background, $REPLICAS replicas"
report="$WORK/report.txt"
status=0
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
timeout "$TIMEOUT" "$MEASURE_BIN" "$WORK/authgate-0.yaml" "$SESSIONS" "$REVOCATIONS" "$BY_ID" "$RATE" "${ADDRS[@]}" \
    2>&1 | tee "$report" || status=$?
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
lines="$(sed -n 's/^signout report: //p' "$report")"
# The goal: every (replica, revocation) pair refused within 1 s.
late="$(sed -n 's/.*within 1 s: \([0-9]*\) of \([0-9]*\).*/\1 \2/p' "$report" | awk '$1 != $2 { n += $2 - $1 } END { print n + 0 }')"
if [[ "$status" != 0 ]]; then
    verdict="FAIL (exit $status; see the output)"
elif [[ "$late" != 0 ]]; then
    verdict="FAIL: $late (replica, revocation) pairs took longer than the 1 s goal"
    status=1
else
    verdict="pass"
fi

# shellcheck source=bench/report.sh
source "$REPO_ROOT/bench/report.sh"
tmp="$(mktemp)"
without_section "Sign-out at scale" "$OUT" >"$tmp"
{
    cat "$tmp"
    cat <<MD

## Sign-out at scale

Produced by \`bench/signout.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), authgate $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown).
$REPLICAS \`authgate serve\` replicas (release) sharing one Redis on
loopback; a background load of $RATE req/s (\`/oauth2/auth\`, 24
keep-alive connections spread over the replicas) about $SESSIONS
signed-in users, every answer checked (200). Other sessions, each first
accepted by every replica (so each holds it in its cache), are revoked one
at a time (\`examples/signout_measure.rs\`): $REVOCATIONS by their cookie,
as sign-out does (\`Sessions::revoke\`: one delete, published), then
$BY_ID by their listed id, as \`authgate sessions revoke --session\` does
(\`Sessions::revoke_where\`: it deletes the record first, then searches
every user's index for the id to report it and drop its entry). From the start of each revocation one poller per
replica asks about the revoked cookie every millisecond on its own
connection until the answer is 401. The delay is the time from the start
of the revocation call to that 401, per (replica, revocation) pair; the
1 ms poll interval is its resolution. The load average was $load_before
before and $load_after after (two cores: above 2 the tail measures the
neighbours).

\`\`\`
${lines:-no report lines (the run failed before measuring)}
\`\`\`

Why it is this fast: the revocation deletes the record with a script that
also \`PUBLISH\`es the key on \`authgate:session:changed\`; every replica
keeps a subscription to that channel (\`Sessions::follow_changes\`) and
drops its cached copy when the message arrives, so its next decision for
that cookie reads the store, finds nothing and answers 401. The delay is
the store's delete
plus one pub/sub hop and the poll interval; no replica waits for its cache's 30 s
time to live. If a replica's subscription drops, it drops its whole cache
on resubscribing (messages sent meanwhile are lost), so a missed message
cannot leave a revoked session cached.

Verdict: $verdict.
MD
} >"$OUT"
rm -f "$tmp"
log "wrote the Sign-out at scale section of $OUT"
exit "$status"
