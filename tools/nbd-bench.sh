#!/usr/bin/env bash
# Peer benchmark of Cairn's NBD data path (not a test).
#
# Runs the same fio workload (--ioengine=nbd) against
#   cairn-before : the real daemon (`cairn serve`) serving a volume of a file-backed pool
#                  (O_DIRECT, io_uring)
#   cairn-after  : a second volume of that pool, with a snapshot of it taken after its prefill
#   qemu-raw     : qemu-nbd on a raw file (--cache=none --aio=io_uring)
#   qemu-qcow2   : qemu-nbd on a qcow2 overlay of a second raw file (the "after a snapshot" peer)
#   nbdkit       : nbdkit file plugin on a raw file (cache=none)
# all files in the same directory (same file system), every peer serving at once. Each is
# prefilled with 1 MiB sequential writes, then the workloads run in this order: 1 MiB sequential
# read, 4 KiB random read (queue depth 32), 4 KiB random write (queue depth 32), 1 MiB sequential
# read again (after the random overwrites), 1 MiB sequential write; each workload on every peer
# back to back (fio_alternated), so a slow spell of this machine's disk falls on all of them
# alike. Prints one table and the ratios from this one run: Cairn/peer per workload, and each
# peer's 1 MiB read after the random writes over the same read before them (targets: 4 KiB
# random write >= 1.0x qemu-raw; read after >= 0.9x before). BENCH_ROUNDS > 1 repeats the whole
# sequence (the order of the peers reversed every other round) and reports medians; the reads of
# a later round then follow the random writes of the earlier ones.
#
# Environment: BENCH_DIR (scratch dir, default a new one under /var/tmp), BENCH_SIZE (volume
# bytes, default 1 GiB), BENCH_RUNTIME (seconds per job, default 10), BENCH_ROUNDS (default 1),
# BENCH_PORT (first of the four ports used, default 10900), CAIRN_BIN (a built `cairn` to
# measure instead of building this tree's release binary).
set -euo pipefail

for tool in fio qemu-nbd qemu-img nbdkit nbdinfo python3 cargo; do
    command -v "$tool" >/dev/null || { echo "nbd-bench: $tool is required" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/fio.sh
. "$ROOT/tools/lib/fio.sh"
BENCH_NAME=nbd-bench
# shellcheck source=SCRIPTDIR/lib/servers.sh
. "$ROOT/tools/lib/servers.sh"
SIZE=${BENCH_SIZE:-$((1 << 30))}
RUNTIME=${BENCH_RUNTIME:-10}
ROUNDS=${BENCH_ROUNDS:-1}
PORT=${BENCH_PORT:-10900}
CAIRN_PORT=$PORT RAW_PORT=$((PORT + 1)) QCOW2_PORT=$((PORT + 2)) NBDKIT_PORT=$((PORT + 3))
DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/nbd-bench.XXXXXX)}
mkdir -p "$DIR"
RESULTS="$DIR/results.tsv"
: > "$RESULTS"
# shellcheck disable=SC2034 # read by fio_alternated
FIO_WORKLOADS=("read:1m:8:read-1m-before" "randread:4k:32:randread-4k"
    "randwrite:4k:32:randwrite-4k" "read:1m:8:read-1m-after" "write:1m:8:write-1m")

if [ -n "${CAIRN_BIN:-}" ]; then
    CAIRN=$CAIRN_BIN
else
    CAIRN=$(cairn_release)
fi

