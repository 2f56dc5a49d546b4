#!/usr/bin/env bash
# Runs every fuzz target in fuzz/fuzz_targets for an equal share of a fixed budget
# (CAIRN_FUZZ_SECONDS, default 120 seconds for all targets together), each starting from its
# committed corpus in fuzz/corpus/<target>/ (and fuzz/seeds/<target>/ where present). New
# inputs go to a temporary directory, so the checkout is left as it was. Every target runs; a
# crash, a timeout or a memory blow-up in any fails the script, leaves the input in
# fuzz/artifacts/<target>/ and prints it (base64) with the command that replays it, so a CI log
# is enough to reproduce. Needs the nightly toolchain and cargo-fuzz.
#
# One build serves every target (`cargo fuzz build` with no target builds them all, sharing the
# dependencies); `run` is given the same flags so it finds that build fresh. The build is
# cargo-fuzz's default (optimised, debug assertions, AddressSanitizer): a clean build of the fuzz
# crate took about 400 s of CPU on this project's 2-core machines, so it fits CI's budget with
# the sanitizer kept. CAIRN_FUZZ_BUILD_FLAGS adds `cargo fuzz build` flags (e.g.
# `--codegen-units 16`, `--sanitizer none`) to both steps. `fuzz-ci.sh build` only builds, so
# that the build can run beside other work (`.ci/run` runs it beside the package installs).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

budget_secs=${CAIRN_FUZZ_SECONDS:-120}
# libFuzzer's random seed, fixed so that a landing's verdict does not depend on chance: every run
# explores the same mutations from the same corpus (further on a faster machine). Set
# CAIRN_FUZZ_SEED to another number to explore elsewhere; a crash found so is fixed and its input
# added to fuzz/corpus/<target>/.
seed=${CAIRN_FUZZ_SEED:-1}
# The fuzz crate is its own workspace with its own target directory.
unset CARGO_TARGET_DIR

read -r -a BUILD_FLAGS <<<"${CAIRN_FUZZ_BUILD_FLAGS:-}"
cargo +nightly fuzz build "${BUILD_FLAGS[@]}"
if [ "${1:-}" = build ]; then
    exit 0
fi
mapfile -t targets < <(cargo +nightly fuzz list)
per_target_secs=$((budget_secs / ${#targets[@]}))
if [ "$per_target_secs" -lt 1 ]; then
    echo "fuzz-ci: a budget of ${budget_secs}s is too short for ${#targets[@]} targets" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()

# Prints the inputs a failed run of target $1 left in artifacts/$1/ since marker file $2.
print_artifacts() {
    local f
    find "artifacts/$1" -type f -newer "$2" 2>/dev/null | while read -r f; do
        echo "fuzz-ci: $1 input fuzz/$f ($(stat -c %s "$f") bytes), base64:" >&2
        head -c 65536 "$f" | base64 -w 76 >&2
        echo "fuzz-ci: replay: cd fuzz && cargo +nightly fuzz run ${BUILD_FLAGS[*]} $1 $f" >&2
    done || true
}

for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "corpus/$t" "artifacts/$t"
    touch "$work/$t.start"
    # Hand-written seeds, where a target has them, are read like the corpus.
    seeds=()
    if [ -d "seeds/$t" ]; then seeds=("seeds/$t"); fi
    echo "fuzz-ci: $t for ${per_target_secs}s"
    if ! cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "$t" "$work/$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$per_target_secs" -seed="$seed" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$work/$t.log" 2>&1; then
        grep -E -A3 'panicked at|^SUMMARY|^==[0-9]+== ERROR' "$work/$t.log" >&2 || tail -n 40 "$work/$t.log" >&2
        echo "fuzz-ci: $t failed; the input is in fuzz/artifacts/$t/" >&2
        print_artifacts "$t" "$work/$t.start"
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
