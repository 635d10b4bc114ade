#!/usr/bin/env bash
# Runs every fuzz target for a set time, one after another on one core, and
# prints what each did: executions, executions per second, corpus size and
# findings (crash-, timeout-, oom- and leak- files under fuzz/artifacts/).
#
#   fuzz/run.sh [seconds per target] [target...]
#
# Works on a stable toolchain: cargo-fuzz is installed from crates.io (into
# ~/.cargo/bin, once), RUSTC_BOOTSTRAP=1 lets it pass libFuzzer's flags, and
# no sanitizer is used (authgate forbids unsafe code; libFuzzer still finds
# panics, overflows — debug assertions are on — hangs and runaway memory).
#
# Seeds are the committed fuzz/corpus/<target>/ (fuzz/seeds.py writes them);
# what the fuzzer finds on the way goes to fuzz/found/<target>/ (not
# committed), so later runs start where earlier ones stopped.
#
# Environment: FUZZ_CARGO_FUZZ_VERSION (default 0.13.2), FUZZ_ARGS (extra
# libFuzzer flags).
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(cookie redirect nginx_request envoy_check config ppl)
CARGO_FUZZ_VERSION="${FUZZ_CARGO_FUZZ_VERSION:-0.13.2}"
export PATH="$PATH:$HOME/.cargo/bin"
export RUSTC_BOOTSTRAP=1
# The fuzz crate is its own workspace with its own target directory: its
# instrumented build must not evict the main build's artifacts.
unset CARGO_TARGET_DIR

log() { printf '==> %s\n' "$*" >&2; }

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION (once)"
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" >&2
fi

cd "$FUZZ_DIR"
log "building the targets (release, debug assertions, no sanitizer)"
cargo fuzz build --sanitizer none --debug-assertions >&2

SUMMARY="$(mktemp)"
trap 'rm -f "$SUMMARY"' EXIT
printf '| target | seconds | execs | exec/s | corpus | new units | peak RSS MiB | findings |\n' >"$SUMMARY"
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n' >>"$SUMMARY"
status=0
for target in "${TARGETS[@]}"; do
    mkdir -p "found/$target" "artifacts/$target"
    log "fuzzing $target for $SECONDS_PER_TARGET s"
    out="found/$target.log"
    set +e
    timeout $((SECONDS_PER_TARGET + 300)) cargo fuzz run --sanitizer none --debug-assertions \
        "$target" "found/$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -max_len=8192 ${FUZZ_ARGS:-} >"$out" 2>&1
    rc=$?
    set -e
    stat() { awk -v k="stat::$1:" '$1 == k { print $2 }' "$out" | tail -n1; }
    execs="$(stat number_of_executed_units)"
    rate="$(stat average_exec_per_sec)"
    added="$(stat new_units_added)"
    rss="$(stat peak_rss_mb)"
    corpus="$(find "found/$target" "corpus/$target" -type f | wc -l)"
    findings="$(find "artifacts/$target" -type f | wc -l)"
    if ((rc != 0)) || ((findings > 0)); then
        status=1
        found="$(find "artifacts/$target" -type f -printf '%f ' | head -c 300)"
        tail -n 40 "$out" >&2
    else
        found="none"
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$target" "$SECONDS_PER_TARGET" \
        "${execs:-?}" "${rate:-?}" "$corpus" "${added:-?}" "${rss:-?}" "$found" >>"$SUMMARY"
done
cat "$SUMMARY"
exit "$status"
