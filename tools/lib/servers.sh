# shellcheck shell=bash
# The servers a peer benchmark in tools/ starts, and their readiness (sourced, not run).
#
# The sourcing script sets ROOT (the tree) and BENCH_NAME (its name, for messages) and adds every
# server it starts in the background to PIDS; stop_servers (trapped on EXIT here) stops them all.

PIDS=()

# stop_servers: stops every server still in PIDS.
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap stop_servers EXIT

# stop_last: stops the server started last.
stop_last() {
    kill -TERM "${PIDS[-1]}" 2>/dev/null || true
    wait "${PIDS[-1]}" 2>/dev/null || true
    unset 'PIDS[-1]'
}

# wait_nbd PID URI: until an NBD handshake with URI succeeds (no fixed sleeps).
wait_nbd() {
    for _ in $(seq 1 400); do
        if nbdinfo --size "$2" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$1" 2>/dev/null; then echo "$BENCH_NAME: server $1 died" >&2; exit 1; fi
        sleep 0.05
    done
    echo "$BENCH_NAME: $2 did not come up" >&2
    exit 1
}

# cairn_release: builds this tree's release `cairn` and prints its path.
cairn_release() {
    echo "building cairn (release)..." >&2
    (cd "$ROOT" && cargo build --release -q -p cairn --bin cairn)
    local target
    target=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    echo "$target/release/cairn"
}
