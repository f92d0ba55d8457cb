#!/usr/bin/env bash
# Archive throughput and restore time, on this machine, against s3s-fs.
#
# Starts s3s-fs and three release-built nodes on 127.0.0.1 archiving to it,
# drives them with `otelraft bench` for SECONDS, waits until the archive has
# caught up, then SIGKILLs the nodes, deletes every data directory and times
# `otelraft restore` of node 1 from the bucket. Prints one JSON object.
#
#   benches/archive_restore.sh [SECONDS] [RECORDS_PER_REQUEST]
#
# The load is `otelraft bench --realistic`: varied service logs from 256
# distinct requests, so the compression figure is not the best case.
#
# Needs: cargo, curl, python3, s3s-fs (cargo install s3s-fs --version 0.14.1
# --features binary). Uses ports 127.0.0.1:23000-23020.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-30}
RECORDS=${2:-500}
BASE_PORT=23000

cargo build --release --locked --bin otelraft >&2
BIN=$PWD/target/release/otelraft
S3S=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

AK=benchaccesskey0000
SK=benchsecretkey00000000000000000000000000
mkdir -p "$WORK/s3/otelraft-bench"
"$S3S" --host 127.0.0.1 --port $BASE_PORT --access-key $AK --secret-key $SK \
    "$WORK/s3" >"$WORK/s3s.log" 2>&1 &
PIDS+=($!)

port() { echo $((BASE_PORT + $1)); }
members=""
for i in 1 2 3; do
    members+="
[[cluster.initial_members]]
id = $i
peer_addr = \"127.0.0.1:$(port $((i * 4 + 2)))\"
admin_addr = \"127.0.0.1:$(port $((i * 4 + 3)))\"
"
done
for i in 1 2 3; do
    cat >"$WORK/node$i.toml" <<EOF
node_id = $i
data_dir = "$WORK/node$i"
[listen]
otlp_grpc = "127.0.0.1:$(port $((i * 4)))"
otlp_http = "127.0.0.1:$(port $((i * 4 + 1)))"
peer = "127.0.0.1:$(port $((i * 4 + 2)))"
admin = "127.0.0.1:$(port $((i * 4 + 3)))"
[cluster]
bootstrap = $([ "$i" = 1 ] && echo true || echo false)
$([ "$i" = 1 ] && echo "$members")
[archive]
block_max_age_ms = 5000
[archive.s3]
endpoint = "http://127.0.0.1:$BASE_PORT"
bucket = "otelraft-bench"
region = "us-east-1"
allow_http = true
EOF
done
export OTELRAFT_ARCHIVE__S3__ACCESS_KEY_ID=$AK OTELRAFT_ARCHIVE__S3__SECRET_ACCESS_KEY=$SK
export OTELRAFT_LOG=warn
for i in 1 2 3; do
    "$BIN" serve --config "$WORK/node$i.toml" >"$WORK/node$i.log" 2>&1 &
    PIDS+=($!)
done

status() { curl -sf "http://127.0.0.1:$(port 7)/admin/v1/status" || echo "{}"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
for _ in $(seq 1 100); do
    [ "$(status | field 'd.get("leader_id") is not None' 2>/dev/null)" = True ] && break
    sleep 0.2
done

targets=()
for i in 1 2 3; do targets+=(--target "http://127.0.0.1:$(port $((i * 4 + 1)))"); done
started=$(date +%s.%N)
"$BIN" bench "${targets[@]}" --seconds "$SECONDS_TO_RUN" --records "$RECORDS" \
    --realistic >"$WORK/bench.json"
ingest_done=$(date +%s.%N)

# Caught up: no pending seal and no content entry left to archive.
for _ in $(seq 1 600); do
    s=$(status)
    [ "$(echo "$s" | field 'd["archive"]["lag_entries"] == 0 and d["archive"]["pending"] is None')" = True ] && break
    sleep 0.5
done
archived=$(date +%s.%N)
archive_json=$(status | field 'json.dumps(d["archive"])')
upload_sum=$(curl -sf "http://127.0.0.1:$(port 7)/metrics" "http://127.0.0.1:$(port 11)/metrics" "http://127.0.0.1:$(port 15)/metrics" |
    awk '/^otelraft_archive_upload_seconds_sum/ {s += $2} END {print s + 0}')

for p in "${PIDS[@]:1}"; do kill -9 "$p"; done
PIDS=("${PIDS[0]}")
rm -rf "$WORK/node1" "$WORK/node2" "$WORK/node3"
restore_json=$("$BIN" restore --config "$WORK/node1.toml" --json | tail -n 1)

python3 - "$started" "$ingest_done" "$archived" "$upload_sum" "$archive_json" "$restore_json" "$WORK/bench.json" <<'EOF'
import json, sys
started, ingest_done, archived, upload_sum = map(float, sys.argv[1:5])
archive, restore = json.loads(sys.argv[5]), json.loads(sys.argv[6])
bench = json.load(open(sys.argv[7]))
mb = archive["bytes"] / 1e6
raw_mb = archive["uncompressed_bytes"] / 1e6
print(json.dumps({
    "ingest_seconds": round(ingest_done - started, 1),
    "ingest_records_per_s": round(bench["records_per_second"]),
    "ingest_payload_mb_per_s": round(bench["payload_mb_per_second"], 1),
    "archive_blocks": archive["blocks"],
    "archive_mb": round(mb, 1),
    "archive_uncompressed_mb": round(raw_mb, 1),
    "compression_ratio": round(raw_mb / mb, 2) if mb else None,
    "archive_caught_up_after_ingest_s": round(archived - ingest_done, 1),
    "archive_mb_per_s_end_to_end": round(mb / (archived - started), 2),
    "upload_seconds_total": round(upload_sum, 2),
    "upload_mb_per_s_while_uploading": round(mb / upload_sum, 1) if upload_sum else None,
    "restore_seconds": round(restore["seconds"], 2),
    "restore_entries": restore["entries"],
    "restore_block_mb_per_s": round(restore["block_bytes"] / 1e6 / restore["seconds"], 1),
    "restore_seconds_per_gb_uncompressed": round(restore["seconds"] / (restore["uncompressed_bytes"] / 1e9), 1),
}, indent=1))
EOF
