#!/bin/sh
# Time the engine's dominant BLAS / LAPACK calls on each BLAS this machine
# has (bench/README.md, "Choosing the BLAS"; docs/blas.md):
#
#   bench/blas_compare.sh                       # full DeepSeek-V3 sizes, 1 and 2 threads
#   N=1024 K=2048 HEADS=4 bench/blas_compare.sh # a quick smoke run
#
# bench/blas-calls (built in BUILD) links only libblas.so.3 / liblapack.so.3,
# so the library path chooses the implementation of each row:
#   openblas-auto  OpenBLAS choosing its kernels itself (OPENBLAS_CORETYPE unset);
#   openblas-env   OpenBLAS with the OPENBLAS_CORETYPE this script was started
#                  with, when that is set and differs from the best core;
#   openblas-best  OpenBLAS with the core `fasvd` re-executes itself with (the
#                  best one this CPU supports, from `fasvd --version --verbose`):
#                  the reference of the ratios;
#   blis           BLIS (Debian's libblis: LIBDIR/blis-{openmp,pthread,serial})
#                  under the reference LAPACK (LIBDIR/lapack), which then calls
#                  BLIS for its BLAS;
#   flexiblas-B    FlexiBLAS (libflexiblas.so.3 preloaded) with backend B
#                  (FLEXIBLAS=B) for each B of FLEXIBLAS_BACKENDS, when
#                  FlexiBLAS is installed (Debian 12 does not package it);
#   netlib         the reference BLAS and LAPACK, only with REFERENCE=1 (slow).
#
# Environment: N, K (the stack: dsyrk of its Gram matrix of order min(N, K),
# eigensolvers of that order; default 16384 x 7168), HEADS (per-head work of
# HEADS heads of 128 x K, default 128), THREADS (list, default "1 2"), REPS
# (best of, default 1), CALLS (default syrk,syevd,syevd2,heads,heads-qr),
# ROWS (which rows, default all of the above that exist), BUILD (meson build
# dir, default build-bench, configured release if absent), BLIS_DIR (the
# BLIS libblas.so.3 folder, default the first of LIBDIR/blis-openmp,
# blis-pthread, blis-serial), LIBDIR (default
# /usr/lib/<multiarch>), FLEXIBLAS_BACKENDS (default "OPENBLAS BLIS NETLIB").
#
# Output: each row's BLAS line ("blas: dsyrk from ..., core ...") and its
# times, then a table of seconds and ratios against openblas-best of the same
# thread count in the same run (> 1: slower). Lines "result ROW THREADS CALL
# SECONDS RATIO" are for scripts.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
N=${N:-16384}
K=${K:-7168}
HEADS=${HEADS:-128}
THREADS=${THREADS:-"1 2"}
REPS=${REPS:-1}
CALLS=${CALLS:-syrk,syevd,syevd2,heads,heads-qr}
FLEXIBLAS_BACKENDS=${FLEXIBLAS_BACKENDS:-"OPENBLAS BLIS NETLIB"}
LIBDIR=${LIBDIR:-/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)}

if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false -Dexamples=false >/dev/null
fi
ninja -C "$BUILD" bench/blas-calls tools/fasvd >/dev/null
BIN=$BUILD/bench/blas-calls

# The user's core is kept for the openblas-env row only: every row sets
# OPENBLAS_CORETYPE itself or runs without it.
ENV_CORE=${OPENBLAS_CORETYPE:-}
unset OPENBLAS_CORETYPE
report=$(FASVD_NO_REEXEC=1 "$BUILD/tools/fasvd" --version --verbose)
echo "$report"
best=$(echo "$report" | sed -n 's/.*best core for this CPU: \([A-Za-z0-9_]*\)).*/\1/p')
[ -n "$best" ] || echo "blas_compare.sh: no OpenBLAS core recommended for this CPU; openblas-best runs OpenBLAS's own choice"

blis_dir=${BLIS_DIR:-}
for d in blis-openmp blis-pthread blis-serial; do
	if [ -z "$blis_dir" ] && [ -e "$LIBDIR/$d/libblas.so.3" ]; then
		blis_dir=$LIBDIR/$d
	fi
