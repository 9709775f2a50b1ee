#!/bin/sh
# Scaling of the MPI driver (docs/cluster.md) on this machine: the same
# multi-layer model analysed by `mpirun -np 1` and `mpirun -np 2`, one
# thread per rank, alternated REPS times in one run; prints each time, the
# best of each, the speed-up and the parallel efficiency (speed-up / ranks),
# and checks that both outputs are byte-identical to `fasvd analyze -j 1`.
#
#   bench/mpi_scaling.sh                  # 6 layers, 32 heads, 3 repetitions
#   LAYERS=8 HEADS=64 REPS=5 bench/mpi_scaling.sh
#
# Environment: BUILD (meson build dir with tools/fasvd-mpi, default
# build-bench, configured release if absent), OUT (work dir, default
# /tmp/fasvd-mpi-bench), LAYERS, HEADS, REPS. Needs Open MPI (make deps).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
OUT=${OUT:-/tmp/fasvd-mpi-bench}
LAYERS=${LAYERS:-6}
HEADS=${HEADS:-32}
REPS=${REPS:-3}

if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false -Dexamples=false >/dev/null
fi
ninja -C "$BUILD" tools/fasvd tools/fasvd-mpi >/dev/null 2>&1 || ninja -C "$BUILD" tools/fasvd tools/fasvd-mpi
FASVD=$BUILD/tools/fasvd
MPI=$BUILD/tools/fasvd-mpi
[ -x "$MPI" ] || { echo "mpi_scaling.sh: $MPI not built (no MPI found by meson?)" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

"$FASVD" --version --verbose | sed -n 2p
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$OUT"
mkdir -p "$OUT"
"$FASVD" demo --dir "$OUT/d" --layers "$LAYERS" --heads "$HEADS" >/dev/null
model=$OUT/d/model
"$FASVD" analyze "$model" -o "$OUT/one.st" -j 1 -q --force

now() { date +%s.%N; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }
best1=; best2=
for rep in $(seq "$REPS"); do
	for np in 1 2; do
		t0=$(now)
		mpirun -np "$np" --oversubscribe "$MPI" -j 1 analyze "$model" -o "$OUT/np$np.st" \
			--force >/dev/null 2>&1
		t=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
		cmp -s "$OUT/np$np.st" "$OUT/one.st" || { echo "-np $np: output differs" >&2; exit 1; }
		echo "rep $rep  -np $np  $t s"
		if [ "$np" = 1 ]; then best1=$(min "$best1" "$t"); else best2=$(min "$best2" "$t"); fi
	done
done
awk -v l="$LAYERS" -v h="$HEADS" -v a="$best1" -v b="$best2" 'BEGIN {
	printf "%d layers, %d heads: best -np 1 %.2f s, best -np 2 %.2f s, speed-up %.2fx, efficiency %.0f%%\n",
	       l, h, a, b, a / b, 50 * a / b }'
echo "outputs of -np 1 and -np 2 byte-identical to fasvd analyze -j 1"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
