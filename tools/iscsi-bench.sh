#!/usr/bin/env bash
# Peer benchmark of Cairn's iSCSI target (not a test).
#
# One client for every target: fio's nbd engine against qemu-nbd serving the target's iscsi://
# URI (qemu's libiscsi driver), so the same fio job measures any iSCSI target:
#   cairn-iscsi : `cairn serve` (release build), a volume of a file-backed pool
#   tgt         : tgtd (Debian `tgt`), a raw file with bsoflags=direct
#   cairn-nbd   : the same Cairn volume over Cairn's own NBD export, fio straight at it
#   cairn-nbd-qemu : that NBD export through qemu-nbd (qemu's nbd driver), so the NBD path takes
#                 the same extra hop as the iSCSI ones: the like-for-like protocol comparison
# Workloads: 4 KiB random read and write at queue depth 32, 1 MiB sequential read and write at
# depth 8. All four peers serve at once, and the workloads run in BENCH_ROUNDS alternated rounds
# (each workload on every peer back to back, the order reversed every other round), so a slow
# spell of this machine's disk falls on all of them alike. Also `iscsi-perf` (libiscsi,
# sequential reads of 128 blocks: 512 KiB on a 4 KiB-block volume, 64 KiB on tgt's 512-byte
# blocks) as a second opinion for both targets. Prints one table: the medians of the rounds and
# of their ratios, all from this one run.
#
# Environment: BENCH_DIR (scratch dir, default a new one under /var/tmp), BENCH_SIZE (volume
# bytes, default 1 GiB), BENCH_RUNTIME (seconds per job, default 10), BENCH_ROUNDS (default 3),
# BENCH_PORT (first of the six ports used, default 10930), CAIRN_BIN (a built `cairn` to
# measure instead of building this tree's release binary: two builds compared in one sitting).
# tgtd needs root.
set -euo pipefail

for tool in fio qemu-nbd nbdinfo iscsi-ls iscsi-perf tgtd tgtadm python3 cargo; do
    command -v "$tool" >/dev/null || { echo "iscsi-bench: $tool is required" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/fio.sh
. "$ROOT/tools/lib/fio.sh"
SIZE=${BENCH_SIZE:-$((1 << 30))}
RUNTIME=${BENCH_RUNTIME:-10}
ROUNDS=${BENCH_ROUNDS:-3}
PORT=${BENCH_PORT:-10930}
ISCSI_CAIRN=$PORT NBD_CAIRN=$((PORT + 1)) ISCSI_TGT=$((PORT + 2))
# qemu-nbd in front of Cairn's iSCSI, of tgt, and of Cairn's NBD.
QEMU_CAIRN_ISCSI=$((PORT + 3)) QEMU_TGT=$((PORT + 4)) QEMU_CAIRN_NBD=$((PORT + 5))
DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/iscsi-bench.XXXXXX)}
mkdir -p "$DIR"
RESULTS="$DIR/results.tsv"
: > "$RESULTS"
PIDS=()

# On an early exit: whatever is still running goes (the scratch data is disposable).
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

# wait_for PID COMMAND...: until COMMAND succeeds (the real readiness signal, polled).
wait_for() {
    local pid=$1
    shift
    for _ in $(seq 1 400); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then echo "iscsi-bench: process $pid died" >&2; exit 1; fi
        sleep 0.05
    done
    echo "iscsi-bench: '$*' never succeeded" >&2
    exit 1
}

stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# through_qemu PEER PORT URL: qemu-nbd serves the iscsi:// LUN (or nbd:// export) as
# nbd://127.0.0.1:PORT/vol, in the background until the end.
through_qemu() {
    local peer=$1 port=$2 url=$3
    qemu-nbd -f raw -x vol -p "$port" -b 127.0.0.1 -e 8 -t "$url" 2>"$DIR/qemu-$peer.log" &
    local pid=$!
    PIDS+=("$pid")
    wait_for "$pid" nbdinfo --size "nbd://127.0.0.1:$port/vol"
}

# perf PEER ISCSI_URL: iscsi-perf's sequential read rate (32 requests of 128 blocks in flight).
perf() {
    local out
    out=$(timeout $((RUNTIME + 5)) iscsi-perf -m 32 -b 128 -t "$RUNTIME" "$2" 2>&1 \
        | tr '\r' '\n' | grep -o 'iops average [0-9]* ([0-9]* MB/s)' | tail -n 1 || true)
    echo "$1 iscsi-perf (sequential reads of 128 blocks, 32 in flight): ${out:-failed}" >>"$DIR/perf.txt"
}

if [ -n "${CAIRN_BIN:-}" ]; then
    CAIRN=$CAIRN_BIN
else
    echo "building cairn (release)..." >&2
    (cd "$ROOT" && cargo build --release -q -p cairn)
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    CAIRN="$TARGET_DIR/release/cairn"
fi

