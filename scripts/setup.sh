#!/usr/bin/env bash
# Installs what madang needs, when it is missing. Idempotent: a second run changes nothing.
# Called by scripts/run.sh (with --run) and scripts/test.sh; runnable on its own.
#
#   scripts/setup.sh          everything the tests need
#   scripts/setup.sh --run    only what the main job (`madang demo`, `madang serve`) needs
#
# The main job:
#   nasm    OpenH264's assembly kernels. Must be present BEFORE openh264-sys2 is first built,
#           or it silently builds a C-only encoder that is ~2.5x slower.
#   cmake   builds the bundled libopus.
#   a C compiler, make, pkg-config
#           the codecs' C and C++ sources.
# The tests, besides:
#   ffmpeg  test oracle: an independent H.264 decoder (and x264 in `madang bench codec`).
#   wasm32  the Rust target the browser module and the core's no-native build use.
#   chromium, node + playwright-core
#           a real browser for the WebRTC interop test (Debian's chromium; playwright-core
#           from npm drives it, no browser download); vite for the package-import test.
#   fonts-nanum
#           a Korean font, so headless Chromium draws the demo page's Hangul title.
#   wasm-bindgen-cli 0.2.130
#           turns the browser module into wasm/pkg (the CLI must match the pinned
#           wasm-bindgen; ~12 minutes to build once).
#   valgrind
#           the C ABI tests.
#   GStreamer (webrtcbin, x264enc, opusenc, libnice) and its Python bindings
#           a WHIP publisher with nothing of madang in it (core/tests/gst/whip_publish.py).
set -euo pipefail

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else say "need root to run: $*"; return 1
    fi
}

run_only=0
[ "${1:-}" = "--run" ] && run_only=1

# command → Debian package: the main job's, then the tests'.
declare -A PACKAGES=([nasm]=nasm [cmake]=cmake [pkg-config]=pkg-config [cc]=build-essential [make]=make)
if [ "$run_only" -eq 0 ]; then
    PACKAGES+=([ffmpeg]=ffmpeg [chromium]=chromium [chromedriver]=chromium-driver [node]=nodejs
               [npm]=npm [valgrind]=valgrind)
fi
missing=()
for cmd in "${!PACKAGES[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGES[$cmd]}")
done
if [ "$run_only" -eq 0 ] && ! fc-list :lang=ko 2>/dev/null | grep -q .; then
    missing+=(fonts-nanum)
fi
if [ "$run_only" -eq 0 ] && ! /usr/bin/python3 -c 'import gi
for name, version in [("Gst", "1.0"), ("GstWebRTC", "1.0"), ("GstSdp", "1.0"), ("Nice", "0.1")]:
    gi.require_version(name, version)
from gi.repository import Gst
Gst.init(None)
assert all(Gst.ElementFactory.find(e) for e in ["webrtcbin", "x264enc", "opusenc", "nicesrc"])' \
        >/dev/null 2>&1; then
    missing+=(python3-gi gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1 gstreamer1.0-plugins-base
              gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
              gstreamer1.0-nice)
fi
nasm_was_missing=0
command -v nasm >/dev/null 2>&1 || nasm_was_missing=1

if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        say "missing: ${missing[*]} — install them with your package manager and run again"
        exit 1
    fi
    say "installing ${missing[*]} (apt)…"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# An openh264-sys2 built before nasm existed has no assembly; throw it away so it rebuilds.
if [ "$nasm_was_missing" -eq 1 ]; then
    say "nasm is new: cleaning any openh264-sys2 built without it"
    cargo clean -p openh264-sys2 >/dev/null 2>&1 || true
    cargo clean --release -p openh264-sys2 >/dev/null 2>&1 || true
fi

[ "$run_only" -eq 1 ] && exit 0

browser_tests="$(dirname "$0")/../core/tests/browser"
if [ ! -d "$browser_tests/node_modules/playwright-core" ] || [ ! -d "$browser_tests/node_modules/vite" ]; then
    say "installing playwright-core and vite for the browser tests (npm)…"
    (cd "$browser_tests" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        say "adding the wasm32-unknown-unknown target…"
        rustup target add wasm32-unknown-unknown >/dev/null
    fi
else
    say "rustup not found: the wasm32 check needs the wasm32-unknown-unknown target"
fi

# The CLI that writes wasm/pkg must be the exact version of the wasm-bindgen crate.
wasm_bindgen_version=0.2.130
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wasm_bindgen_version" ]; then
    say "installing wasm-bindgen-cli $wasm_bindgen_version (cargo install, ~12 minutes once)…"
    cargo install --quiet wasm-bindgen-cli --version "$wasm_bindgen_version"
fi
