#!/usr/bin/env bash
# The one command that runs every test on a fresh machine (Debian 12, root,
# Rust, Go, Python 3 and Node.js with npm present): installs what the
# end-to-end suite needs,
# builds the pinned Dex, grpcurl, Caddy, helm and cargo-deny and installs
# oidc-provider (npm ci) once (cached),
# checks the dependency tree (cargo deny), formatting and lints (cargo fmt,
# cargo clippy), then runs the whole cargo test suite.
#
#   scripts/test.sh
#
# Environment:
#   AUTHGATE_E2E_CACHE  where built tools are cached (default ~/.cache/authgate-e2e)
#   CARGO_TARGET_DIR    as usual for cargo
#
# Nothing is skipped but the advisory check where no snapshot of the RustSec
# database sits next to the checkout (../shared/advisory-db; it says so): a
# piece that cannot be installed or built stops the run with a message
# saying which.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where rustup and the Go tarball install, in case the caller's PATH lacks them.
export PATH="$PATH:$HOME/.cargo/bin:/usr/local/go/bin"
CACHE_DIR="${AUTHGATE_E2E_CACHE:-$HOME/.cache/authgate-e2e}"
DEX_MODULE_DIR="$REPO_ROOT/tests/e2e/dex"
# grpcurl, the independent gRPC client the Envoy ext_authz tests drive
# (tests/it/grpcurl.rs reads this line to find the cached binary).
GRPCURL_VERSION=v1.9.4
# helm lints and renders deploy/helm/authgate (tests/it/packaging.rs reads
# these lines too).
HELM_VERSION=v3.22.0
# Validates the rendered manifests against Kubernetes' JSON schemas, which
# this PyPI package ships (kubeconform would download them; no network here).
KUBERNETES_VALIDATE_VERSION=1.37.0
# Caddy, the forward_auth proxy of tests/it/caddy_flow.rs (found the same way).
CADDY_VERSION=v2.11.9
# Jaeger (v2), which the tracing test exports spans to and queries back
# (tests/it/tracing.rs); built from tests/e2e/jaeger/go.mod, which pins the
# same version (a `go install` of it is refused: its go.mod has replaces).
JAEGER_VERSION=v1.75.0
# cargo-deny, built from crates.io once into the cache (deny.toml).
CARGO_DENY_VERSION=0.20.2

# Debian packages the end-to-end tests start (their own instances, on
# loopback ports in temp dirs; the system services are never used).
# systemd: only its systemd-analyze, to verify deploy/systemd/authgate.service.
# prometheus: only its promtool, to check and unit-test deploy/prometheus/.
# redis-server brings redis-tools: redis-cli makes the Redis Cluster of
# tests/it/failover.rs (the sentinels are redis-server --sentinel).
APT_PACKAGES=(nginx haproxy 389-ds-base ldap-utils redis-server chromium chromium-driver openssl ca-certificates libnss3-tools systemd curl prometheus)
# Programs those packages must provide.
REQUIRED_PROGRAMS=(nginx haproxy ns-slapd pwdhash pk12util ldapsearch ldapmodify redis-server redis-cli chromium chromedriver openssl certutil systemd-analyze curl promtool)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'scripts/test.sh: error: %s\n' "$*" >&2; exit 1; }

have_program() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }

missing_packages() {
    local pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || echo "$pkg"
    done
}

install_system_packages() {
    local missing
    missing="$(missing_packages)"
    if [[ -z "$missing" ]]; then
        log "system packages present"
    else
        command -v apt-get >/dev/null || die "apt-get not found; install by hand: $missing"
        [[ "$(id -u)" == 0 ]] || die "not root; install by hand: sudo apt-get install $missing"
        log "installing: $(echo "$missing" | tr '\n' ' ')"
        # Debian's maintainer scripts try to start nginx/redis/prometheus; on a
        # machine without an init system that fails harmlessly, and the tests
        # never use those instances.
        apt-get update -qq || die "apt-get update failed"
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
            >/dev/null || die "apt-get install failed for: $missing"
    fi
    local prog
    for prog in "${REQUIRED_PROGRAMS[@]}"; do
        have_program "$prog" || die "$prog not found after installing ${APT_PACKAGES[*]}"
    done
}

# The Dex version is whatever tests/e2e/dex/go.mod pins; the cache key is that
# pseudo-version plus a hash of go.mod and go.sum, so changing the pin rebuilds.
dex_version() {
    local version
    version="$(awk '$1 == "github.com/dexidp/dex" { print $2 }' "$DEX_MODULE_DIR/go.mod")"
    [[ -n "$version" ]] || die "cannot read the Dex pin from tests/e2e/dex/go.mod"
    echo "$version"
}

