#!/usr/bin/env bash
# Installs what ssogate needs on Debian 12, as root, and nothing that is already there: the
# Debian packages (build, tests, benchmarks, browser) and the npm packages (root and tests/idp).
# Idempotent; used by demo/run and tests/run-all.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(build-essential meson ninja-build pkg-config libevent-dev libyajl-dev liblmdb-dev
    libcmocka-dev libssl-dev node-llhttp clang clang-format libclang-rt-14-dev openssl curl nginx-light wrk
    lmdb-utils chromium gnuplot-nox linux-perf apache2 libapache2-mod-auth-openidc
    libsystemd-dev systemd scdoc man-db python3 debhelper dpkg-dev lintian postgresql libpq-dev)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # apache2 and nginx start as services when installed: the project starts its own instances.
    systemctl disable --now apache2 nginx >/dev/null 2>&1 || true
    service apache2 stop >/dev/null 2>&1 || true
    service nginx stop >/dev/null 2>&1 || true
fi

for dir in . tests/idp; do
    if [ -f "$dir/package-lock.json" ] && ! [ -d "$dir/node_modules" ] ||
        [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    fi
done
