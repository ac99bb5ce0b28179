#!/usr/bin/env bash
# The single test command: installs what is missing (as root on Debian 12), builds a release and a
# sanitizer build, runs every meson test in each, checks the formatting, runs the fuzzers for a bounded
# time when they exist. Idempotent: build directories are reused.
#
# Every test is counted: the Ok/Fail summary of each `meson test`, plus each other check as one test.
# The last line printed is exactly "N passed, N failed"; the exit status is non-zero if any failed.
#
# The .deb and lintian's report are left in ${PREFIX}deb/.
#
# Environment: FUZZ_SECONDS (per fuzzer, default 60), SKIP_FUZZ=1, SKIP_ASAN=1 to shorten a local run,
# BUILD_PREFIX (default "build-": build-release, build-asan, build-fuzz) to keep a run's builds apart.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PREFIX=${BUILD_PREFIX:-build-}
LOG_DIR=$ROOT/${PREFIX}logs
mkdir -p "$LOG_DIR"

PASSED=0
FAILED=0
FAILED_NAMES=()

pass() {
    PASSED=$((PASSED + $1))
}

fail() {
    FAILED=$((FAILED + $1))
    FAILED_NAMES+=("$2")
}

# Runs one check: check NAME COMMAND... ; output goes to $LOG_DIR/NAME.log, and its tail to stdout
# when it fails. Returns the command's status.
check() {
    local name=$1
    shift
    local log="$LOG_DIR/$name.log"
    echo "=== $name"
    if "$@" >"$log" 2>&1; then
        pass 1
        echo "--- $name: ok"
        return 0
    fi
    fail 1 "$name"
    echo "--- $name: FAILED (last lines of $log):"
    tail -n 60 "$log"
    return 1
}

# Configures (or reconfigures) a build directory with the given options, then builds it.
build() {
    local dir=$1
    shift
    if [ -d "$dir/meson-private" ]; then
        meson setup --reconfigure "$dir" "$@" || return 1
    else
        meson setup "$dir" "$@" || return 1
    fi
    ninja -C "$dir"
}

# Runs `meson test` in a build directory and counts its summary.
meson_tests() {
    local dir=$1
    shift
    local log="$LOG_DIR/test-$dir.log"
    echo "=== meson test in $dir"
    meson test -C "$dir" --print-errorlogs "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    local ok fails
    ok=$(awk '/^Ok:/ {n += $2} /^Expected Fail:/ {n += $3} END {print n + 0}' "$log")
    fails=$(awk '/^Fail:/ {n += $2} /^Unexpected Pass:/ {n += $3} /^Timeout:/ {n += $2} END {print n + 0}' "$log")
    if ! grep -q '^Ok:' "$log"; then
        fail 1 "meson test in $dir (no summary)"
        return 1
    fi
    pass "$ok"
    if [ "$fails" -gt 0 ]; then
        fail "$fails" "meson test in $dir"
    elif [ "$status" -ne 0 ]; then
        fail 1 "meson test in $dir (exit $status)"
    fi
    echo "--- meson test in $dir: $ok ok, $fails failed"
}

# `npm ci` in every directory with a lock file: the root, and test servers with their own dependencies.
npm_install() {
    local lock
    while IFS= read -r lock; do
        echo "npm ci in $(dirname "$lock")"
        (cd "$(dirname "$lock")" && npm ci --no-audit --no-fund) || return 1
    done < <(find . -name package-lock.json -not -path '*/node_modules/*' -not -path './build*' | sort)
}

# libFuzzer targets need clang; the compiler of an existing build dir is kept by meson.
build_fuzz() {
    CC=clang build "${PREFIX}fuzz" -Dfuzz=true
}

format_check() {
    local files
    mapfile -t files < <(find gateway include tests bench -path tests/fuzz/corpus -prune -o \
        \( -name '*.c' -o -name '*.h' \) -type f -print | sort)
    echo "${#files[@]} files"
    [ ${#files[@]} -eq 0 ] || clang-format --dry-run --Werror "${files[@]}"
}

# One PostgreSQL for every meson test run (release and ASan): tests/integration/lib/pg.js starts it on a
# free loopback port (as an unprivileged user when run as root: PostgreSQL refuses root), and each test
# makes its own database on it (SSOGATE_PG_HOST/PORT/USER). Tests that stop and restart PostgreSQL use a
# private server of their own. Stopped by its PID when this script exits, however it exits.
PG_STATE=$LOG_DIR/postgres
start_shared_pg() {
    node tests/integration/lib/pg.js start "$PG_STATE" || return 1
    local state=$PG_STATE/pg.json
    SSOGATE_PG_HOST=$(node -p 'require(process.argv[1]).host' "$state") &&
        SSOGATE_PG_PORT=$(node -p 'require(process.argv[1]).port' "$state") &&
        SSOGATE_PG_USER=$(node -p 'require(process.argv[1]).user' "$state") || return 1
    export SSOGATE_PG_HOST SSOGATE_PG_PORT SSOGATE_PG_USER
    echo "PostgreSQL on $SSOGATE_PG_HOST:$SSOGATE_PG_PORT"
}
stop_shared_pg() {
    [ -f "$PG_STATE/pg.json" ] && node tests/integration/lib/pg.js stop "$PG_STATE" >/dev/null 2>&1
    return 0
}

check packages scripts/install-deps.sh
check npm-ci npm_install
stop_shared_pg # one a killed run left behind
trap stop_shared_pg EXIT
check postgres start_shared_pg

if check build-release build "${PREFIX}release" --buildtype=release; then
    meson_tests "${PREFIX}release"
fi

if [ "${SKIP_ASAN:-0}" != 1 ]; then
    if check build-asan build "${PREFIX}asan" -Db_sanitize=address,undefined -Db_lundef=false; then
        ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1:detect_leaks=1 \
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
            SSOGATE_TEST_SLOWNESS=3 \
            meson_tests "${PREFIX}asan" --timeout-multiplier 3
    fi
fi

check clang-format format_check
check include-cycles python3 scripts/include-cycles

# The Debian package (issue 14): dpkg-buildpackage -us -uc -b on a copy of the tree, its files,
# conffile and scripts, and lintian without errors (about 20 s).
check debian-package scripts/build-deb "${PREFIX}deb"

if [ -f tests/fuzz/run-fuzzers.sh ] && [ "${SKIP_FUZZ:-0}" != 1 ]; then
    if check build-fuzz build_fuzz; then
        check fuzzers timeout 1800 bash tests/fuzz/run-fuzzers.sh "${PREFIX}fuzz" "${FUZZ_SECONDS:-60}"
    fi
fi

if [ ${#FAILED_NAMES[@]} -gt 0 ]; then
    echo "failed: ${FAILED_NAMES[*]}"
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
