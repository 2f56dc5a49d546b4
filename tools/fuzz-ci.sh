#!/usr/bin/env bash
# Runs every fuzz target in fuzz/fuzz_targets for an equal share of a fixed budget
# (CAIRN_FUZZ_SECONDS, default 240 seconds for all targets together), each starting from its
# committed corpus in fuzz/corpus/<target>/ (and fuzz/seeds/<target>/ where present). New
# inputs go to a temporary directory, so the checkout is left as it was. Every target runs; a
# crash, a timeout or a memory blow-up in any fails the script and leaves the input in
# fuzz/artifacts/<target>/. Needs the nightly toolchain and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

budget_secs=${CAIRN_FUZZ_SECONDS:-240}
# The fuzz crate is its own workspace with its own target directory.
unset CARGO_TARGET_DIR

cargo +nightly fuzz build
mapfile -t targets < <(cargo +nightly fuzz list)
per_target_secs=$((budget_secs / ${#targets[@]}))
if [ "$per_target_secs" -lt 1 ]; then
    echo "fuzz-ci: a budget of ${budget_secs}s is too short for ${#targets[@]} targets" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "corpus/$t"
    # Hand-written seeds, where a target has them, are read like the corpus.
    seeds=()
    if [ -d "seeds/$t" ]; then seeds=("seeds/$t"); fi
    echo "fuzz-ci: $t for ${per_target_secs}s"
    if ! cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$per_target_secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$work/$t.log" 2>&1; then
        grep -E -A3 'panicked at|^SUMMARY|^==[0-9]+== ERROR' "$work/$t.log" >&2 || tail -n 40 "$work/$t.log" >&2
        echo "fuzz-ci: $t failed; the input is in fuzz/artifacts/$t/" >&2
        failed+=("$t")
        continue
    fi
    grep -E '^stat::number_of_executed_units' "$work/$t.log" || true
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz-ci: failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz-ci: ${#targets[@]} targets, no crash"
