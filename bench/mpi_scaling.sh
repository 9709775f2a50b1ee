#!/bin/sh
# Scaling of the MPI driver (docs/cluster.md) on this machine: the same
# 6-layer DeepSeek-V3-dimension model (bench-model: FP8, hidden 7168, q_lora
# 1536, kv_lora 512, nope 128, rope 64, v_head 128, HEADS heads; a layer
# takes a few seconds on one thread at 16 heads) analysed by
# `mpirun -np 1` and `mpirun -np 2`, one thread per rank, alternated REPS
# times; prints each time, the best of each, the speed-up and the parallel
# efficiency (speed-up / ranks), the driver's own timing of the last run of
# each (fasvd-mpi -v: preparation, items, merge, and per rank its items,
# compute and idle seconds), and checks that every output is byte-identical
# to `fasvd analyze -j 1`. As a control, each repetition also times one
# plain `fasvd analyze -j 1` and NP plain `fasvd analyze --shard I/NP -j 1`
# processes at once (no MPI, no merge): the ratio of their best times is the
# speed-up the machine itself allows (on a shared machine, less than NP).
#
#   bench/mpi_scaling.sh                  # 6 layers, 16 heads, 3 repetitions
#   HEADS=4 REPS=1 bench/mpi_scaling.sh   # a smoke run (a fraction of a second a layer)
#
# Environment: BUILD (meson build dir, default build-bench, configured
# release if absent), OUT (work dir, default /tmp/fasvd-mpi-bench), LAYERS,
# HEADS, HIDDEN (default 7168), REPS, NP (the larger rank count, default
# 2). Needs Open MPI (make deps).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
OUT=${OUT:-/tmp/fasvd-mpi-bench}
LAYERS=${LAYERS:-6}
HEADS=${HEADS:-16}
HIDDEN=${HIDDEN:-7168}
REPS=${REPS:-3}
NP=${NP:-2}

if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false -Dexamples=false >/dev/null
fi
targets="tools/fasvd tools/fasvd-mpi bench/bench-model"
ninja -C "$BUILD" $targets >/dev/null 2>&1 || ninja -C "$BUILD" $targets
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
model=$OUT/model
"$BUILD/bench/bench-model" "$model" --layers "$LAYERS" --heads "$HEADS" --hidden "$HIDDEN" \
	--q-lora 1536 --kv-lora 512 --nope 128 --rope 64 --v-head 128
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
t0=$(now)
"$FASVD" analyze "$model" -o "$OUT/one.st" -j 1 -q --force
echo "fasvd analyze -j 1: $(since "$t0") s (the reference output)"

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }
plain() {
	if [ "$1" = 1 ]; then
		"$FASVD" analyze "$model" -o "$OUT/plain.st" -j 1 -q --force >/dev/null
		return
	fi
	i=0
	while [ "$i" -lt "$1" ]; do
		"$FASVD" analyze "$model" -o "$OUT/shard$i.st" --shard "$i/$1" -j 1 -q --force \
			>/dev/null &
		i=$((i + 1))
	done
	wait
}
best1=; bestn=; bestp1=; bestpn=
for rep in $(seq "$REPS"); do
	for np in 1 "$NP"; do
		t0=$(now)
		plain "$np"
		t=$(since "$t0")
		echo "rep $rep  $np plain process(es) (control)  $t s"
		if [ "$np" = 1 ]; then bestp1=$(min "$bestp1" "$t"); else bestpn=$(min "$bestpn" "$t"); fi
	done
	for np in 1 "$NP"; do
		t0=$(now)
		mpirun -np "$np" --oversubscribe "$MPI" -j 1 analyze "$model" -o "$OUT/np$np.st" \
			--force -v >"$OUT/np$np.log" 2>&1 || { cat "$OUT/np$np.log" >&2; exit 1; }
		t=$(since "$t0")
		cmp -s "$OUT/np$np.st" "$OUT/one.st" || { echo "-np $np: output differs" >&2; exit 1; }
		echo "rep $rep  -np $np  $t s"
		if [ "$np" = 1 ]; then best1=$(min "$best1" "$t"); else bestn=$(min "$bestn" "$t"); fi
	done
done
for np in 1 "$NP"; do
	echo "fasvd-mpi -v, last -np $np run:"
	sed -n 's/^timing: /  /p' "$OUT/np$np.log"
done
awk -v l="$LAYERS" -v h="$HEADS" -v a="$best1" -v b="$bestn" -v p="$NP" -v c1="$bestp1" -v cn="$bestpn" 'BEGIN {
	printf "%d layers, %d heads: best -np 1 %.2f s, best -np %d %.2f s, speed-up %.2fx, efficiency %.0f%%\n",
	       l, h, a, p, b, a / b, 100 * a / b / p
	printf "control without MPI: 1 process %.2f s, %d processes %.2f s: the machine allows %.2fx\n",
	       c1, p, cn, c1 / cn }'
echo "outputs of -np 1 and -np $NP byte-identical to fasvd analyze -j 1"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
