#!/bin/sh
# `meson test --wrap` helper (make test-valgrind): runs a test under valgrind
# memcheck when it is a compiled program, and directly when it is a script
# (or an interpreter running one), whose own children are not ours to check.
#
# A test fails on any memcheck error or a definite/indirect leak;
# tests/valgrind.supp holds the reviewed suppressions (OpenBLAS, glibc).
here=$(cd "$(dirname "$0")" && pwd)
case "${1##*/}" in
python*|bash|sh|dash|perl*|env) exec "$@" ;;
esac
magic=$(od -An -tx1 -N4 "$1" 2>/dev/null | tr -d ' \n')
[ "$magic" = 7f454c46 ] || exec "$@"
exec valgrind --quiet --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
	--num-callers=30 \
	--suppressions="$here/../tests/valgrind.supp" "$@"
