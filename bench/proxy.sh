#!/usr/bin/env bash
# Proxy throughput and latency: ssogate against nginx as a plain reverse proxy, both in front of the same
# upstream (nginx serving a small static file), all on loopback. Each proxy gets a short warm-up, then
# `wrk -t2 -c64 -d10s --latency` runs alternate between the two, twice each. Prints requests/s and
# p50/p90/p99 for both and the ratio ssogate/nginx, and writes the figures to bench/results/.
#
# Usage: bench/proxy.sh   (env: SSOGATE_BIN, default build-release/gateway/ssogate, built if missing;
#                          DURATION, default 10s; CONNECTIONS, default 64; ROUNDS, default 2)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-2}
BIN=${SSOGATE_BIN:-$ROOT/build-release/gateway/ssogate}

for tool in nginx wrk node; do
    command -v "$tool" >/dev/null || {
        echo "bench/proxy.sh: $tool is needed" >&2
        exit 1
    }
done
if [ ! -x "$BIN" ]; then
    [ -d build-release/meson-private ] || meson setup build-release --buildtype=release >/dev/null
    ninja -C build-release gateway/ssogate >/dev/null
fi

WORK=$(mktemp -d /tmp/ssogate-bench.XXXXXX)
# nginx workers may run as another user than the master: they must be able to read the static file.
chmod 755 "$WORK"
mkdir -p "$WORK/www" "$WORK/tmp" "$WORK/data"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# Waits (bounded) until something accepts connections on 127.0.0.1:$1.
wait_port() {
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench/proxy.sh: nothing listens on port $1" >&2
    return 1
}

# render TEMPLATE OUT PORT [UPSTREAM_PORT]
render() {
    sed -e "s|@PREFIX@|$WORK|g" -e "s|@PORT@|$3|g" -e "s|@UPSTREAM_PORT@|${4:-}|g" "$1" >"$2"
}

head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/index.html"

UPSTREAM_PORT=$(free_port)
render bench/nginx-upstream.conf.in "$WORK/upstream.conf" "$UPSTREAM_PORT"
nginx -p "$WORK" -c "$WORK/upstream.conf" &
PIDS+=($!)
wait_port "$UPSTREAM_PORT"

NGINX_PORT=$(free_port)
render bench/nginx-proxy.conf.in "$WORK/proxy.conf" "$NGINX_PORT" "$UPSTREAM_PORT"
nginx -p "$WORK" -c "$WORK/proxy.conf" &
PIDS+=($!)
wait_port "$NGINX_PORT"

cat >"$WORK/ssogate.json" <<EOF
{
  "listeners": [{"address": "127.0.0.1", "port": 0}],
  "public_url": "http://127.0.0.1:1",
  "upstream": {"url": "http://127.0.0.1:$UPSTREAM_PORT", "pool_size": 64},
  "data_dir": "$WORK/data",
  "log": {"level": "info", "access": false}
}
EOF
"$BIN" -c "$WORK/ssogate.json" 2>"$WORK/ssogate.log" &
PIDS+=($!)
SSOGATE_PORT=
for _ in $(seq 1 100); do
    SSOGATE_PORT=$(sed -n 's/.*"event":"listening".*"port":\([0-9]*\).*/\1/p' "$WORK/ssogate.log" | head -n 1)
    [ -n "$SSOGATE_PORT" ] && break
    sleep 0.1
done
[ -n "$SSOGATE_PORT" ] || {
    echo "bench/proxy.sh: ssogate did not start:" >&2
    cat "$WORK/ssogate.log" >&2
    exit 1
}

for port in "$SSOGATE_PORT" "$NGINX_PORT"; do
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/index.html")
    [ "$status" = 200 ] || {
        echo "bench/proxy.sh: port $port answers $status, not 200" >&2
        exit 1
    }
done

# Parses wrk --latency output (file $1) into: rps p50_ms p90_ms p99_ms errors (non-2xx + socket errors).
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v + 0
        }
        /^Requests\/sec:/ { rps = $2 }
        /^ +50%/ { p50 = ms($2) }
        /^ +90%/ { p90 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
        END { printf "%.2f %.3f %.3f %.3f %d\n", rps, p50, p90, p99, errors }
    ' "$1"
}

# CPU ticks (user + system) of a process and its children so far.
cpu_ticks() {
    local pid total=0 ticks
    for pid in "$1" $(pgrep -P "$1"); do
        ticks=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || ticks=0
        total=$((total + ${ticks:-0}))
    done
    echo "$total"
}

URL_PATH=/index.html
declare -A PORT_OF=([ssogate]=$SSOGATE_PORT [nginx]=$NGINX_PORT)
declare -A PID_OF=([ssogate]=${PIDS[2]} [nginx]=${PIDS[1]})
for name in ssogate nginx; do
    wrk -t2 -c"$CONNECTIONS" -d2s "http://127.0.0.1:${PORT_OF[$name]}$URL_PATH" >/dev/null
done

