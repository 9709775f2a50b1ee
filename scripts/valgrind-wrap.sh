#!/bin/sh
# `meson test --wrap` helper (make test-valgrind): runs a test under valgrind
# memcheck when it is a compiled program, and directly when it is a script
# (or an interpreter running one), whose own children are not ours to check.
#
# A test fails on any memcheck error or a definite/indirect leak;
# tests/valgrind.supp holds the reviewed suppressions (code that is not ours).
here=$(cd "$(dirname "$0")" && pwd)
case "${1##*/}" in
python*|bash|sh|dash|perl*|env) exec "$@" ;;
esac
magic=$(od -An -tx1 -N4 "$1" 2>/dev/null | tr -d ' \n')
[ "$magic" = 7f454c46 ] || exec "$@"
# Memcheck runs numerical code 50-200x slower: a test may use smaller
# problems, or skip what cannot be measured under valgrind (peak RSS, timing),
# when this is set. Everything else must run as in the plain build.
export FASVD_TEST_VALGRIND=1
exec valgrind --quiet --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
	--num-callers=30 \
	--suppressions="$here/../tests/valgrind.supp" "$@"