done
flexi=
if ldconfig -p 2>/dev/null | grep -q 'libflexiblas\.so\.3 '; then
	flexi=libflexiblas.so.3
fi
OB=$LIBDIR/openblas-pthread
[ -e "$OB/libblas.so.3" ] || OB=$LIBDIR/openblas-openmp
[ -e "$OB/libblas.so.3" ] || OB=

# The rows, "NAME ENV-ASSIGNMENTS..." one a line.
rows() {
	echo "openblas-best LD_LIBRARY_PATH=$OB ${best:+OPENBLAS_CORETYPE=$best}"
	echo "openblas-auto LD_LIBRARY_PATH=$OB"
	if [ -n "$ENV_CORE" ] && [ "$ENV_CORE" != "$best" ]; then
		echo "openblas-env LD_LIBRARY_PATH=$OB OPENBLAS_CORETYPE=$ENV_CORE"
	fi
	if [ -n "$blis_dir" ]; then
		echo "blis LD_LIBRARY_PATH=$blis_dir:$LIBDIR/lapack"
	else
		echo "blas_compare.sh: BLIS not installed (apt-get install -y libblis-dev): no blis row" >&2
	fi
	if [ -n "$flexi" ]; then
		for b in $FLEXIBLAS_BACKENDS; do
			echo "flexiblas-$b LD_PRELOAD=$flexi FLEXIBLAS=$b ${best:+OPENBLAS_CORETYPE=$best}"
		done
	else
		echo "blas_compare.sh: FlexiBLAS not installed (libflexiblas.so.3): no flexiblas rows" >&2
	fi
	if [ "${REFERENCE:-0}" = 1 ]; then
		echo "netlib LD_LIBRARY_PATH=$LIBDIR/blas:$LIBDIR/lapack"
	fi
}

echo
echo "== N=$N K=$K HEADS=$HEADS THREADS=\"$THREADS\" REPS=$REPS calls $CALLS"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
rows | while read -r name assignments; do
	case " ${ROWS:-$name} " in *" $name "*) ;; *) continue ;; esac
	for t in $THREADS; do
		echo "-- $name, $t thread(s)"
		# shellcheck disable=SC2086 # the assignments are words on purpose
		out=$(env $assignments OPENBLAS_NUM_THREADS=$t BLIS_NUM_THREADS=$t \
			OMP_NUM_THREADS=$t FASVD_NO_REEXEC=1 \
			"$BIN" --n "$N" --k "$K" --heads "$HEADS" --threads "$t" --reps "$REPS" \
			--calls "$CALLS") || { echo "   failed"; continue; }
		echo "$out"
		echo "$out" | awk -v r="$name" -v t="$t" '$1 == "time" { print r, t, $2, $3 }' >>"$results"
	done
done

echo
echo "== seconds (ratio to openblas-best with the same threads; > 1 is slower)"
awk -v calls="$CALLS" '
	{ key = $1 SUBSEP $2; sec[key, $3] = $4; if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
	END {
		nc = split(calls, c, ",")
		printf "%-18s %3s", "row", "thr"
		for (i = 1; i <= nc; i++)
			printf " %18s", c[i]
		printf "\n"
		for (j = 0; j < n; j++) {
			split(order[j], rt, SUBSEP)
			printf "%-18s %3s", rt[1], rt[2]
			for (i = 1; i <= nc; i++) {
				s = sec[order[j], c[i]]; ref = sec["openblas-best" SUBSEP rt[2], c[i]]
				if (s == "")
					printf " %18s", "-"
				else if (ref > 0)
					printf " %9.3f (%5.2fx)", s, s / ref
				else
					printf " %9.3f        ", s
			}
			printf "\n"
		}
		for (j = 0; j < n; j++) {
			split(order[j], rt, SUBSEP)
			for (i = 1; i <= nc; i++) {
				s = sec[order[j], c[i]]; ref = sec["openblas-best" SUBSEP rt[2], c[i]]
				if (s != "")
					printf "result %s %s %s %.4f %s\n", rt[1], rt[2], c[i], s,
					       (ref > 0 ? sprintf("%.3f", s / ref) : "-")
			}
		}
	}' "$results"