RUNS_JSON=""
declare -A SUM_RPS SUM_P50 SUM_P90 SUM_P99 SUM_CPU ERRORS
for round in $(seq 1 "$ROUNDS"); do
    for name in ssogate nginx; do
        out="$WORK/wrk-$name-$round.txt"
        before=$(cpu_ticks "${PID_OF[$name]}")
        wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:${PORT_OF[$name]}$URL_PATH" >"$out"
        after=$(cpu_ticks "${PID_OF[$name]}")
        read -r rps p50 p90 p99 errors < <(parse_wrk "$out")
        requests=$(awk '/requests in/ { print $1 }' "$out")
        cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
            'BEGIN { printf "%.2f", (n > 0 ? t / hz / n * 1e6 : 0) }')
        printf '%-8s round %d: %10.0f req/s  p50 %7.3f ms  p90 %7.3f ms  p99 %7.3f ms  CPU %6.2f us/req  errors %d\n' \
            "$name" "$round" "$rps" "$p50" "$p90" "$p99" "$cpu" "$errors"
        SUM_CPU[$name]=$(awk -v a="${SUM_CPU[$name]:-0}" -v b="$cpu" 'BEGIN { print a + b }')
        SUM_RPS[$name]=$(awk -v a="${SUM_RPS[$name]:-0}" -v b="$rps" 'BEGIN { print a + b }')
        SUM_P50[$name]=$(awk -v a="${SUM_P50[$name]:-0}" -v b="$p50" 'BEGIN { print a + b }')
        SUM_P90[$name]=$(awk -v a="${SUM_P90[$name]:-0}" -v b="$p90" 'BEGIN { print a + b }')
        SUM_P99[$name]=$(awk -v a="${SUM_P99[$name]:-0}" -v b="$p99" 'BEGIN { print a + b }')
        ERRORS[$name]=$((${ERRORS[$name]:-0} + errors))
        RUNS_JSON+="${RUNS_JSON:+,}
    {\"proxy\": \"$name\", \"round\": $round, \"requests_per_s\": $rps, \"p50_ms\": $p50, \"p90_ms\": $p90, \"p99_ms\": $p99, \"errors\": $errors}"
    done
done

avg() {
    awk -v s="$1" -v n="$ROUNDS" 'BEGIN { printf "%.3f", s / n }'
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "null" }'
}

echo
printf '%-8s %12s %10s %10s %10s %8s\n' proxy 'req/s' 'p50 ms' 'p90 ms' 'p99 ms' errors
declare -A AVG
for name in ssogate nginx; do
    AVG[$name.rps]=$(avg "${SUM_RPS[$name]}")
    AVG[$name.p50]=$(avg "${SUM_P50[$name]}")
    AVG[$name.p90]=$(avg "${SUM_P90[$name]}")
    AVG[$name.p99]=$(avg "${SUM_P99[$name]}")
    printf '%-8s %12.0f %10.3f %10.3f %10.3f %8d\n' "$name" "${AVG[$name.rps]}" "${AVG[$name.p50]}" \
        "${AVG[$name.p90]}" "${AVG[$name.p99]}" "${ERRORS[$name]}"
done
for name in ssogate nginx; do
    AVG[$name.cpu]=$(avg "${SUM_CPU[$name]}")
done
RATIO_CPU=$(ratio "${AVG[ssogate.cpu]}" "${AVG[nginx.cpu]}")
printf 'CPU us/request: ssogate %s, nginx %s, ratio %s\n' "${AVG[ssogate.cpu]}" "${AVG[nginx.cpu]}" "$RATIO_CPU"
RATIO_RPS=$(ratio "${AVG[ssogate.rps]}" "${AVG[nginx.rps]}")
RATIO_P50=$(ratio "${AVG[ssogate.p50]}" "${AVG[nginx.p50]}")
RATIO_P90=$(ratio "${AVG[ssogate.p90]}" "${AVG[nginx.p90]}")
RATIO_P99=$(ratio "${AVG[ssogate.p99]}" "${AVG[nginx.p99]}")
printf '%-8s %12s %10s %10s %10s\n' ratio "$RATIO_RPS" "$RATIO_P50" "$RATIO_P90" "$RATIO_P99"
echo "(ratio = ssogate / nginx: above 1 is better for req/s, worse for latency)"

mkdir -p bench/results
RESULT=bench/results/proxy-$(date -u +%Y%m%dT%H%M%SZ).json
cat >"$RESULT" <<EOF
{
  "benchmark": "proxy",
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
  "machine": {"cpus": $(nproc), "kernel": "$(uname -r)"},
  "wrk": {"threads": 2, "connections": $CONNECTIONS, "duration": "$DURATION", "rounds": $ROUNDS, "path": "$URL_PATH", "body_bytes": 1024},
  "runs": [$RUNS_JSON
  ],
  "average": {
    "ssogate": {"requests_per_s": ${AVG[ssogate.rps]}, "p50_ms": ${AVG[ssogate.p50]}, "p90_ms": ${AVG[ssogate.p90]}, "p99_ms": ${AVG[ssogate.p99]}, "errors": ${ERRORS[ssogate]}},
    "nginx": {"requests_per_s": ${AVG[nginx.rps]}, "p50_ms": ${AVG[nginx.p50]}, "p90_ms": ${AVG[nginx.p90]}, "p99_ms": ${AVG[nginx.p99]}, "errors": ${ERRORS[nginx]}}
  },
  "ratio_ssogate_over_nginx": {"requests_per_s": $RATIO_RPS, "p50": $RATIO_P50, "p90": $RATIO_P90, "p99": $RATIO_P99}
}
EOF
echo "results written to $RESULT"
