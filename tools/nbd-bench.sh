#!/usr/bin/env bash
# Peer benchmark of Cairn's NBD server (not a test).
#
# Runs the same fio workload (--ioengine=nbd) against
#   cairn      : a volume of a file-backed Cairn pool (O_DIRECT), before and after a snapshot
#   qemu-raw   : qemu-nbd on a raw file (--cache=none, i.e. O_DIRECT)
#   qemu-qcow2 : qemu-nbd on a qcow2 overlay of that raw file (the "after a snapshot" peer)
#   nbdkit     : nbdkit file plugin on a raw file (cache=none)
# Workloads: 4 KiB random read and write at queue depth 32, 1 MiB sequential read and write.
# Prints one table of IOPS/bandwidth and the ratios Cairn/peer from this one run.
#
# Environment: BENCH_DIR (scratch dir, default a new one under /var/tmp), BENCH_SIZE (volume bytes,
# default 1 GiB), BENCH_RUNTIME (seconds per job, default 10), BENCH_PORT (default 10900).
set -euo pipefail

for tool in fio qemu-nbd qemu-img nbdkit python3 cargo; do
    command -v "$tool" >/dev/null || { echo "nbd-bench: $tool is required" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${BENCH_SIZE:-$((1 << 30))}
RUNTIME=${BENCH_RUNTIME:-10}
PORT=${BENCH_PORT:-10900}
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
    for _ in $(seq 1 200); do
        if nbdinfo --size "nbd://127.0.0.1:$PORT/$1" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "server died" >&2; exit 1; fi
        sleep 0.05
    done
    echo "server did not come up" >&2; exit 1
}

# run_jobs PEER PHASE EXPORT
run_jobs() {
    local peer=$1 phase=$2 export=$3 uri="nbd://127.0.0.1:$PORT/$3"
    local spec
    for spec in "randread:4k:32" "randwrite:4k:32" "read:1m:8" "write:1m:8"; do
        IFS=: read -r rw bs depth <<<"$spec"
        local out="$DIR/$peer-$phase-$rw.json"
        if ! fio --name=j --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$depth" \
            --size="$SIZE" --runtime="$RUNTIME" --time_based --group_reporting \
            --output-format=json --output="$out" >/dev/null 2>"$out.err"; then
            echo "nbd-bench: $peer $phase $rw failed: $(grep -m1 -i error "$out.err")" >&2
            printf '%s\t%s\t%s\tnan\tnan\n' "$peer" "$phase" "$rw-$bs-qd$depth" >>"$RESULTS"
            continue
        fi
        python3 - "$out" "$peer" "$phase" "$rw-$bs-qd$depth" >>"$RESULTS" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
side = job["read"] if job["read"]["io_bytes"] else job["write"]
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{sys.argv[4]}\t{side['iops']:.0f}\t{side['bw'] / 1024:.1f}")
PY
    done
}

prefill() {
    fio --name=fill --ioengine=nbd --uri="nbd://127.0.0.1:$PORT/$1" --rw=write --bs=1m \
        --iodepth=8 --size="$SIZE" >/dev/null
}

echo "building the Cairn NBD server (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p cairn-nbd --example nbd-serve-file)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
CAIRN="$TARGET_DIR/release/examples/nbd-serve-file"

cairn_serve() {
    "$CAIRN" --pool "$DIR/cairn.pool" --pool-size $((SIZE * 3 + (256 << 20))) --volume vol \
        --volume-size "$SIZE" --addr "127.0.0.1:$PORT" "$@" >"$DIR/cairn.log" 2>&1 &
    SERVER_PID=$!
    wait_port vol
}

# --- Cairn: before and after a snapshot ---
rm -f "$DIR/cairn.pool"
cairn_serve
prefill vol
run_jobs cairn before vol
stop_server
cairn_serve --snapshot snap1
run_jobs cairn after vol
stop_server

# --- qemu-nbd raw (before) and qcow2 overlay (after) ---
rm -f "$DIR/base.raw" "$DIR/overlay.qcow2"
truncate -s "$SIZE" "$DIR/base.raw"
qemu-nbd -f raw --cache=none --aio=threads -x vol -p "$PORT" -b 127.0.0.1 -e 8 -t "$DIR/base.raw" &
SERVER_PID=$!
wait_port vol
prefill vol
run_jobs qemu-raw before vol
stop_server
qemu-img create -q -f qcow2 -b "$DIR/base.raw" -F raw "$DIR/overlay.qcow2"
qemu-nbd -f qcow2 --cache=none --aio=threads -x vol -p "$PORT" -b 127.0.0.1 -e 8 -t "$DIR/overlay.qcow2" &
SERVER_PID=$!
wait_port vol
run_jobs qemu-qcow2 after vol
stop_server

# --- nbdkit file ---
rm -f "$DIR/nbdkit.raw"
truncate -s "$SIZE" "$DIR/nbdkit.raw"
nbdkit -f -i 127.0.0.1 -p "$PORT" file "$DIR/nbdkit.raw" cache=none &
SERVER_PID=$!
wait_port ""
prefill ""
run_jobs nbdkit before ""
stop_server

python3 - "$RESULTS" <<'PY'
import sys, collections
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
PY
echo "raw results: $RESULTS" >&2
