#!/usr/bin/env bash
# otelraft beside real replicated logs, on this machine, in one run.
#
#   benches/peers.sh [SECONDS_PER_CELL] [OUT_DIR]
#
# Starts, one system at a time, on 127.0.0.1 only:
#   - etcd 3.4 (Debian's etcd-server): 3 members; puts of 1 KiB and 64 KiB
#     values at concurrency 1 and 64, each acked after a quorum fsync;
#   - NATS 2.9 JetStream (Debian's nats-server): 3 servers, an R3 file
#     stream; publishes of 1 KiB and 64 KiB with the ack awaited (2.9 does
#     not fsync each message before acking);
#   - otelraft (release build, `otelraft local-cluster`): OTLP/HTTP logs
#     requests of about 1 KiB and 64 KiB at concurrency 1 and 64, requests
#     of 500 records of 200 B at concurrency 64 (HTTP and gRPC), and the
#     same offered at 150,000 records/s.
# Every cell runs twice. Results go to OUT_DIR/results.jsonl, one JSON line
# per run, and a markdown table is printed (scripts in benches/).
# Needs: etcd, nats-server (apt-get install etcd-server nats-server).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
OUT=${2:-target/bench-peers/run-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

command -v etcd >/dev/null || { echo "etcd missing: apt-get install etcd-server" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "nats-server missing: apt-get install nats-server" >&2; exit 1; }
cargo build --release --locked --bin otelraft >&2
(cd benches/peers && CARGO_TARGET_DIR=../../target/bench-peers cargo build --release --locked >&2)
OTELRAFT=$PWD/target/release/otelraft
PEERS=$PWD/target/bench-peers/release/bench-peers

WORK=$(mktemp -d)
PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT

# record SYSTEM CELL RUN JSON
record() {
    python3 -c 'import json,sys; r=json.loads(sys.argv[4]); r.update(system=sys.argv[1], cell=sys.argv[2], run=int(sys.argv[3])); print(json.dumps(r))' \
        "$1" "$2" "$3" "$4" >>"$RESULTS"
    echo "$1 $2 run $3: $(tail -1 "$RESULTS" | cut -c1-200)" >&2
}

wait_for() { # URL PATTERN
    for _ in $(seq 1 200); do
        curl -fsS "$1" 2>/dev/null | grep -q "$2" && return 0
        sleep 0.2
    done
    echo "timed out waiting for $1" >&2
    return 1
}

versions() {
    echo "etcd: $(etcd --version | head -1)"
    echo "nats-server: $(nats-server --version)"
    echo "otelraft: $("$OTELRAFT" --version) ($(git rev-parse --short HEAD))"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
    echo "disk: $(df -h "$WORK" | awk 'NR==2 {print $1" "$2}')"
} >"$OUT/versions.txt"
versions

# --- etcd ------------------------------------------------------------------
CLUSTER="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
        --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
        --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new \
        --quota-backend-bytes 8589934592 --auto-compaction-mode revision --auto-compaction-retention 1000 \
        --log-level error >"$WORK/etcd-$i.log" 2>&1 &
    PIDS+=($!)
done
for i in 1 2 3; do wait_for "http://127.0.0.1:2379$i/health" '"health":"true"'; done
for size in 1024 65536; do
    for conc in 1 64; do
        for run in 1 2; do
            out=$("$PEERS" etcd --endpoint http://127.0.0.1:23791 --endpoint http://127.0.0.1:23792 \
                --endpoint http://127.0.0.1:23793 --size "$size" --concurrency "$conc" --seconds "$SECS")
            record etcd "put ${size}B c$conc" "$run" "$out"
        done
    done
done
stop_all
rm -rf "$WORK/etcd"

# --- NATS JetStream ----------------------------------------------------------
for i in 1 2 3; do
    cat >"$WORK/nats-$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:2422$i
jetstream { store_dir: "$WORK/nats/n$i", max_file_store: 20G, max_memory_store: 256M }
cluster {
  name: bench
  listen: 127.0.0.1:2423$i
  routes: [nats-route://127.0.0.1:24231, nats-route://127.0.0.1:24232, nats-route://127.0.0.1:24233]
}
EOF
    nats-server -c "$WORK/nats-$i.conf" >"$WORK/nats-$i.log" 2>&1 &
    PIDS+=($!)
done
sleep 1
NATS_URLS=(--url nats://127.0.0.1:24221 --url nats://127.0.0.1:24222 --url nats://127.0.0.1:24223)
"$PEERS" nats "${NATS_URLS[@]}" --stream BENCH --replicas 3 --concurrency 1 --seconds 1 >/dev/null
for size in 1024 65536; do
    for conc in 1 64; do
        for run in 1 2; do
            out=$("$PEERS" nats "${NATS_URLS[@]}" --size "$size" --concurrency "$conc" --seconds "$SECS")
            record nats-jetstream-r3 "publish ${size}B c$conc" "$run" "$out"
        done
    done
done
stop_all
rm -rf "$WORK/nats"

# --- otelraft ------------------------------------------------------------------
"$OTELRAFT" local-cluster --dir "$WORK/otelraft" >"$WORK/otelraft.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 150); do grep -q '^leader:' "$WORK/otelraft.log" && break; sleep 0.2; done
grep -q '^leader:' "$WORK/otelraft.log" || { cat "$WORK/otelraft.log" >&2; exit 1; }
HTTP=(--target http://127.0.0.1:4318 --target http://127.0.0.2:4318 --target http://127.0.0.3:4318)
GRPC=(--grpc --target http://127.0.0.1:4317 --target http://127.0.0.2:4317 --target http://127.0.0.3:4317)
ADMIN=(--admin http://127.0.0.1:4480 --admin http://127.0.0.2:4480 --admin http://127.0.0.3:4480)
bench() { "$OTELRAFT" bench "${ADMIN[@]}" --seconds "$SECS" "$@" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))'; }
for run in 1 2; do
    record otelraft "logs 1KiB c1" "$run" "$(bench "${HTTP[@]}" --records 4 --record-bytes 200 --concurrency 1)"
    record otelraft "logs 1KiB c64" "$run" "$(bench "${HTTP[@]}" --records 4 --record-bytes 200 --concurrency 64)"
    record otelraft "logs 64KiB c1" "$run" "$(bench "${HTTP[@]}" --records 64 --record-bytes 1000 --concurrency 1)"
    record otelraft "logs 64KiB c64" "$run" "$(bench "${HTTP[@]}" --records 64 --record-bytes 1000 --concurrency 64)"
    record otelraft "logs 500x200B c64" "$run" "$(bench "${HTTP[@]}" --records 500 --record-bytes 200 --concurrency 64)"
    record otelraft "logs 500x200B c64 grpc" "$run" "$(bench "${GRPC[@]}" --records 500 --record-bytes 200 --concurrency 64)"
    record otelraft "logs 500x200B c64 @150k/s" "$run" "$(bench "${HTTP[@]}" --records 500 --record-bytes 200 --concurrency 64 --rate 150000)"
    record otelraft "metrics 500 points c64" "$run" "$(bench "${HTTP[@]}" --signal metrics --records 500 --record-bytes 20 --concurrency 64)"
done
stop_all

python3 benches/peers_table.py "$RESULTS" | tee "$OUT/table.md"
echo "results: $RESULTS" >&2
