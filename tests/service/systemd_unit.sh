#!/usr/bin/env bash
# The installed units (issue 14): `systemd-analyze verify` without a warning, and
# `systemd-analyze security --offline=yes` at "OK" or better (exposure at most 4.9), score printed.
# verify runs with --root on the install tree, to which the host's targets and /bin/kill are added
# (the unit's dependencies and ExecReload), so it checks the unit exactly as installed.
# usage: systemd_unit.sh BUILD_DIR UNITDIR
set -euo pipefail
build=$1 unitdir=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

meson install -C "$build" --destdir "$root" --no-rebuild --quiet
mkdir -p "$root/bin"
cp /bin/kill "$root/bin/kill"
cp -a /lib/systemd/system/*.target /lib/systemd/system/*.slice "$root$unitdir/"

units=("$root$unitdir/ssogate.service" "$root$unitdir/ssogate.socket")
out=$(systemd-analyze verify --man=no --root="$root" "${units[@]}" 2>&1) || {
    echo "FAIL: systemd-analyze verify: $out"
    exit 1
}
if [ -n "$out" ]; then
    echo "FAIL: systemd-analyze verify warned: $out"
    exit 1
fi
echo "ok: systemd-analyze verify"

report=$(systemd-analyze security --offline=yes --threshold=49 --root="$root" "${units[0]}" 2>&1) || {
    echo "$report" | tail -n 40
    echo "FAIL: exposure above 4.9 (worse than OK)"
    exit 1
}
score=$(echo "$report" | sed -n 's/.*Overall exposure level for ssogate.service: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p')
[ -n "$score" ] || { echo "FAIL: no exposure level in: $report"; exit 1; }
echo "ok: systemd-analyze security --offline=yes: $score"
