#!/usr/bin/env bash
# Peer benchmark of Cairn's NBD data path (not a test).
#
# Runs the same fio workload (--ioengine=nbd) against
#   cairn      : the real daemon (`cairn serve`) serving a volume of a file-backed pool (O_DIRECT,
#                io_uring), before and after a snapshot of it
#   qemu-raw   : qemu-nbd on a raw file (--cache=none --aio=io_uring)
#   qemu-qcow2 : qemu-nbd on a qcow2 overlay of that raw file (the "after a snapshot" peer)
#   nbdkit     : nbdkit file plugin on a raw file (cache=none)
# all files in the same directory (same file system). Each peer is prefilled with 1 MiB
# sequential writes, then runs, in this order: 1 MiB sequential read, 4 KiB random read (queue
# depth 32), 4 KiB random write (queue depth 32), 1 MiB sequential read again (after the random
# overwrites), 1 MiB sequential write. Prints one table and the ratios from this one run:
# Cairn/peer per workload, and each peer's 1 MiB read after the random writes over the same read
# before them (targets: 4 KiB random write >= 1.0x qemu-raw; read after >= 0.9x before).
#
# Environment: BENCH_DIR (scratch dir, default a new one under /var/tmp), BENCH_SIZE (volume bytes,
# default 1 GiB), BENCH_RUNTIME (seconds per job, default 10), BENCH_PORT (default 10900),
# BENCH_PEERS (default "cairn qemu nbdkit").
set -euo pipefail

for tool in fio qemu-nbd qemu-img nbdkit nbdinfo python3 cargo; do
    command -v "$tool" >/dev/null || { echo "nbd-bench: $tool is required" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/fio.sh
. "$ROOT/tools/lib/fio.sh"
SIZE=${BENCH_SIZE:-$((1 << 30))}
RUNTIME=${BENCH_RUNTIME:-10}
PORT=${BENCH_PORT:-10900}
PEERS=${BENCH_PEERS:-cairn qemu nbdkit}
DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/nbd-bench.XXXXXX)}
mkdir -p "$DIR"
RESULTS="$DIR/results.tsv"
: > "$RESULTS"
SERVER_PID=

cleanup() { stop_server; }
trap cleanup EXIT

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

wait_port() {
    # Ready when an NBD handshake succeeds (no fixed sleeps).
    for _ in $(seq 1 400); do
        if nbdinfo --size "nbd://127.0.0.1:$PORT/$1" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "server died" >&2; exit 1; fi
        sleep 0.05
    done
    echo "server did not come up" >&2; exit 1
}

# job PEER PHASE EXPORT NAME RW BS DEPTH: one fio job, one result row.
job() {
    local peer=$1 phase=$2 export=$3 name=$4 rw=$5 bs=$6 depth=$7
    fio_result nbd-bench "$DIR/$peer-$phase-$name.json" "$peer" "$phase" "$name" -- \
        --name=j --ioengine=nbd --uri="nbd://127.0.0.1:$PORT/$export" --rw="$rw" --bs="$bs" \
        --iodepth="$depth" --size="$SIZE" --runtime="$RUNTIME" --time_based --group_reporting \
        --randrepeat=0
}

# run_jobs PEER PHASE EXPORT
run_jobs() {
    job "$1" "$2" "$3" read-1m-before read 1m 8
    job "$1" "$2" "$3" randread-4k randread 4k 32
    job "$1" "$2" "$3" randwrite-4k randwrite 4k 32
    job "$1" "$2" "$3" read-1m-after read 1m 8
    job "$1" "$2" "$3" write-1m write 1m 8
}

prefill() {
    fio_prefill --ioengine=nbd --uri="nbd://127.0.0.1:$PORT/$1"
}

has_peer() { [[ " $PEERS " == *" $1 "* ]]; }

# --- Cairn: the real daemon, before and after a snapshot ---
if has_peer cairn; then
    echo "building cairn (release)..." >&2
    (cd "$ROOT" && cargo build --release -q -p cairn --bin cairn)
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    CAIRN="$TARGET_DIR/release/cairn"
    DATA="$DIR/cairn-data"
    rm -rf "$DATA"
    mkdir -p "$DATA"
    POOL="$DATA/bench.img"
    cat >"$DATA/cairn.toml" <<EOF
