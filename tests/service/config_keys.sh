#!/usr/bin/env bash
# scripts/check-config-keys on the tree (parser, policy/README.md and the generated ssogate.json(5)
# agree), then on altered copies, each of which it must refuse with the right complaint.
# usage: config_keys.sh CHECKER POLICY_C README_MD MAN_PAGE
set -euo pipefail
checker=$1 policy=$2 readme=$3 man=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 "$checker" "$policy" "$readme" "$man"

refused() { # refused WHAT EXPECTED_MESSAGE ARGS...
    local what=$1 expected=$2
    shift 2
    local out
    if out=$(python3 "$checker" "$@"); then
        echo "FAIL: $what was accepted"
        exit 1
    fi
    grep -qF "$expected" <<<"$out" || { echo "FAIL: $what: no \"$expected\" in: $out"; exit 1; }
    echo "ok: $what refused"
}

sed 's/SG_F_INT("drain_timeout_s"/SG_F_INT("drain_grace_s"/' "$policy" >"$tmp/policy.c"
refused "a parser key the README lacks" 'the parser accepts "drain_grace_s"' "$tmp/policy.c" "$readme" "$man"
refused "a README key the parser lacks" 'documents "drain_timeout_s"' "$tmp/policy.c" "$readme" "$man"
sed 's/min_body_rate/min_rate/g' "$man" >"$tmp/page.5"
refused "a key missing from the man page" '"min_body_rate" is missing' "$policy" "$readme" "$tmp/page.5"
