#!/usr/bin/env bash
# Test of scripts/include-cycles on small trees made here: a tree without a cycle passes (exit 0),
# one with a cycle of three modules fails (exit 1) and names them, a header-only edge counts.
set -u
script=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}

mkdir -p "$dir/gateway" "$dir/include/ssogate"
printf '#include "ssogate/b.h"\n' >"$dir/gateway/a.c"
printf '#include "ssogate/c.h"\n#include "ssogate/b.h"\n' >"$dir/gateway/b.c"
: >"$dir/include/ssogate/a.h"
: >"$dir/include/ssogate/b.h"
: >"$dir/include/ssogate/c.h"
out=$(python3 "$script" "$dir" 2>&1) || fail "no cycle, yet exit $?: $out"
grep -q '^0 cycle(s) among 3 modules' <<<"$out" || fail "no cycle: $out"

# c.h includes a.h: a -> b -> c -> a.
printf '#include "ssogate/a.h"\n' >"$dir/include/ssogate/c.h"
out=$(python3 "$script" "$dir" 2>&1) && fail "a cycle, yet exit 0: $out"
grep -q '^3 modules in a cycle: a b c$' <<<"$out" || fail "the members: $out"
grep -q 'e.g. a -> b -> c -> a' <<<"$out" || fail "the cycle: $out"
echo "ok"
