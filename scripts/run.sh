#!/usr/bin/env bash
# The main job on defaults. Today: `madang demo` — the stamped test pattern and speech through
# madang's H.264 and Opus codecs and back, written to madang-demo.y4m / madang-demo.wav, with a
# report. Extra arguments go to `madang demo` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh
exec cargo run --release --quiet -p madang-cli -- demo "$@"
