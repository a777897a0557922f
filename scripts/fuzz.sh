#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 600) with cargo fuzz on
# the nightly toolchain, one after the other, growing fuzz/corpus/<target>. Prints one line
# per target: executions, executions a second, coverage, crashes. A crash leaves its input in
# fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/ and fix the parser, and
# the normal suite (tests/fuzz_corpus.rs) replays it from then on.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
say() { printf 'fuzz: %s\n' "$*" >&2; }

command -v rustup >/dev/null || { say "rustup is needed for the nightly toolchain"; exit 1; }
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
fi
# A target dir of its own: the fuzz build is instrumented, nothing to share with the suite's.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/fuzz}"
say "building ${#targets[@]} targets (nightly, sanitizer=address)…"
cargo +nightly fuzz build --fuzz-dir fuzz
failed=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log="$(mktemp)"
    say "$t: ${seconds} s…"
    if cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1; then
        outcome="0 crashes"
    else
        outcome="CRASH (see fuzz/artifacts/$t and $log)"
        failed=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
    corpus=$(ls "fuzz/corpus/$t" | wc -l)
    printf '%-14s %12s execs  %8s/s  cov %6s  corpus %5s  %s\n' "$t" "$runs" "$rate" "$cov" "$corpus" "$outcome"
    [ "$outcome" = "0 crashes" ] && rm -f "$log"
done
exit "$failed"
