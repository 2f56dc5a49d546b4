#!/usr/bin/env bash
# Benchmark of what commits cost the I/O running beside them (not a test).
#
# For every `cairn` binary measured (CAIRN_BINS="LABEL=PATH ...", default this tree's release
# binary as "cairn"), one real daemon (`cairn serve`) over its own file-backed pool (O_DIRECT,
# io_uring) with two prefilled volumes `a` and `b` (`b` then snapshotted) and one empty volume per
# round (`w1`, `w2`, ...), all daemons serving at once; then per round,
# each job on every daemon back to back (the order reversed every other round), fio over NBD:
#   read-alone    4 KiB random reads of `a`, queue depth 8
#   read+flushes  the same while a second fio writes 4 KiB blocks of `b` at depth 1, each one
#                 followed by a flush (each write is redirected from the snapshot's block and
#                 waits for a commit of its own: a FUA stream)
#   flush-stream  that second fio's writes (each with its flush)
#   write-commits 4 KiB random writes of that round's empty volume at depth 32 under the default
#                 commit interval (1 s): most map a new block, the interval commits (and those
#                 the dirty bound calls for) fall inside the run, its tail latency shows them
# Prints IOPS and completion latency (p50, p99, p99.9, max in µs) per job, medians over rounds,
# and per binary the read p99 with the flush stream over the read p99 alone (target: <= 2.0).
#
# Environment: BENCH_DIR (scratch dir, default a new one under /var/tmp), BENCH_SIZE (volume
# bytes, default 1 GiB), BENCH_RUNTIME (seconds per job, default 10), BENCH_ROUNDS (default 2),
# BENCH_PORT (first port; one per binary, default 10950).
set -euo pipefail

for tool in fio nbdinfo python3 cargo; do
    command -v "$tool" >/dev/null || { echo "commit-bench: $tool is required" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=commit-bench
# shellcheck source=SCRIPTDIR/lib/servers.sh
. "$ROOT/tools/lib/servers.sh"
SIZE=${BENCH_SIZE:-$((1 << 30))}
RUNTIME=${BENCH_RUNTIME:-10}
ROUNDS=${BENCH_ROUNDS:-2}
PORT=${BENCH_PORT:-10950}
DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/commit-bench.XXXXXX)}
mkdir -p "$DIR"
RESULTS="$DIR/results.tsv"
: >"$RESULTS"

if [ -z "${CAIRN_BINS:-}" ]; then
    CAIRN_BINS="cairn=$(cairn_release)"
fi

# serve BIN DATA PORT: a daemon over DATA's pool, serving NBD on PORT.
serve() {
    "$1" serve --data-dir "$2" --config "$2/cairn.toml" >>"$2/serve.log" 2>&1 &
    PIDS+=("$!")
    wait_nbd "$!" "nbd://127.0.0.1:$3/a"
}

