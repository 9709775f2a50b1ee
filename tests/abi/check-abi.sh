#!/bin/bash
# ABI gate (docs/abi.md), TAP output.
#
# usage: check-abi.sh SOURCE_ROOT LIBRARY
#
# Compares LIBRARY with the baseline tests/abi/libfasvd.abi (written by
# scripts/update-abi-baseline.sh) using abidiff, restricted to the public
# headers include/fasvd/:
#   1. no incompatible change (abidiff exit bit 8: a removed function, a
#      changed signature ...);
#   2. no change at all except added functions: any other change (a struct
#      that changed size, a typedef that changed type ...) must be reviewed
#      and either undone or accepted in tests/abi/libfasvd.abignore;
#   3. no type replaced by a different type of the same size: abidiff files
#      int64_t -> double as a harmless "compatible type" change (and hides
#      it), but the value then travels in another register.
set -u

src=$1
lib=$2
baseline=$src/tests/abi/libfasvd.abi
suppr=$src/tests/abi/libfasvd.abignore

echo "1..3"
skip_all() {
	echo "ok 1 - no incompatible ABI change # SKIP $1"
	echo "ok 2 - no ABI change other than additions # SKIP $1"
	echo "ok 3 - no type replaced by another of the same size # SKIP $1"
	exit 0
}
[ -f "$baseline" ] || skip_all "no baseline tests/abi/libfasvd.abi (scripts/update-abi-baseline.sh)"
command -v abidiff >/dev/null || skip_all "abidiff not installed (Debian package abigail-tools)"
readelf -S "$lib" | grep -q '\.debug_info' || skip_all "$lib has no debug info (configure with -Ddebug=true)"

args=(--headers-dir2 "$src/include/fasvd")
[ -f "$suppr" ] && args+=(--suppressions "$suppr")

failed=0
# tap BAD N NAME REPORT: one TAP case; a failure's report goes to stderr,
# which `meson test --print-errorlogs` shows.
tap() {
	if [ "$1" = 0 ]; then
		echo "ok $2 - $3"
	else
		failed=1
		echo "not ok $2 - $3"
		{ echo "not ok $2 - $3"; printf '%s\n' "$4" | sed 's/^/# /'; } >&2
	fi
}

# abidiff's exit status is a bit field: 1 error, 2 usage error, 4 ABI change,
# 8 incompatible ABI change.
report=$(abidiff "${args[@]}" "$baseline" "$lib" 2>&1)
rc=$?
tap $((rc & 11)) 1 "no incompatible ABI change against tests/abi/libfasvd.abi" "$report"
# Additions: one summary line as a TAP comment.
[ "$rc" = 4 ] && printf '%s\n' "$report" | grep 'Functions changes summary' | sed 's/^/# /'

# Additions are allowed: compare again without them; what is left is not an
# addition.
report=$(abidiff --no-added-syms "${args[@]}" "$baseline" "$lib" 2>&1)
tap $(($? & 15)) 2 "no ABI change other than additions" "$report"

# With the harmless changes shown, keep what abidiff calls a "compatible
# type" change (added enumerators and the like stay allowed).
report=$(abidiff --no-added-syms --harmless "${args[@]}" "$baseline" "$lib" 2>&1)
rc=$?
swapped=$(printf '%s\n' "$report" | grep -B4 'to compatible type')
[ -n "$swapped" ] && rc=1
tap $((rc & 3)) 3 "no type replaced by another of the same size" "${swapped:-$report}"

exit $failed