[[pool]]
name = "bench"
path = "bench.img"
[listen]
smis_http = "127.0.0.1:0"
smis_https = ""
iscsi = ""
nbd = "127.0.0.1:$PORT"
EOF
    # The pool and its volume made offline, then served by the daemon.
    "$CAIRN" --pool-file "$POOL" pool create --name bench --size $((SIZE * 3 + (256 << 20))) >/dev/null
    "$CAIRN" --pool-file "$POOL" volume create vol --size "$SIZE" >/dev/null
    cairn_serve() {
        "$CAIRN" serve --data-dir "$DATA" --config "$DATA/cairn.toml" >>"$DATA/serve.log" 2>&1 &
        SERVER_PID=$!
        wait_port vol
    }
    cairn_serve
    prefill vol
    run_jobs cairn before vol
    stop_server
    "$CAIRN" --pool-file "$POOL" snapshot create vol snap1 >/dev/null
    cairn_serve
    run_jobs cairn after vol
    stop_server
fi

# --- qemu-nbd raw (before) and qcow2 overlay (after) ---
if has_peer qemu; then
    rm -f "$DIR/base.raw" "$DIR/overlay.qcow2"
    truncate -s "$SIZE" "$DIR/base.raw"
    qemu_serve() {
        qemu-nbd -f "$1" --cache=none --aio=io_uring -x vol -p "$PORT" -b 127.0.0.1 -e 8 -t "$2" &
        SERVER_PID=$!
        wait_port vol
    }
    qemu_serve raw "$DIR/base.raw"
    prefill vol
    run_jobs qemu-raw before vol
    stop_server
    qemu-img create -q -f qcow2 -b "$DIR/base.raw" -F raw "$DIR/overlay.qcow2"
    qemu_serve qcow2 "$DIR/overlay.qcow2"
    run_jobs qemu-qcow2 after vol
    stop_server
fi

# --- nbdkit file ---
if has_peer nbdkit; then
    rm -f "$DIR/nbdkit.raw"
    truncate -s "$SIZE" "$DIR/nbdkit.raw"
    nbdkit -f -i 127.0.0.1 -p "$PORT" file "$DIR/nbdkit.raw" cache=none &
    SERVER_PID=$!
    wait_port ""
    prefill ""
    run_jobs nbdkit before ""
    stop_server
fi

python3 - "$RESULTS" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
val = {(p, ph, w): (float(iops), float(mib)) for p, ph, w, iops, mib in rows}
work = list(dict.fromkeys(r[2] for r in rows))
print(f"{'workload':<18}{'peer':<12}{'phase':<8}{'IOPS':>10}{'MiB/s':>10}")
for (p, ph, w), (iops, mib) in val.items():
    print(f"{w:<18}{p:<12}{ph:<8}{iops:>10.0f}{mib:>10.1f}" if iops == iops else f"{w:<18}{p:<12}{ph:<8}{'FAILED':>10}")
print()
print("ratios Cairn/peer (IOPS):")
pairs = [("before", "qemu-raw", "before"), ("before", "nbdkit", "before"),
         ("after", "qemu-qcow2", "after"), ("after", "qemu-raw", "before")]
for w in work:
    parts = []
    for cph, peer, pph in pairs:
        c, o = val.get(("cairn", cph, w)), val.get((peer, pph, w))
        if c and o and o[0] > 0 and c[0] == c[0]:
            parts.append(f"cairn-{cph}/{peer} {c[0] / o[0]:.2f}")
    print(f"  {w:<18}" + "  ".join(parts))
print()
print("1 MiB sequential read after the 4 KiB random writes / before them (same peer, phase):")
for p, ph in dict.fromkeys((r[0], r[1]) for r in rows):
    a, b = val.get((p, ph, "read-1m-after")), val.get((p, ph, "read-1m-before"))
    if a and b and b[0] > 0 and a[0] == a[0]:
        print(f"  {p:<12}{ph:<8}{a[0] / b[0]:.2f}")
PY
echo "raw results: $RESULTS" >&2
