# shellcheck shell=bash
# fio runs and result tables shared by the peer benchmarks in tools/ (sourced, not run).
#
# The sourcing script sets DIR (scratch directory for fio's JSON), RESULTS (the TSV the rows go
# to), SIZE (bytes a job covers) and RUNTIME (seconds per timed job). A row is the labels a job
# was given, then IOPS and MiB/s of the side it exercised (read or write); a job that fails gives
# "nan" for both, and its first error line goes to stderr.

# The workloads every peer runs: RW:BS:DEPTH[:NAME]. 4 KiB random read and write at queue depth
# 32, 1 MiB sequential read and write at depth 8. NAME, when given, names the workload in the
# results (default RW-BS-qdDEPTH), so one workload can run twice under two names; a sourcing
# script may set its own list.
# shellcheck disable=SC2034 # used by the sourcing scripts
FIO_WORKLOADS=("randread:4k:32" "randwrite:4k:32" "read:1m:8" "write:1m:8")

# fio_result TOOL OUT LABEL... -- FIO_OPTION...: one fio job, its JSON in OUT, one row in $RESULTS.
fio_result() {
    local tool=$1 out=$2
    shift 2
    local labels=()
    while [ "$1" != "--" ]; do
        labels+=("$1")
        shift
    done
    shift
    if ! fio "$@" --output-format=json --output="$out" >/dev/null 2>"$out.err"; then
        local why
        why=$(grep -m1 -i error "$out.err" || head -c 300 "$out.err")
        echo "$tool: ${labels[*]} failed: $why" >&2
        printf '%s\t' "${labels[@]}" >>"$RESULTS"
        printf 'nan\tnan\n' >>"$RESULTS"
        return 0
    fi
    python3 - "$out" "${labels[@]}" >>"$RESULTS" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
side = job["read"] if job["read"]["io_bytes"] else job["write"]
print("\t".join(sys.argv[2:] + [f"{side['iops']:.0f}", f"{side['bw'] / 1024:.1f}"]))
PY
}

# fio_prefill ENGINE_OPTION...: writes all $SIZE bytes once (1 MiB writes, 8 in flight), so
# reads measured later return written data.
fio_prefill() {
    fio --name=fill "$@" --rw=write --bs=1m --iodepth=8 --size="$SIZE" >/dev/null
}

# fio_workload TOOL PEER SPEC ENGINE_OPTION...: one timed job of $RUNTIME seconds over $SIZE
# bytes, SPEC as in FIO_WORKLOADS; its row is "PEER  NAME  IOPS  MiB/s".
fio_workload() {
    local tool=$1 peer=$2 rw bs depth name
    IFS=: read -r rw bs depth name <<<"$3"
    name=${name:-$rw-$bs-qd$depth}
    shift 3
    fio_result "$tool" "$DIR/$peer-$name.json" "$peer" "$name" -- \
        --name=j "$@" --rw="$rw" --bs="$bs" --iodepth="$depth" --size="$SIZE" \
        --runtime="$RUNTIME" --time_based --group_reporting --randrepeat=0
}

# fio_workloads TOOL PEER ENGINE_OPTION...: every workload of FIO_WORKLOADS on one peer.
fio_workloads() {
    local tool=$1 peer=$2 spec
    shift 2
    for spec in "${FIO_WORKLOADS[@]}"; do
        fio_workload "$tool" "$peer" "$spec" "$@"
    done
}

# fio_alternated TOOL ROUNDS PEER=NBD_URI...: ROUNDS rounds of every workload of FIO_WORKLOADS
# on every peer (fio's nbd engine at NBD_URI, every peer serving at once). A workload runs on all
# peers back to back, in reverse order every other round, so a slow spell of the disk falls on
# them alike; one row per job, for fio_table's medians.
fio_alternated() {
    local tool=$1 rounds=$2 round spec i
    shift 2
    local peers=("$@") order=()
    for round in $(seq 1 "$rounds"); do
        order=()
        for i in "${!peers[@]}"; do
            if [ $((round % 2)) -eq 1 ]; then
                order+=("${peers[$i]}")
            else
                order=("${peers[$i]}" "${order[@]}")
            fi
        done
        for spec in "${FIO_WORKLOADS[@]}"; do
            for i in "${order[@]}"; do
                fio_workload "$tool" "${i%%=*}" "$spec" --ioengine=nbd --uri="${i#*=}"
            done
        done
    done
}

# fio_table PEER/BASE...: the table of $RESULTS rows "PEER WORKLOAD IOPS MiB/s": per workload,
# IOPS and MiB/s of every peer named, then the IOPS ratio PEER/BASE of each pair. A workload run
# in several rounds (fio_alternated) gives the medians: of each peer's figures, and of the
# ratios of the rounds (the n-th run of PEER against the n-th of BASE). Peers without rows, and
# pairs with such a peer, are left out.
fio_table() {
    python3 - "$RESULTS" "$@" <<'PY'
import math, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
runs = {}
for p, w, iops, mib in rows:
    runs.setdefault((p, w), []).append((float(iops), float(mib)))
present = {p for p, _ in runs}
pairs = [tuple(a.split("/")) for a in sys.argv[2:]]
pairs = [(p, b) for p, b in pairs if p in present and b in present]
peers = list(dict.fromkeys(x for pair in pairs for x in pair)) or sorted(present)
work = list(dict.fromkeys(r[1] for r in rows))
nan = float("nan")

def median(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else nan

def figure(p, w, k):
    return median([r[k] for r in runs.get((p, w), [])])

rounds = max(len(v) for v in runs.values())
if rounds > 1:
    print(f"medians of {rounds} alternated rounds")
print(f"{'':<18}" + "".join(f"{p:>23}" for p in peers))
print(f"{'workload':<18}" + "".join(f"{'IOPS':>12}{'MiB/s':>11}" for _ in peers)
      + "".join(f"  {p}/{b}" for p, b in pairs))
for w in work:
    line = f"{w:<18}" + "".join(f"{figure(p, w, 0):>12.0f}{figure(p, w, 1):>11.1f}" for p in peers)
    for p, b in pairs:
        each = zip(runs.get((p, w), []), runs.get((b, w), []))
        ratio = median([c[0] / r[0] if r[0] > 0 else nan for c, r in each])
        line += f"{ratio:>{len(p) + len(b) + 3}.2f}"
    print(line)
PY
}