build_dex() {
    command -v go >/dev/null || die "go not found (Go 1.24+ is needed to build Dex)"
    local version key bin
    version="$(dex_version)"
    key="$version-$(cat "$DEX_MODULE_DIR/go.mod" "$DEX_MODULE_DIR/go.sum" | sha256sum | cut -c1-12)"
    bin="$CACHE_DIR/dex-$key/dex"
    if [[ -x "$bin" ]]; then
        log "Dex $version cached at $bin"
    else
        log "building Dex $version (first run only; a few minutes)"
        mkdir -p "$(dirname "$bin")"
        local release
        release="$(awk '$2 == "dex-release:" { print $3 }' "$DEX_MODULE_DIR/go.mod")"
        (cd "$DEX_MODULE_DIR" && go build -trimpath -ldflags "-X main.version=${release:-$version}" \
            -o "$bin.tmp" github.com/dexidp/dex/cmd/dex) \
            || die "building Dex $version failed (see the Go output above)"
        mv "$bin.tmp" "$bin"
    fi
    "$bin" version >/dev/null || die "the Dex binary at $bin does not run"
    log "$("$bin" version | head -n1)"
    export AUTHGATE_DEX_BIN="$bin"
}

# install_go_tool NAME PACKAGE VERSION ENV_VAR VERSION_ARG [MODULE_DIR]:
# `go install`s PACKAGE@VERSION (or, with MODULE_DIR, builds PACKAGE as that
# module pins it) into $CACHE_DIR/NAME-VERSION/ once, checks that
# `NAME VERSION_ARG` runs, and exports ENV_VAR with the binary's path.
install_go_tool() {
    local name="$1" package="$2" version="$3" env_var="$4" version_arg="$5" module="${6:-}"
    command -v go >/dev/null || die "go not found (needed to build $name)"
    local bin="$CACHE_DIR/$name-$version/$name"
    if [[ -x "$bin" ]]; then
        log "$name $version cached at $bin"
    else
        log "building $name $version (first run only)"
        mkdir -p "$(dirname "$bin")"
        if [[ -n "$module" ]]; then
            grep -q "^[[:space:]]*${package%/cmd/*} $version\b" "$module/go.mod" \
                || die "$module/go.mod does not pin ${package%/cmd/*} $version"
            (cd "$module" && go build -trimpath -o "$bin.tmp" "$package" && mv "$bin.tmp" "$bin")
        else
            GOBIN="$(dirname "$bin")" go install -trimpath "$package@$version"
        fi || die "building $name $version failed (see the Go output above)"
    fi
    "$bin" "$version_arg" >/dev/null 2>&1 || die "the $name binary at $bin does not run"
    export "$env_var=$bin"
}

install_kubernetes_validate() {
    local venv="$CACHE_DIR/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
    local bin="$venv/bin/kubernetes-validate"
    if [[ -x "$bin" ]]; then
        log "kubernetes-validate $KUBERNETES_VALIDATE_VERSION cached at $bin"
    else
        command -v python3 >/dev/null || die "python3 not found (needed for kubernetes-validate)"
        log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $venv"
        python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        "$venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
            || die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
    fi
    "$bin" --version >/dev/null || die "kubernetes-validate at $bin does not run"
    export AUTHGATE_KUBERNETES_VALIDATE_BIN="$bin"
}

