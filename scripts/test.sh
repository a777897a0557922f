#!/usr/bin/env bash
# Every check and test: formatting, clippy, the core's wasm32 build (no native code), the
# browser package, the browser module's unit tests in headless Chromium, then the whole test
# suite (unit, integration, the CLI end to end, ffmpeg as decoder oracle, C examples under
# ASan and valgrind, the demo page in Chromium with a Rust participant, a Vite import).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh

step() { printf '\n== %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "core and browser module for wasm32-unknown-unknown, no native features"
cargo build --quiet -p madang -p madang-wasm --no-default-features --target wasm32-unknown-unknown

step "browser package wasm/pkg (scripts/build-wasm.sh)"
bash scripts/build-wasm.sh

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

step "browser module unit tests in headless Chromium (wasm-bindgen-test)"
CHROMEDRIVER=/usr/bin/chromedriver \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    cargo test -p madang-wasm --target wasm32-unknown-unknown --lib 2>&1 | tee "$log"

step "cargo test --workspace"
cargo test --workspace --all-features 2>&1 | tee -a "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 }
     END { printf "\n%d passed, %d failed\n", passed, failed }' "$log"
