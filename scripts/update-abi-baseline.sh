#!/bin/bash
# Regenerate the ABI baselines (docs/abi.md): tests/abi/libfasvd.abi (abidw
# output), which the `check-abi` test compares the built library against, and
# tests/abi/struct-layout.txt (sizes and member offsets of the public
# structs), which `check-struct-layout` compares the headers against.
#
# usage: scripts/update-abi-baseline.sh [BUILD_DIR]
#
# Builds the working tree in BUILD_DIR (default: build-abi, configured here
# with debug info, which abidw needs) and writes the ABI of its libfasvd.so.0,
# restricted to the types of the public headers in include/fasvd/. Run it at a
# release, from the release's commit, and commit the result with the release.
set -euo pipefail

cd "$(dirname "$0")/.."
build=${1:-build-abi}

if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" -Dbuildtype=debugoptimized -Dtests=false -Dexamples=false
fi
ninja -C "$build"

lib=$(find "$build" -name libfasvd.so.0 -not -path '*/meson-private/*' | head -n 1)
if [ -z "$lib" ]; then
	echo "update-abi-baseline: no libfasvd.so.0 in $build" >&2
	exit 1
fi
if ! readelf -S "$lib" | grep -q '\.debug_info'; then
	echo "update-abi-baseline: $lib has no debug info (configure $build with -Ddebug=true)" >&2
	exit 1
fi

# Build paths are left out so that the baseline does not depend on where
# the tree was built (abidiff needs the locations to tell public types).
abidw --headers-dir include/fasvd --drop-private-types \
	--no-corpus-path --no-comp-dir-path --no-elf-needed \
	--out-file tests/abi/libfasvd.abi "$lib"
echo "wrote tests/abi/libfasvd.abi from $lib ($(grep -c '<elf-symbol ' tests/abi/libfasvd.abi) symbols)"

# The layout of the public structs, as the C compiler ($CC, default cc) lays
# them out (the generated <fasvd/version.h> comes from the build).
python3 tests/abi/check-struct-layout.py --write . "$build" "${CC:-cc}"
