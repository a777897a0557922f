#!/usr/bin/env bash
# Installs the C library: lib/libmadang_ffi.{a,so}, include/madang.h and a generated
# lib/pkgconfig/madang.pc under PREFIX (default /usr/local).
#
#   bash scripts/install-c.sh [PREFIX [LIBDIR]]
#
# Without LIBDIR it builds the release libraries first; with LIBDIR it installs the ones
# already built there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
prefix="${1:-/usr/local}"
libdir="${2:-}"
if [ -z "$libdir" ]; then
    cargo build --release -p madang-ffi --lib
    libdir="${CARGO_TARGET_DIR:-target}/release"
fi
version="$(sed -n 's/^#define MADANG_VERSION_STRING "\(.*\)"/\1/p' ffi/include/madang.h)"
[ -n "$version" ] || { echo "no version in ffi/include/madang.h" >&2; exit 1; }
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0644 "$libdir/libmadang_ffi.a" "$prefix/lib/"
install -m 0755 "$libdir/libmadang_ffi.so" "$prefix/lib/"
install -m 0644 ffi/include/madang.h "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" ffi/madang.pc.in \
    > "$prefix/lib/pkgconfig/madang.pc"
echo "installed madang $version under $prefix (pkg-config: $prefix/lib/pkgconfig/madang.pc)"
