#!/usr/bin/env bash
# Peer benchmark of Cairn's NBD export of a Ceph RBD image (not a test).
#
# The same fio workloads against one RBD image, two ways:
#   rbd   : fio's rbd engine straight on the image through librbd (the ceiling)
#   cairn : `cairn serve` with the image's RADOS pool as an RBD pool, fio --ioengine=nbd on its
#           NBD export of the same image
# Workloads: 4 KiB random read and write at queue depth 32, 1 MiB sequential read and write at
# queue depth 8. Each workload runs on both sides back to back (the daemon up only for its own
# run, as it holds the image's exclusive lock), in BENCH_ROUNDS rounds with the order reversed
# every other round; the table gives the medians of IOPS, MiB/s and of the rounds' ratios
# cairn/rbd, all from this one run. The image is filled first, so reads return real data.
#
# Then snapshots: BENCH_SNAPSHOTS (default 10) rounds of one same-pool snapshot of the image
# through Cairn's SMI-S (CreateElementReplica SyncType 7, timed from request to answer by a pywbem
# client that resolved its paths first: tools/lib/snapshot_time.py) and one `rbd snap create`
# plus `rbd clone` pair run by the CLI (timed whole, the tools' start-up included); the medians
# and their ratio. The Python that runs the client is BENCH_PYTHON (default python3) and
# needs pywbem.
#
# Needs fio with the rbd engine (`fio --enghelp` lists "rbd"; Debian's fio 3.33 has it), Ceph's
# `rbd` tool, cargo, python3, nbdinfo, and a cluster: BENCH_CEPH_CONF (default
# $CAIRN_TEST_CEPH_CONF) names its ceph.conf, whose client.admin keyring is found through it
# (tools/ceph-cluster.sh makes such a cluster). Environment: BENCH_POOL (RADOS pool, default rbd),
# BENCH_SIZE (image bytes, default 1 GiB), BENCH_RUNTIME (seconds per job, default 10),
# BENCH_ROUNDS (default 3), BENCH_PORT (NBD port, default 10910; SMI-S listens on the next),
# BENCH_DIR (scratch directory, default a new one under /var/tmp), CAIRN_BIN (a built cairn to measure instead of building this tree's, release).
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
# shellcheck source=SCRIPTDIR/lib/fio.sh
. "$ROOT/tools/lib/fio.sh"
CONF=${BENCH_CEPH_CONF:-${CAIRN_TEST_CEPH_CONF:-}}
[ -n "$CONF" ] && [ -f "$CONF" ] || { echo "rbd-bench: set BENCH_CEPH_CONF to a ceph.conf" >&2; exit 2; }
POOL=${BENCH_POOL:-rbd}
SIZE=${BENCH_SIZE:-$((1 << 30))}
RUNTIME=${BENCH_RUNTIME:-10}
ROUNDS=${BENCH_ROUNDS:-3}
PORT=${BENCH_PORT:-10910}
SMIS_PORT=$((PORT + 1))
SNAPSHOTS=${BENCH_SNAPSHOTS:-10}
PYTHON=${BENCH_PYTHON:-python3}
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
    for i in $(seq 0 $((SNAPSHOTS - 1))); do
        rbdc rm --no-progress "bench-clone-$$-$i" >/dev/null 2>&1 || true
    done
    rbdc snap purge --no-progress "$IMAGE" >/dev/null 2>&1 || true
    rbdc rm --no-progress "$IMAGE" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Starts the daemon on the image's pool and waits until its NBD export answers (no fixed sleeps).
start_server() {
    cat >"$DIR/cairn.toml" <<EOF
[listen]
smis_http = "127.0.0.1:$SMIS_PORT"
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

# job SIDE SPEC: one fio run (SPEC as in FIO_WORKLOADS), its IOPS and MiB/s appended to the
# results.
job() {
    local side=$1
    local engine
    if [ "$side" = rbd ]; then
        engine=(--ioengine=rbd --clientname=admin --pool="$POOL" --rbdname="$IMAGE")
    else
        engine=(--ioengine=nbd --uri="nbd://127.0.0.1:$PORT/$NAME")
    fi
    fio_workload rbd-bench "$@" "${engine[@]}"
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

# job_cairn SPEC: one fio run on Cairn's export, the daemon up only for it (it holds the
# image's exclusive lock while it serves).
job_cairn() {
    start_server
    job cairn "$@"
    stop_server
}

for round in $(seq 1 "$ROUNDS"); do
    for spec in "${FIO_WORKLOADS[@]}"; do
        echo "round $round, $spec: rbd engine and cairn NBD..." >&2
        if [ $((round % 2)) -eq 1 ]; then
            job rbd "$spec"
            job_cairn "$spec"
        else
            job_cairn "$spec"
            job rbd "$spec"
        fi
    done
done

fio_table cairn/rbd

# median: the median of the numbers on stdin.
median() { python3 -c 'import statistics, sys; print(f"{statistics.median(map(float, sys.stdin.read().split())):.3f}")'; }

# The two kinds alternate, one of each per round: a snapshot allocates its id through the
# monitor (an osdmap change, which the monitor batches: up to `paxos_propose_interval`, 1 s), so
# each kind meets the monitor in the same state.
echo "snapshots: $SNAPSHOTS through SMI-S and $SNAPSHOTS by the rbd CLI, alternating..." >&2
start_server
: >"$DIR/smis-snapshots.txt"
: >"$DIR/cli-snapshots.txt"
for i in $(seq 0 $((SNAPSHOTS - 1))); do
    "$PYTHON" "$ROOT/tools/lib/snapshot_time.py" "http://127.0.0.1:$SMIS_PORT" admin bench \
        "$NAME" "$i" >>"$DIR/smis-snapshots.txt"
    t0=$(date +%s.%N)
    rbdc snap create --no-progress "$IMAGE@bench-$i"
    rbdc clone "$POOL/$IMAGE@bench-$i" "$POOL/bench-clone-$$-$i"
    t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)" >>"$DIR/cli-snapshots.txt"
done
"$PYTHON" "$ROOT/tools/lib/snapshot_time.py" "http://127.0.0.1:$SMIS_PORT" admin bench \
    "$NAME" --delete "$SNAPSHOTS"
stop_server
SMIS_MEDIAN=$(median <"$DIR/smis-snapshots.txt")
CLI_MEDIAN=$(median <"$DIR/cli-snapshots.txt")
printf '\nsame-pool snapshot, median of %s: SMI-S %s s, rbd snap create + rbd clone %s s, SMI-S/CLI %s\n' \
    "$SNAPSHOTS" "$SMIS_MEDIAN" "$CLI_MEDIAN" \
    "$(python3 -c "print(f'{$SMIS_MEDIAN / $CLI_MEDIAN:.2f}')")"
echo "raw results: $RESULTS" >&2
