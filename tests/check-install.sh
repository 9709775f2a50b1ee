#!/bin/bash
# Install into a scratch tree and use it the way a user would (TAP output).
#
# usage: check-install.sh SOURCE_ROOT BUILD_ROOT [CC...]
#
#   meson install --destdir TMP, then check that TMP holds libfasvd.so.0 (and
#   the libfasvd.so link), fasvd.pc, bin/fasvd, every include/fasvd/*.h and
#   the headers generated from include/fasvd/*.h.in; build every examples/*.c
#   with `CC prog.c $(pkg-config --cflags --libs fasvd) -lm` against that
#   tree only (PKG_CONFIG_SYSROOT_DIR; -lm: an example using <math.h> links
#   it itself); run the installed `fasvd --version` against the installed
#   library.
#
#   With FASVD_CHECK_PYTHON set (the interpreter meson installs the Python
#   package for): the installed package holds every bindings/python/fasvd/*.py
#   and records the configured libdir; `import fasvd` from the installed tree
#   alone (no FASVD_LIBRARY, no LD_LIBRARY_PATH, outside the checkout) loads
#   the installed library; and a package built by `pip install
#   bindings/python` has the project version and finds the library through
#   the loader's search path.
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
for t in "$src"/include/fasvd/*.h.in; do
	[ -e "$t" ] || continue
	name=${t##*/}
	name=${name%.in}
	if [ -z "$incdir" ] || ! cmp -s "$build/include/fasvd/$name" "$incdir/$name"; then
		echo "generated include/fasvd/$name is not installed as built" >>"$log"
	fi
done
if [ -n "$incdir" ]; then
	for h in "$incdir"/*.h; do
		[ -f "$src/include/fasvd/${h##*/}" ] || [ -f "$src/include/fasvd/${h##*/}.in" ] ||
			echo "installed ${h##*/} is not a public header" >>"$log"
	done
fi
[ -s "$log" ]; result $((1 - $?)) "the installed headers are exactly include/fasvd/*.h and *.h.in" "$log"

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
	"${cc[@]}" -Wall -Wextra -Werror "$ex" $flags -lm -o "$tmp/${name%.c}" >"$log" 2>&1
	result $? "examples/$name builds with \$(pkg-config --cflags --libs fasvd) -lm" "$log"
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

# import_check NAME SITE [ENV...]: import fasvd from SITE alone, outside the
# checkout, and check that it loads the installed library (the file mapped,
# when the binding names a bare soname) and reports the project version.
loaded='import fasvd, os
p = fasvd.library_path
if os.sep not in p:
    p = [l.split()[-1] for l in open("/proc/self/maps") if "/libfasvd.so" in l][0]
print(fasvd.__file__)
print(p)
print(fasvd.__version__)'
import_check() {
	local name=$1 site=$2
	shift 2
	local out rc
	out=$(cd "$tmp" && env -u FASVD_LIBRARY -u LD_LIBRARY_PATH -u PYTHONHOME "$@" \
		PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "$py" -c \
		"$loaded" \
		2>"$log")
	rc=$?
	if [ $rc = 0 ]; then
		{
			mapfile -t got <<<"$out"
			case ${got[0]} in "$site"/*) ;; *) echo "imported ${got[0]}, not from $site" ;; esac
			[ "$(readlink -f "${got[1]}")" = "$(readlink -f "$soname")" ] ||
				echo "loaded '${got[1]}', not the installed $soname"
			[ "${got[2]}" = "$(pc --modversion)" ] ||
				echo "fasvd.__version__ is '${got[2]}', not '$(pc --modversion)'"
		} >"$log"
		[ -s "$log" ] && rc=1
	fi
	result $rc "$name" "$log"
}

py=${FASVD_CHECK_PYTHON:-}
init=$(find "$root" -path '*/fasvd/__init__.py' | head -n 1)
if [ -z "$py" ]; then
	skip "the installed Python package imports the installed library" "no -Dpython interpreter"
elif ! "$py" -c 'import numpy' 2>/dev/null; then
	skip "the installed Python package imports the installed library" "$py has no numpy"
elif [ -z "$init" ] || [ -z "$soname" ]; then
	result 1 "the Python package and the library are installed"
else
	pkg=$(dirname "$init")
	site=$(dirname "$pkg")
	: >"$log"
	for f in "$src"/bindings/python/fasvd/*.py; do
		[ -f "$pkg/${f##*/}" ] || echo "bindings/python/fasvd/${f##*/} is not installed (add it to bindings/python/meson.build)" >>"$log"
	done
	[ -s "$log" ]; result $((1 - $?)) "meson installs every bindings/python/fasvd/*.py" "$log"

	# The recorded libdir, under the staging root, is where the library went.
	cfg_libdir=$(cd "$tmp" && "$py" -c 'import runpy, sys; print(runpy.run_path(sys.argv[1])["LIBDIR"])' \
		"$pkg/_config.py" 2>"$log")
	rc=$?
	if [ $rc = 0 ] && [ "$(readlink -f "$root$cfg_libdir/libfasvd.so.0")" != "$(readlink -f "$soname")" ]; then
		echo "fasvd/_config.py names libdir '$cfg_libdir'; the library is at ${soname#"$root"}" >"$log"
		rc=1
	fi
	result $rc "the installed fasvd/_config.py records the library's install directory" "$log"

	import_check "import fasvd from the installed tree loads the installed library" "$site"

	# pip install bindings/python, from a copy (pip builds in the source
	# folder) with the meson.build that gives the version; the library is
	# then found through the loader's path, here LD_LIBRARY_PATH.
	# An offline build (--no-build-isolation) needs setuptools, and wheel for
	# the bdist_wheel command of setuptools older than 70.1.
	wheel_ok='import setuptools
try:
    import wheel
except ImportError:
    v = tuple(int(x) for x in setuptools.__version__.split(".")[:2])
    assert v >= (70, 1)'
	if ! "$py" -m pip --version >/dev/null 2>&1 || ! "$py" -c "$wheel_ok" 2>/dev/null; then
		skip "pip install bindings/python finds the installed library" \
			"no pip, setuptools or wheel for $py to build offline"
	else
		mkdir -p "$tmp/pysrc/bindings" &&
			cp "$src/meson.build" "$tmp/pysrc/" &&
			cp -r "$src/bindings/python" "$tmp/pysrc/bindings/" &&
			rm -rf "$tmp/pysrc/bindings/python/build" &&
			(cd "$tmp" && PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip install -q \
				--no-build-isolation --no-deps --no-index --target "$tmp/pip" \
				"$tmp/pysrc/bindings/python") >"$log" 2>&1
		rc=$?
		if [ $rc = 0 ]; then
			import_check "pip install bindings/python finds the installed library" "$tmp/pip" \
				LD_LIBRARY_PATH="$libdir"
		else
			result $rc "pip install bindings/python succeeds" "$log"
		fi
	fi
fi

finish
