#!/bin/sh
# Runs every libFuzzer target of a -Dfuzz=true build, seeded with the committed
# corpus, and prints one line per target. New inputs go to a scratch
# directory, not into the committed corpus; a crash leaves its input in
# ARTIFACT_DIR (default BUILD_DIR/fuzz-artifacts). Exits 1 when any target
# crashed, 2 on a usage or build error.
#
# Time: SECONDS (run-all.sh passes FUZZ_SECONDS, default 60) goes in full to
# each target of the strict data path (target, headers, wire, uplink: the
# newest parsers, and the ones every request meets); the five older targets,
# whose corpora have long stopped growing, the login-state decoder (a small
# fixed layout), the client's address behind trusted proxies (a short
# list walk) and a log line's value (one pass over its bytes) get three
# fifths of it. With the default that is 4 x 60 + 8 x 36 = 528 s for all
# twelve.
#
#   CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
#   tests/fuzz/run-fuzzers.sh build-fuzz 60
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD_DIR SECONDS" >&2
    exit 2
fi
build=$1
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
artifacts=${ARTIFACT_DIR:-$build/fuzz-artifacts}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT INT TERM
mkdir -p "$artifacts"

# The largest input worth trying per target: past each parser's own limit.
max_len() {
    case $1 in
    jws) echo 20000 ;;
    jwks) echo 65536 ;;
    cookie) echo 70000 ;;
    target) echo 8300 ;;
    log) echo 12000 ;;
    *) echo 8192 ;;
    esac
}

# Seconds for one target (see the comment at the top).
budget() {
    case $1 in
    target | headers | wire | uplink) echo "$seconds" ;;
    *) echo $((seconds * 3 / 5 > 0 ? seconds * 3 / 5 : 1)) ;;
    esac
}

failed=0
for t in jws b64url jwks cookie redirect target headers loginstate wire uplink clientaddr log; do
    bin=$build/tests/fuzz/fuzz_$t
    if [ ! -x "$bin" ]; then
        echo "fuzz_$t: not built (configure with -Dfuzz=true and clang)" >&2
        exit 2
    fi
    mkdir -p "$scratch/$t"
    log=$artifacts/fuzz_$t.log
    secs=$(budget "$t")
    "$bin" -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/fuzz_$t-" \
        "$scratch/$t" "$here/corpus/$t" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    if [ $rc -eq 0 ]; then
        echo "fuzz_$t: ok, ${runs:-?} runs in ${secs}s, ${cov:-cov: ?}"
    else
        crash=$(ls -t "$artifacts"/fuzz_"$t"-* 2>/dev/null | head -n 1)
        echo "fuzz_$t: FAILED (exit $rc), input ${crash:-none}, log $log"
        failed=1
    fi
done
exit $failed