# oidc-provider (npm, OpenID-certified), the provider of the RP-initiated and
# back-channel logout tests (tests/it/provider_logout.rs): `npm ci` from
# tests/oidc-provider's committed lock file into the cache, once per lock
# file (the directory is named after its hash, which the test computes too).
install_oidc_provider() {
    local src="$REPO_ROOT/tests/oidc-provider" key dir
    command -v node >/dev/null || die "node not found (needed for oidc-provider)"
    command -v npm >/dev/null || die "npm not found (needed for oidc-provider)"
    key="$(sha256sum "$src/package-lock.json" | cut -c1-16)"
    dir="$CACHE_DIR/oidc-provider-$key"
    if [[ -f "$dir/node_modules/oidc-provider/package.json" ]]; then
        log "oidc-provider cached at $dir"
    else
        log "installing oidc-provider (npm ci) into $dir"
        rm -rf "$dir" && mkdir -p "$dir"
        cp "$src/package.json" "$src/package-lock.json" "$dir/"
        (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
            || die "npm ci of oidc-provider failed (see the npm output above)"
    fi
    export AUTHGATE_OIDC_PROVIDER_MODULES="$dir/node_modules"
}

# Licences, duplicate crates and sources of the dependency tree (deny.toml),
# then advisories against CI's offline snapshot of the RustSec database.
run_cargo_deny() {
    local root="$CACHE_DIR/cargo-deny-$CARGO_DENY_VERSION"
    if [[ ! -x "$root/bin/cargo-deny" ]]; then
        log "building cargo-deny $CARGO_DENY_VERSION (first run only)"
        cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION" --root "$root" \
            || die "building cargo-deny $CARGO_DENY_VERSION failed (see the cargo output above)"
    fi
    log "cargo deny check licenses bans sources"
    (cd "$REPO_ROOT" && "$root/bin/cargo-deny" check licenses bans sources) \
        || die "cargo deny found a problem in the dependency tree (see above)"
    run_cargo_deny_advisories "$root/bin/cargo-deny"
}

# Advisories, against the snapshot of the RustSec database that CI keeps in
# ../shared/advisory-db (its SNAPSHOT.md): cargo-deny reads a database only
# from a git repository named after the database URL's hash, so the files
# are committed into a temporary one, dated as the snapshot, and checked
# with --offline. Without the snapshot (a developer's clone) the check is
# skipped: `cargo deny check advisories` fetches the database as usual.
ADVISORY_DB_DIR_NAME=advisory-db-3157b0e258782691
run_cargo_deny_advisories() {
    local deny="$1" snapshot
    snapshot="$(cd "$REPO_ROOT/.." && pwd)/shared/advisory-db"
    if [[ ! -f "$snapshot/SNAPSHOT.md" ]]; then
        log "skipped the offline advisory check: no RustSec snapshot at $snapshot (run \`cargo deny check advisories\` where the database can be fetched)"
        return
    fi
    local work date status=0
    work="$(mktemp -d)"
    cp -r "$snapshot" "$work/$ADVISORY_DB_DIR_NAME"
    # The snapshot's date (its SNAPSHOT.md's first ISO date) is the age
    # cargo-deny reports; today's if the file gives none.
    date="$(grep -oEm1 '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$snapshot/SNAPSHOT.md" || true)"
    date="${date:+${date}T00:00:00Z}"
    (cd "$work/$ADVISORY_DB_DIR_NAME" && git init -q && git add -A \
        && GIT_AUTHOR_DATE="${date:-now}" GIT_COMMITTER_DATE="${date:-now}" \
            git -c user.name=snapshot -c user.email=snapshot@localhost commit -q -m snapshot) \
        || { rm -rf "$work"; die "cannot make a git repository of the advisory snapshot"; }
    # deny.toml with db-path pointed at it.
    sed "s|^\[advisories\]\$|[advisories]\ndb-path = \"$work\"|" "$REPO_ROOT/deny.toml" >"$work/deny.toml"
    if ! grep -q "^db-path = " "$work/deny.toml"; then
        rm -rf "$work"
        die "deny.toml has no [advisories] table"
    fi
    log "cargo deny --offline check advisories (RustSec snapshot of ${date:-unknown date})"
    (cd "$REPO_ROOT" && "$deny" --offline --config "$work/deny.toml" check advisories) || status=$?
    rm -rf "$work"
    [[ "$status" == 0 ]] \
        || die "cargo deny found an advisory (see above): upgrade, or ignore it in deny.toml with the reason it does not apply"
}

run_cargo_tests() {
    command -v cargo >/dev/null || die "cargo not found"
    # Style and lints first (Cargo.toml's [lints]: no unwrap, expect or
    # panic outside tests, no lock held across an await).
    log "cargo fmt --check; cargo clippy --all-targets -- -D warnings"
    (cd "$REPO_ROOT" && cargo fmt --all -- --check) \
        || die "cargo fmt found unformatted code (run cargo fmt --all)"
    (cd "$REPO_ROOT" && cargo clippy --all-targets --quiet -- -D warnings) \
        || die "cargo clippy found a problem (see above)"
    log "cargo test --all-targets"
    (cd "$REPO_ROOT" && cargo test --all-targets)
    # The fuzz targets call the crate's API: they must keep compiling even
    # though only fuzz/run.sh runs them (RUSTC_BOOTSTRAP as in that script).
    log "cargo check of the fuzz targets"
    (cd "$REPO_ROOT/fuzz" && RUSTC_BOOTSTRAP=1 cargo check --locked --bins) \
        || die "the fuzz targets do not compile against the crate (see above)"
}

main() {
    install_system_packages
    build_dex
    install_go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION" \
        AUTHGATE_GRPCURL_BIN -version
    install_go_tool caddy github.com/caddyserver/caddy/v2/cmd/caddy "$CADDY_VERSION" \
        AUTHGATE_CADDY_BIN version
    install_go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
        AUTHGATE_HELM_BIN version
    install_go_tool jaeger github.com/jaegertracing/jaeger/cmd/jaeger "$JAEGER_VERSION" \
        AUTHGATE_JAEGER_BIN version "$REPO_ROOT/tests/e2e/jaeger"
    install_kubernetes_validate
    install_oidc_provider
    run_cargo_deny
    run_cargo_tests
}

main "$@"