# --- Cairn: the real daemon; volume `after` gets its snapshot offline, between two runs ---
DATA="$DIR/cairn-data"
rm -rf "$DATA"
mkdir -p "$DATA"
POOL="$DATA/bench.img"
cat >"$DATA/cairn.toml" <<CONFIG
[[pool]]
name = "bench"
path = "bench.img"
[listen]
smis_http = "127.0.0.1:0"
smis_https = ""
iscsi = ""
nbd = "127.0.0.1:$CAIRN_PORT"
CONFIG
"$CAIRN" --pool-file "$POOL" pool create --name bench --size $((SIZE * 4 + (256 << 20))) >/dev/null
"$CAIRN" --pool-file "$POOL" volume create before --size "$SIZE" >/dev/null
"$CAIRN" --pool-file "$POOL" volume create after --size "$SIZE" >/dev/null
cairn_serve() {
    "$CAIRN" serve --data-dir "$DATA" --config "$DATA/cairn.toml" >>"$DATA/serve.log" 2>&1 &
    PIDS+=("$!")
    wait_nbd "$!" "nbd://127.0.0.1:$CAIRN_PORT/before"
}
cairn_serve
fio_prefill --ioengine=nbd --uri="nbd://127.0.0.1:$CAIRN_PORT/before"
fio_prefill --ioengine=nbd --uri="nbd://127.0.0.1:$CAIRN_PORT/after"
stop_last
"$CAIRN" --pool-file "$POOL" snapshot create after after-snap >/dev/null
cairn_serve

# --- qemu-nbd: a raw file, and a qcow2 overlay of another raw file that nothing else writes ---
rm -f "$DIR/raw.raw" "$DIR/base.raw" "$DIR/overlay.qcow2"
truncate -s "$SIZE" "$DIR/raw.raw" "$DIR/base.raw"
qemu_serve() {
    qemu-nbd -f "$1" --cache=none --aio=io_uring -x vol -p "$2" -b 127.0.0.1 -e 8 -t "$3" &
    PIDS+=("$!")
    wait_nbd "$!" "nbd://127.0.0.1:$2/vol"
}
qemu_serve raw "$RAW_PORT" "$DIR/raw.raw"
fio_prefill --ioengine=nbd --uri="nbd://127.0.0.1:$RAW_PORT/vol"
qemu_serve raw "$QCOW2_PORT" "$DIR/base.raw"
fio_prefill --ioengine=nbd --uri="nbd://127.0.0.1:$QCOW2_PORT/vol"
stop_last
qemu-img create -q -f qcow2 -b "$DIR/base.raw" -F raw "$DIR/overlay.qcow2"
qemu_serve qcow2 "$QCOW2_PORT" "$DIR/overlay.qcow2"

# --- nbdkit file ---
rm -f "$DIR/nbdkit.raw"
truncate -s "$SIZE" "$DIR/nbdkit.raw"
nbdkit -f -i 127.0.0.1 -p "$NBDKIT_PORT" file "$DIR/nbdkit.raw" cache=none &
PIDS+=("$!")
wait_nbd "$!" "nbd://127.0.0.1:$NBDKIT_PORT/"
fio_prefill --ioengine=nbd --uri="nbd://127.0.0.1:$NBDKIT_PORT/"

fio_alternated nbd-bench "$ROUNDS" \
    "cairn-before=nbd://127.0.0.1:$CAIRN_PORT/before" \
    "cairn-after=nbd://127.0.0.1:$CAIRN_PORT/after" \
    "qemu-raw=nbd://127.0.0.1:$RAW_PORT/vol" \
    "qemu-qcow2=nbd://127.0.0.1:$QCOW2_PORT/vol" \
    "nbdkit=nbd://127.0.0.1:$NBDKIT_PORT/"

fio_table cairn-before/qemu-raw cairn-before/nbdkit cairn-after/qemu-qcow2 cairn-after/qemu-raw
echo
echo "1 MiB sequential read after the 4 KiB random writes / before them (same peer, medians):"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
runs = {}
for p, w, iops, _ in rows:
    if iops != "nan":
        runs.setdefault((p, w), []).append(float(iops))
for p in dict.fromkeys(r[0] for r in rows):
    a, b = runs.get((p, "read-1m-after")), runs.get((p, "read-1m-before"))
    if a and b and statistics.median(b) > 0:
        print(f"  {p:<14}{statistics.median(a) / statistics.median(b):.2f}")
PY
echo "raw results: $RESULTS" >&2