# --- Cairn: a volume of a file-backed pool, exported over iSCSI and NBD ---
DATA="$DIR/cairn-data"
rm -rf "$DATA"
mkdir -p "$DATA"
POOL_BYTES=$((SIZE * 2 + (256 << 20)))
"$CAIRN" pool create --pool-file "$DATA/pool0.img" --name pool0 --size "$POOL_BYTES" >/dev/null
"$CAIRN" volume create --pool-file "$DATA/pool0.img" vol --size "$SIZE" >/dev/null
cat >"$DATA/cairn.toml" <<EOF
[listen]
smis_http = "127.0.0.1:0"
smis_https = "127.0.0.1:0"
nbd = "127.0.0.1:$NBD_CAIRN"
iscsi = "127.0.0.1:$ISCSI_CAIRN"
[auth]
user = "bench"
password = "bench-password"
[[pool]]
name = "pool0"
path = "pool0.img"
size = "$POOL_BYTES"
EOF
"$CAIRN" serve --data-dir "$DATA" --config "$DATA/cairn.toml" 2>"$DIR/cairn.log" &
CAIRN_PID=$!
PIDS+=("$CAIRN_PID")
wait_for "$CAIRN_PID" nbdinfo --size "nbd://127.0.0.1:$NBD_CAIRN/vol"
# The iSCSI target answers a discovery only once its name and LUN map are written: that answer
# is the signal that both are there (the NBD export may be ready first).
wait_for "$CAIRN_PID" iscsi-ls "iscsi://127.0.0.1:$ISCSI_CAIRN"
IQN=$(cat "$DATA/iscsi-target-name")
LUN=$(python3 -c 'import json,sys; print(min(json.load(open(sys.argv[1]))["luns"].values()))' "$DATA/iscsi-luns.json")

# --- tgt on a raw file, O_DIRECT ---
rm -f "$DIR/tgt.raw"
truncate -s "$SIZE" "$DIR/tgt.raw"
tgtd -f --iscsi portal="127.0.0.1:$ISCSI_TGT" 2>"$DIR/tgtd.log" &
TGT_PID=$!
PIDS+=("$TGT_PID")
wait_for "$TGT_PID" tgtadm --lld iscsi --op show --mode sys
TGT_IQN=iqn.2026-01.org.cairn.bench:tgt
tgtadm --lld iscsi --op new --mode target --tid 1 -T "$TGT_IQN"
tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$DIR/tgt.raw" --bsoflags=direct
tgtadm --lld iscsi --op bind --mode target --tid 1 -I ALL

CAIRN_ISCSI="iscsi://127.0.0.1:$ISCSI_CAIRN/$IQN/$LUN"
TGT_ISCSI="iscsi://127.0.0.1:$ISCSI_TGT/$TGT_IQN/1"
through_qemu cairn-iscsi "$QEMU_CAIRN_ISCSI" "$CAIRN_ISCSI"
through_qemu tgt "$QEMU_TGT" "$TGT_ISCSI"
through_qemu cairn-nbd-qemu "$QEMU_CAIRN_NBD" "nbd://127.0.0.1:$NBD_CAIRN/vol"
# Both volumes written whole once (Cairn's through its own NBD), so reads return real data.
fio_prefill --ioengine=nbd --uri="nbd://127.0.0.1:$NBD_CAIRN/vol"
fio_prefill --ioengine=nbd --uri="nbd://127.0.0.1:$QEMU_TGT/vol"
fio_alternated iscsi-bench "$ROUNDS" \
    "cairn-iscsi=nbd://127.0.0.1:$QEMU_CAIRN_ISCSI/vol" \
    "tgt=nbd://127.0.0.1:$QEMU_TGT/vol" \
    "cairn-nbd=nbd://127.0.0.1:$NBD_CAIRN/vol" \
    "cairn-nbd-qemu=nbd://127.0.0.1:$QEMU_CAIRN_NBD/vol"
perf cairn-iscsi "$CAIRN_ISCSI"
perf tgt "$TGT_ISCSI"

for pid in "${PIDS[@]}"; do
    [ "$pid" = "$CAIRN_PID" ] || [ "$pid" = "$TGT_PID" ] || stop "$pid"
done
stop "$CAIRN_PID"
# tgtd ignores SIGTERM while it serves targets; this is its own shutdown request.
tgtadm --lld iscsi --op delete --mode target --tid 1 --force
tgtadm --op delete --mode system
wait "$TGT_PID" 2>/dev/null || true

fio_table cairn-iscsi/tgt cairn-iscsi/cairn-nbd cairn-iscsi/cairn-nbd-qemu
cat "$DIR/perf.txt"
echo "raw results: $DIR" >&2
