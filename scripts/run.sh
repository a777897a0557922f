#!/usr/bin/env bash
# The main job on defaults: `madang demo` — an embedded room server and four synthetic
# participants (stamped test pattern, speech-like audio, a chat message each) in one conference
# over real WebRTC on loopback, with loss and glass-to-glass latency per pair.
# Extra arguments go to `madang demo` (try --help); `madang serve` runs the server alone.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh --run
exec cargo run --release --quiet -p madang-cli -- demo "$@"
