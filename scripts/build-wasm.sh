#!/usr/bin/env bash
# Builds the browser module into wasm/pkg/, an npm-shaped package (package.json with
# "type": "module", the .js glue, the .wasm, TypeScript .d.ts), and reports its size.
#
#   bash scripts/build-wasm.sh
#
# Needs the wasm32 target and wasm-bindgen-cli 0.2.130 (scripts/setup.sh installs both).
# No wasm-opt: Debian's binaryen (108) predates the reference-types output of this
# wasm-bindgen and breaks the module; size comes from the `wasm` profile (opt-level z, LTO).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
target_dir="${CARGO_TARGET_DIR:-target}"
out=wasm/pkg
step() { printf '== %s\n' "$*" >&2; }

step "cargo build -p madang-wasm (wasm32, profile wasm)"
cargo build --quiet -p madang-wasm --target wasm32-unknown-unknown --profile wasm
step "wasm-bindgen --target web"
rm -rf "$out"
wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir "$out" \
    "$target_dir/wasm32-unknown-unknown/wasm/madang_wasm.wasm"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
cat > "$out/package.json" <<JSON
{
  "name": "madang-wasm",
  "version": "$version",
  "description": "madang in the browser: join madang rooms with the browser's WebRTC",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "madang_wasm.js",
  "module": "madang_wasm.js",
  "types": "madang_wasm.d.ts",
  "exports": {
    ".": { "types": "./madang_wasm.d.ts", "default": "./madang_wasm.js" },
    "./madang_wasm_bg.wasm": "./madang_wasm_bg.wasm"
  },
  "files": ["madang_wasm.js", "madang_wasm.d.ts", "madang_wasm_bg.wasm", "madang_wasm_bg.wasm.d.ts"],
  "sideEffects": false
}
JSON
raw=$(stat -c %s "$out/madang_wasm_bg.wasm")
gz=$(gzip -9 -c "$out/madang_wasm_bg.wasm" | wc -c)
printf 'wasm/pkg: madang_wasm_bg.wasm %d bytes raw, %d bytes gzip (target <= 300 KB gzip)\n' "$raw" "$gz"
