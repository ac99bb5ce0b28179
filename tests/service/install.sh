#!/usr/bin/env bash
# `meson install --destdir` (issue 14): exactly the expected files and nothing else, an edited
# configuration survives a second install, and the installed ssogate accepts the installed example.
# usage: install.sh BUILD_DIR SBINDIR MANDIR UNITDIR SYSCONFDIR MAN(true|false)
set -euo pipefail
build=$1 sbindir=$2 mandir=$3 unitdir=$4 sysconfdir=$5 man=$6
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT

meson install -C "$build" --destdir "$dest" --no-rebuild --quiet

expected=("$sbindir/ssogate" "$sbindir/ssogate-admin" "$unitdir/ssogate.service"
    "$unitdir/ssogate.socket" "$sysconfdir/ssogate/ssogate.json")
if [ "$man" = true ]; then
    expected+=("$mandir/man8/ssogate.8" "$mandir/man8/ssogate-admin.8" "$mandir/man5/ssogate.json.5")
fi
if ! diff -u <(printf '%s\n' "${expected[@]}" | sort) \
    <(cd "$dest" && find . \( -type f -o -type l \) | sed 's|^\.||' | sort); then
    echo "FAIL: the installed files differ from the expected list (- expected, + installed)"
    exit 1
fi
echo "ok: ${#expected[@]} files installed, no others"

for bin in ssogate ssogate-admin; do
    [ -x "$dest$sbindir/$bin" ] || { echo "FAIL: $sbindir/$bin is not executable"; exit 1; }
done
"$dest$sbindir/ssogate" --version | grep -q '^ssogate ' || { echo "FAIL: ssogate --version"; exit 1; }

config=$dest$sysconfdir/ssogate/ssogate.json
grep -q '"data_dir": "/var/lib/ssogate"' "$config" || { echo "FAIL: example data_dir is not /var/lib/ssogate"; exit 1; }
"$dest$sbindir/ssogate" -t -c "$config"
grep -q "ExecStart=$sbindir/ssogate -c $sysconfdir/ssogate/ssogate.json\$" "$dest$unitdir/ssogate.service" ||
    { echo "FAIL: the unit does not run the installed binary on the installed configuration"; exit 1; }

# An operator's configuration is never replaced.
echo '{"edited": true}' >"$config"
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet
if [ "$(cat "$config")" != '{"edited": true}' ]; then
    echo "FAIL: a second install replaced the edited configuration"
    exit 1
fi
echo "ok: an edited configuration is kept by a second install"
