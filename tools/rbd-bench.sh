#!/usr/bin/env bash
# Peer benchmark of Cairn's NBD export of a Ceph RBD image (not a test).
#
# The same fio workloads against one RBD image, two ways:
#   rbd   : fio's rbd engine straight on the image through librbd (the ceiling)
#   cairn : `cairn serve` with the image's RADOS pool as an RBD pool, fio --ioengine=nbd on its
#           NBD export of the same image
# Workloads: 4 KiB random read and write at queue depth 32, 1 MiB sequential read and write at
# queue depth 8. Each workload runs on both sides back to back (rbd first, while no daemon holds
# the image's exclusive lock; then cairn), and the table gives IOPS, MiB/s and the ratio
# cairn/rbd from this one run. The image is filled first, so reads return real data.
#
# Needs fio with the rbd engine (`fio --enghelp` lists "rbd"; Debian's fio 3.33 has it), Ceph's
# `rbd` tool, cargo, python3, nbdinfo, and a cluster: BENCH_CEPH_CONF (default
# $CAIRN_TEST_CEPH_CONF) names its ceph.conf, whose client.admin keyring is found through it
# (tools/ceph-cluster.sh makes such a cluster). Environment: BENCH_POOL (RADOS pool, default rbd),
# BENCH_SIZE (image bytes, default 1 GiB), BENCH_RUNTIME (seconds per job, default 10),
# BENCH_PORT (NBD port, default 10910), BENCH_DIR (scratch directory, default a new one under
# /var/tmp), CAIRN_BIN (a built cairn to measure instead of building this tree's, release).
# The image is removed at the end.
set -euo pipefail

for tool in fio rbd python3 nbdinfo; do
    command -v "$tool" >/dev/null || { echo "rbd-bench: $tool is required" >&2; exit 2; }
done
if ! fio --enghelp 2>&1 | grep -qw rbd; then
    echo "rbd-bench: this fio has no rbd engine (fio --enghelp); the nearest ceiling is" >&2
    echo "rbd-bench: 'rbd bench --io-type read|write --io-size 4K --io-threads 32 --io-pattern rand'" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONF=${BENCH_CEPH_CONF:-${CAIRN_TEST_CEPH_CONF:-}}
[ -n "$CONF" ] && [ -f "$CONF" ] || { echo "rbd-bench: set BENCH_CEPH_CONF to a ceph.conf" >&2; exit 2; }
POOL=${BENCH_POOL:-rbd}
SIZE=${BENCH_SIZE:-$((1 << 30))}
RUNTIME=${BENCH_RUNTIME:-10}
PORT=${BENCH_PORT:-10910}
DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/rbd-bench.XXXXXX)}
mkdir -p "$DIR"
RESULTS="$DIR/results.tsv"
: > "$RESULTS"
NAME="bench-$$"
IMAGE="cairn-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
SERVER_PID=
export CEPH_CONF=$CONF

rbdc() { rbd -c "$CONF" --id admin -p "$POOL" "$@"; }

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}

cleanup() {
    stop_server
    rbdc rm --no-progress "$IMAGE" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Starts the daemon on the image's pool and waits until its NBD export answers (no fixed sleeps).
start_server() {
    cat >"$DIR/cairn.toml" <<EOF
[listen]
smis_http = "127.0.0.1:0"
smis_https = ""
iscsi = ""
nbd = "127.0.0.1:$PORT"
[auth]
user = "admin"
password = "bench"
[[pool]]
name = "ceph"
kind = "rbd"
ceph_conf = "$CONF"
client = "admin"
rados_pool = "$POOL"
EOF
    CAIRN_LOG=warn "$CAIRN" serve --data-dir "$DIR/data" \
        --config "$DIR/cairn.toml" 2>>"$DIR/cairn.log" &
    SERVER_PID=$!
    for _ in $(seq 1 400); do
        if nbdinfo --size "nbd://127.0.0.1:$PORT/$NAME" >/dev/null 2>&1; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "rbd-bench: cairn died; see $DIR/cairn.log" >&2; exit 1; }
        sleep 0.05
    done
    echo "rbd-bench: cairn did not export $NAME; see $DIR/cairn.log" >&2
    exit 1
}

# job SIDE RW BS DEPTH: one fio run, its IOPS and MiB/s appended to the results.
job() {
    local side=$1 rw=$2 bs=$3 depth=$4 out="$DIR/$1-$2-$3.json"
    local engine
    if [ "$side" = rbd ]; then
        engine=(--ioengine=rbd --clientname=admin --pool="$POOL" --rbdname="$IMAGE")
    else
        engine=(--ioengine=nbd --uri="nbd://127.0.0.1:$PORT/$NAME")
    fi
    if ! fio --name=j "${engine[@]}" --rw="$rw" --bs="$bs" --iodepth="$depth" --size="$SIZE" \
        --runtime="$RUNTIME" --time_based --group_reporting --output-format=json \
        --output="$out" >/dev/null 2>"$out.err"; then
        echo "rbd-bench: $side $rw failed: $(head -c 300 "$out.err")" >&2
        printf '%s\t%s\tnan\tnan\n' "$side" "$rw-$bs-qd$depth" >>"$RESULTS"
        return
    fi
    python3 - "$out" "$side" "$rw-$bs-qd$depth" >>"$RESULTS" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
side = job["read"] if job["read"]["io_bytes"] else job["write"]
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{side['iops']:.0f}\t{side['bw'] / 1024:.1f}")
PY
}

CAIRN=${CAIRN_BIN:-$ROOT/target/release/cairn}
if [ -z "${CAIRN_BIN:-}" ]; then
    echo "building cairn (release)..." >&2
    (cd "$ROOT" && cargo build --release -q -p cairn)
fi

echo "making image $POOL/$IMAGE ($SIZE bytes) and filling it..." >&2
rbdc create --size "${SIZE}B" \
    --image-feature layering,exclusive-lock,object-map,fast-diff,deep-flatten "$IMAGE"
rbdc image-meta set "$IMAGE" cairn.name "$NAME" >/dev/null
fio --name=fill --ioengine=rbd --clientname=admin --pool="$POOL" --rbdname="$IMAGE" \
    --rw=write --bs=4m --iodepth=8 --size="$SIZE" >/dev/null

for spec in "randread:4k:32" "randwrite:4k:32" "read:1m:8" "write:1m:8"; do
    IFS=: read -r rw bs depth <<<"$spec"
    echo "$rw $bs QD$depth: rbd engine..." >&2
    job rbd "$rw" "$bs" "$depth"
    echo "$rw $bs QD$depth: cairn NBD..." >&2
    start_server
    job cairn "$rw" "$bs" "$depth"
    stop_server
done

python3 - "$RESULTS" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {(side, work): (float(iops), float(mib)) for side, work, iops, mib in rows}
works = [w for s, w, *_ in rows if s == "rbd"]
print(f"{'workload':<22}{'rbd IOPS':>10}{'rbd MiB/s':>11}{'cairn IOPS':>12}{'cairn MiB/s':>13}{'ratio':>7}")
for w in works:
    (ri, rm), (ci, cm) = by[("rbd", w)], by.get(("cairn", w), (float("nan"),) * 2)
    ratio = ci / ri if ri else float("nan")
    print(f"{w:<22}{ri:>10.0f}{rm:>11.1f}{ci:>12.0f}{cm:>13.1f}{ratio:>7.2f}")
PY
echo "raw results: $RESULTS" >&2
