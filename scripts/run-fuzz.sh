#!/bin/bash
# `make fuzz`: build the libFuzzer targets fuzz-<target> (meson option
# -Dfuzzing=true, clang) in BUILD_DIR and run each for SECONDS from its seed
# corpus tests/fuzz/corpora/<target>/. New inputs go to
# BUILD_DIR/corpus/<target>/, never into the source tree; a crash stops the
# run with libFuzzer's reproducer file named in its output.
#
# usage: scripts/run-fuzz.sh BUILD_DIR SECONDS [MESON_SETUP_ARGS...]
set -euo pipefail

cd "$(dirname "$0")/.."
build=$1
seconds=$2
shift 2

if [ ! -d tests/fuzz ]; then
	echo "no fuzz targets yet"
	exit 0
fi
if [ ! -f "$build/build.ninja" ]; then
	CC=${FUZZ_CC:-clang} CXX=${FUZZ_CXX:-clang++} meson setup "$build" -Dfuzzing=true "$@"
fi

# Only the fuzz targets are built: nothing else is needed, and the rest of
# the tree need not link under the fuzzing flags.
mapfile -t targets < <(meson introspect --targets "$build" | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["name"].startswith("fuzz-") and t["type"] == "executable":
        print(t["name"] + "\t" + t["filename"][0])
')
if [ ${#targets[@]} -eq 0 ]; then
	echo "no fuzz targets yet"
	exit 0
fi
meson compile -C "$build" "${targets[@]%%$'\t'*}"

for t in "${targets[@]}"; do
	name=${t%%$'\t'*}
	exe=${t#*$'\t'}
	short=${name#fuzz-}
	corpus=()
	[ -d "tests/fuzz/corpora/$short" ] && corpus=("tests/fuzz/corpora/$short")
	mkdir -p "$build/corpus/$short"
	echo "== $name for $seconds s"
	"$exe" -max_total_time="$seconds" -print_final_stats=1 "$build/corpus/$short" "${corpus[@]}"
done
