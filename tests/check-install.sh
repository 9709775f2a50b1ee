#!/bin/bash
# Install into a scratch tree and use it the way a user would (TAP output).
#
# usage: check-install.sh SOURCE_ROOT BUILD_ROOT [CC...]
#
#   meson install --destdir TMP, then check that TMP holds libfasvd.so.0 (and
#   the libfasvd.so link), fasvd.pc, bin/fasvd and every include/fasvd/*.h;
#   build every examples/*.c with `CC prog.c $(pkg-config --cflags --libs
#   fasvd)` against that tree only (PKG_CONFIG_SYSROOT_DIR); run the installed
#   `fasvd --version` against the installed library.
set -u

src=$1
build=$2
shift 2
if [ $# -gt 0 ]; then cc=("$@"); else cc=(cc); fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fasvd-check-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root

n=0
failed=0
lines=()
# result STATUS NAME [DIAGNOSTIC FILE]: one TAP case; a failure's diagnostics
# go to stderr, which `meson test --print-errorlogs` shows.
result() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		lines+=("ok $n - $2")
	else
		failed=$((failed + 1))
		lines+=("not ok $n - $2")
		echo "not ok $n - $2" >&2
		if [ $# -ge 3 ] && [ -s "$3" ]; then
			head -n 40 "$3" | sed 's/^/# /' >&2
		fi
	fi
}
skip() {
	n=$((n + 1))
	lines+=("ok $n - $1 # SKIP $2")
}
finish() {
	echo "1..$n"
	printf '%s\n' "${lines[@]}"
	[ "$failed" = 0 ]
	exit $?
}

log=$tmp/log
meson install -C "$build" --destdir "$root" --no-rebuild >"$log" 2>&1
rc=$?
result $rc "meson install --destdir succeeds" "$log"
[ $rc = 0 ] || finish

# Locate the installed files (libdir is multiarch on Debian: do not guess).
soname=$(find "$root" -name libfasvd.so.0 | head -n 1)
pcfile=$(find "$root" -name fasvd.pc -path '*/pkgconfig/*' | head -n 1)
bin=$(find "$root" -path '*/bin/fasvd' -type f | head -n 1)
incdir=$(find "$root" -type d -path '*/include/fasvd' | head -n 1)

if [ -n "$soname" ] && [ -L "$soname" ] && [ -f "$(dirname "$soname")/libfasvd.so" ]; then
	result 0 "libfasvd.so.0 installed ($(readlink "$soname")) with the libfasvd.so link"
else
	find "$root" -name 'libfasvd*' >"$log"
	result 1 "libfasvd.so.0 installed with the libfasvd.so link" "$log"
fi
libdir=$(dirname "${soname:-$root}")

if [ -n "$pcfile" ]; then result 0 "fasvd.pc installed"; else result 1 "fasvd.pc installed"; fi
if [ -n "$bin" ] && [ -x "$bin" ]; then result 0 "bin/fasvd installed"; else result 1 "bin/fasvd installed"; fi

: >"$log"
for h in "$src"/include/fasvd/*.h; do
	name=${h##*/}
	if [ -z "$incdir" ] || [ ! -f "$incdir/$name" ]; then
		echo "include/fasvd/$name is not installed (add it to include/meson.build)" >>"$log"
	elif ! cmp -s "$h" "$incdir/$name"; then
		echo "installed $name differs from include/fasvd/$name" >>"$log"
	fi
done
if [ -n "$incdir" ]; then
	for h in "$incdir"/*.h; do
		[ -f "$src/include/fasvd/${h##*/}" ] || echo "installed ${h##*/} is not a public header" >>"$log"
	done
fi
[ -s "$log" ]; result $((1 - $?)) "the installed headers are exactly include/fasvd/*.h" "$log"

# pkg-config against the scratch tree only: the sysroot prefixes every path
# of fasvd.pc (and must not leak into the system's own directories).
pc() {
	PKG_CONFIG_PATH=$(dirname "${pcfile:-/nonexistent/x}") PKG_CONFIG_SYSROOT_DIR=$root \
		pkg-config "$@" fasvd
}
flags=$(pc --cflags --libs 2>"$log")
rc=$?
[ $rc = 0 ] && case " $flags " in *" -I$root"*) ;; *) echo "no -I into the tree: $flags" >"$log"; rc=1 ;; esac
[ $rc = 0 ] && case " $flags " in *" -L$root"*) ;; *) echo "no -L into the tree: $flags" >"$log"; rc=1 ;; esac
result $rc "pkg-config --cflags --libs fasvd points into the installed tree"

examples=("$src"/examples/*.c)
if [ ! -e "${examples[0]}" ]; then
	skip "examples build against the installed tree" "no examples/*.c"
fi
for ex in "${examples[@]}"; do
	[ -e "$ex" ] || continue
	name=${ex##*/}
	# shellcheck disable=SC2086 # flags is a word list by design
	"${cc[@]}" -Wall -Wextra -Werror "$ex" $flags -o "$tmp/${name%.c}" >"$log" 2>&1
	result $? "examples/$name builds with \$(pkg-config --cflags --libs fasvd)" "$log"
done

if [ -n "$bin" ]; then
	out=$(LD_LIBRARY_PATH=$libdir "$bin" --version 2>"$log")
	rc=$?
	want="fasvd $(pc --modversion)"
	[ $rc = 0 ] && [ "$out" != "$want" ] && { echo "printed '$out', expected '$want'" >"$log"; rc=1; }
	used=$(LD_LIBRARY_PATH=$libdir ldd "$bin" | awk '$1 == "libfasvd.so.0" { print $3 }')
	if [ $rc = 0 ] && [ "$(readlink -f "$used")" != "$(readlink -f "$soname")" ]; then
		echo "bin/fasvd loads '$used', not the installed $soname" >"$log"
		rc=1
	fi
	result $rc "installed fasvd --version prints '$want' using the installed library" "$log"
fi

finish
