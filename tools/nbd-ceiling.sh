#!/usr/bin/env bash
# Overhead of Cairn's NBD server against the protocol ceiling and against qemu-nbd (not a test).
#
# The same fio client (--ioengine=nbd) runs four workloads — 4 KiB random read and write at queue
# depth 32, 1 MiB sequential read and write at queue depth 8 — against:
#   nbdkit-mem  : nbdkit's memory plugin, the ceiling of the protocol with this client
#   cairn-tmpfs : a volume of a Cairn pool on tmpfs, so the device is not the limit (with
#                 pread/pwrite, which on tmpfs are plain copies, unless CEILING_TMPFS_BACKEND says
#                 uring)
#   qemu-raw    : qemu-nbd on a raw file on disk (--cache=none --aio=io_uring)
#   cairn-disk  : a volume of a Cairn pool file in the same directory (O_DIRECT, io_uring)
# Every export is written through once before it is measured. Prints one table and the ratios
# cairn-tmpfs/nbdkit-mem and cairn-disk/qemu-raw from this one run.
#
# Environment: CEILING_DIR (scratch directory on disk, default a new one under /var/tmp),
# CEILING_SHM (tmpfs directory, default /dev/shm), CEILING_SIZE (volume bytes, default 1 GiB),
# CEILING_RUNTIME (seconds per job, default 10), CEILING_PORT (default 10950), CAIRN_NBD_SERVER
# (an nbd-serve-file binary to measure instead of building the one of this tree), CEILING_BASELINE
# (another nbd-serve-file binary, say of an earlier commit, measured in the same run as base-tmpfs
# and base-disk, for before/after ratios from one run).
set -euo pipefail

for tool in fio qemu-nbd nbdkit nbdinfo python3 cargo; do
    command -v "$tool" >/dev/null || { echo "nbd-ceiling: $tool is required" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/fio.sh
. "$ROOT/tools/lib/fio.sh"
SIZE=${CEILING_SIZE:-$((1 << 30))}
RUNTIME=${CEILING_RUNTIME:-10}
PORT=${CEILING_PORT:-10950}
DIR=${CEILING_DIR:-$(mktemp -d /var/tmp/nbd-ceiling.XXXXXX)}
SHM=$(mktemp -d "${CEILING_SHM:-/dev/shm}/nbd-ceiling.XXXXXX")
mkdir -p "$DIR"
RESULTS="$DIR/results.tsv"
: >"$RESULTS"
SERVER_PID=

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup() {
    stop_server
    rm -rf "$SHM"
}
trap cleanup EXIT

# Ready when an NBD handshake succeeds (no fixed sleeps).
wait_ready() {
    for _ in $(seq 1 400); do
        if nbdinfo --size "nbd://127.0.0.1:$PORT/$1" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "nbd-ceiling: server died" >&2; exit 1; fi
        sleep 0.05
    done
    echo "nbd-ceiling: server did not come up" >&2
    exit 1
}

# measure PEER EXPORT: prefill, then the four workloads, one line each in $RESULTS.
measure() {
    local peer=$1 uri="nbd://127.0.0.1:$PORT/$2"
    fio_prefill --ioengine=nbd --uri="$uri"
    fio_workloads nbd-ceiling "$peer" --ioengine=nbd --uri="$uri"
}

if [ -n "${CAIRN_NBD_SERVER:-}" ]; then
    CAIRN=$CAIRN_NBD_SERVER
else
    echo "building the Cairn NBD server (release)..." >&2
    (cd "$ROOT" && cargo build --release -q -p cairn-nbd --example nbd-serve-file)
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    CAIRN="$TARGET_DIR/release/examples/nbd-serve-file"
fi

cairn_on() { # BINARY POOL_FILE IO_BACKEND
    CAIRN_IO_BACKEND=$3 "$1" --pool "$2" --pool-size $((SIZE * 2 + (256 << 20))) --volume vol \
        --volume-size "$SIZE" --addr "127.0.0.1:$PORT" >"$DIR/cairn.log" 2>&1 &
    SERVER_PID=$!
    wait_ready vol
}

nbdkit -f -i 127.0.0.1 -p "$PORT" memory size="$SIZE" &
SERVER_PID=$!
wait_ready ""
measure nbdkit-mem ""
stop_server

# measure_cairn PEER BINARY POOL_FILE IO_BACKEND: a fresh pool, measured, removed.
measure_cairn() {
    rm -f "$3"
    cairn_on "$2" "$3" "$4"
    measure "$1" vol
    stop_server
    rm -f "$3"
}

TMPFS_BACKEND=${CEILING_TMPFS_BACKEND:-pread}
measure_cairn cairn-tmpfs "$CAIRN" "$SHM/cairn.pool" "$TMPFS_BACKEND"
if [ -n "${CEILING_BASELINE:-}" ]; then
    measure_cairn base-tmpfs "$CEILING_BASELINE" "$SHM/cairn.pool" "$TMPFS_BACKEND"
fi

rm -f "$DIR/qemu.raw"
truncate -s "$SIZE" "$DIR/qemu.raw"
qemu-nbd -f raw --cache=none --aio=io_uring -x vol -p "$PORT" -b 127.0.0.1 -e 8 -t "$DIR/qemu.raw" &
SERVER_PID=$!
wait_ready vol
measure qemu-raw vol
stop_server
rm -f "$DIR/qemu.raw"

measure_cairn cairn-disk "$CAIRN" "$DIR/cairn.pool" uring
if [ -n "${CEILING_BASELINE:-}" ]; then
    measure_cairn base-disk "$CEILING_BASELINE" "$DIR/cairn.pool" uring
fi

fio_table cairn-tmpfs/nbdkit-mem base-tmpfs/nbdkit-mem cairn-disk/qemu-raw base-disk/qemu-raw
echo "raw results: $RESULTS" >&2
