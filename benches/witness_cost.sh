#!/usr/bin/env bash
# What a witness costs beside a data node, on this machine.
#
# Starts `otelraft local-cluster --witness` (nodes 1 and 2 hold data, node 3
# is a witness) from a release build, drives nodes 1 and 2 with
# `otelraft bench` for SECONDS, and prints, per node, the CPU seconds it
# spent during the load, its resident memory (now and peak), the bytes of
# log it retains (from `admin status`) and the size of its database file
# (redb does not give freed pages back to the file system), then the bench
# report.
#
#   benches/witness_cost.sh [SECONDS] [CONCURRENCY]
#
# Uses 127.0.0.1-3 ports 4317, 4318, 4400 and 4480 (local-cluster's).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
CONCURRENCY=${2:-32}

cargo build --release --locked --bin otelraft >&2
BIN=$PWD/target/release/otelraft
WORK=$(mktemp -d)
"$BIN" local-cluster --witness --dir "$WORK/c" >"$WORK/local-cluster.log" 2>&1 &
LC=$!
cleanup() {
    kill -TERM "$LC" 2>/dev/null || true
    wait "$LC" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    grep -q '^leader:' "$WORK/local-cluster.log" && break
    sleep 0.3
done
grep -q '^leader:' "$WORK/local-cluster.log" || { cat "$WORK/local-cluster.log" >&2; exit 1; }

TICK=$(getconf CLK_TCK)
pid_of() { pgrep -f "serve --config $WORK/c/node$1.toml"; }
# utime + stime, fields 14 and 15 of /proc/PID/stat (the name has no spaces).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

declare -A PID BEFORE
for n in 1 2 3; do
    PID[$n]=$(pid_of "$n")
    BEFORE[$n]=$(ticks "${PID[$n]}")
done

"$BIN" bench --target http://127.0.0.1:4318 --target http://127.0.0.2:4318 \
    --concurrency "$CONCURRENCY" --seconds "$SECS" \
    --admin http://127.0.0.1:4480 --admin http://127.0.0.2:4480 --admin http://127.0.0.3:4480 \
    >"$WORK/bench.txt"

retained() {
    curl -fsS "http://127.0.0.$1:4480/admin/v1/status" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["retained_log"]["bytes"] // 1024)'
}

echo "node role    cpu_s_during_load  rss_kb  peak_rss_kb  retained_log_kb  db_file_kb"
for n in 1 2 3; do
    role=data
    [ "$n" = 3 ] && role=witness
    cpu=$(awk -v a="${BEFORE[$n]}" -v b="$(ticks "${PID[$n]}")" -v t="$TICK" 'BEGIN {printf "%.1f", (b - a) / t}')
    printf '%-4s %-7s %17s %7s %12s %16s %11s\n' "$n" "$role" "$cpu" \
        "$(kb "${PID[$n]}" VmRSS)" "$(kb "${PID[$n]}" VmHWM)" "$(retained "$n")" \
        "$(du -sk "$WORK/c/node$n" | cut -f1)"
done
echo
cat "$WORK/bench.txt"