LABELS=()
declare -A URI
port=$PORT
for spec in $CAIRN_BINS; do
    label=${spec%%=*} bin=${spec#*=}
    data="$DIR/$label"
    rm -rf "$data"
    mkdir -p "$data"
    cat >"$data/cairn.toml" <<CONFIG
[[pool]]
name = "bench"
path = "bench.img"
[listen]
smis_http = "127.0.0.1:0"
smis_https = ""
iscsi = ""
nbd = "127.0.0.1:$port"
CONFIG
    "$bin" --pool-file "$data/bench.img" pool create --name bench \
        --size $((SIZE * (3 + ROUNDS) + (256 << 20))) >/dev/null
    vols="a b"
    for round in $(seq 1 "$ROUNDS"); do vols="$vols w$round"; done
    for v in $vols; do
        "$bin" --pool-file "$data/bench.img" volume create "$v" --size "$SIZE" >/dev/null
    done
    serve "$bin" "$data" "$port"
    for v in a b; do
        fio --name=fill --ioengine=nbd --uri="nbd://127.0.0.1:$port/$v" --rw=write --bs=1m \
            --iodepth=8 --size="$SIZE" >/dev/null
    done
    stop_last
    # Snapshotted: a write to a block of `b` is redirected (the first one to it), so each flush
    # of the stream commits the mapping it changed.
    "$bin" --pool-file "$data/bench.img" snapshot create b b-snap >/dev/null
    serve "$bin" "$data" "$port"
    LABELS+=("$label")
    URI[$label]="nbd://127.0.0.1:$port"
    port=$((port + 1))
done

# fio_json OUT URI RW DEPTH [FIO_OPTION...]: one timed 4 KiB job, its JSON in OUT.
fio_json() {
    local out=$1 uri=$2 rw=$3 depth=$4
    shift 4
    fio --name=j --ioengine=nbd --uri="$uri" --rw="$rw" --bs=4k --iodepth="$depth" \
        --size="$SIZE" --runtime="$RUNTIME" --time_based --randrepeat=0 \
        --percentile_list=50:99:99.9 "$@" --output-format=json --output="$out" >/dev/null
}

# row LABEL JOB JSON: "LABEL JOB IOPS P50 P99 P99.9 MAX" (µs) of the side the job exercised.
row() {
    python3 - "$@" >>"$RESULTS" <<'PY'
import json, sys
label, name, path = sys.argv[1:4]
job = json.load(open(path))["jobs"][0]
side = job["read"] if job["read"]["io_bytes"] else job["write"]
clat = side["clat_ns"]
pct = clat.get("percentile", {})
us = lambda v: f"{v / 1000:.0f}"
print("\t".join([label, name, f"{side['iops']:.0f}"]
                + [us(pct.get(k, float("nan"))) for k in ("50.000000", "99.000000", "99.900000")]
                + [us(clat["max"])]))
PY
}

one_round() {
    local label=$1 round=$2 u=${URI[$1]} out="$DIR/$1-r$2"
    fio_json "$out-read-alone.json" "$u/a" randread 8
    row "$label" read-alone "$out-read-alone.json"
    # The flush stream starts first and outlasts the reads by a second on each side.
    RUNTIME=$((RUNTIME + 2)) fio_json "$out-flush-stream.json" "$u/b" randwrite 1 --fsync=1 &
    local writer=$!
    sleep 1
    fio_json "$out-read-flushes.json" "$u/a" randread 8
    wait "$writer"
    row "$label" read+flushes "$out-read-flushes.json"
    row "$label" flush-stream "$out-flush-stream.json"
    fio_json "$out-write-commits.json" "$u/w$round" randwrite 32
    row "$label" write-commits "$out-write-commits.json"
}

for round in $(seq 1 "$ROUNDS"); do
    order=("${LABELS[@]}")
    if [ $((round % 2)) -eq 0 ]; then
        mapfile -t order < <(printf '%s\n' "${LABELS[@]}" | tac)
    fi
    for label in "${order[@]}"; do
        echo "round $round: $label" >&2
        one_round "$label" "$round"
    done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
runs = {}
for label, job, *vals in rows:
    runs.setdefault((label, job), []).append([float(v) for v in vals])
labels = list(dict.fromkeys(r[0] for r in rows))
jobs = list(dict.fromkeys(r[1] for r in rows))
med = lambda k, i: statistics.median(v[i] for v in runs[k])
print(f"{'binary':<10}{'job':<15}{'IOPS':>8}{'p50 µs':>9}{'p99 µs':>9}{'p99.9 µs':>10}{'max µs':>9}")
for label in labels:
    for job in jobs:
        k = (label, job)
        if k in runs:
            print(f"{label:<10}{job:<15}" + "".join(
                f"{med(k, i):>{w}.0f}" for i, w in enumerate((8, 9, 9, 10, 9))))
print()
print("read p99 with the flush stream / alone (target <= 2.0):")
for label in labels:
    alone, busy = med((label, "read-alone"), 2), med((label, "read+flushes"), 2)
    print(f"  {label:<10}{busy / alone:.2f}")
PY
echo "raw results: $RESULTS" >&2
