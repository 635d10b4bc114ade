# Helpers for the scripts that each own one section of BENCHMARKS.md
# (sourced by bench/soak.sh, bench/failover.sh and bench/signout.sh).

# without_section HEADING FILE: FILE without its "## HEADING" section (up
# to the next "## " heading) and without trailing blank lines, on stdout;
# nothing if FILE does not exist. The caller appends the new section.
without_section() {
    local heading="$1" file="$2" tmp
    [[ -f "$file" ]] || return 0
    tmp="$(mktemp)"
    awk -v h="## $heading" '$0 == h { skip = 1; next } skip && /^## / { skip = 0 } !skip' "$file" >"$tmp"
    sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$tmp"
    cat "$tmp"
    rm -f "$tmp"
}
