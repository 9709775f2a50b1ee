#!/bin/sh
# Projected whole-model time of DeepSeek-V3's attention (61 layers) on a
# cluster of P nodes running `mpirun -np P fasvd-mpi analyze` (one rank a
# node, THREADS threads each), from measured figures only:
#
#   LAYER_S  seconds of one DeepSeek-V3-dimension layer (FP8, HEADS heads,
#            hidden 7168, q_lora 1536, kv_lora 512, nope 128, rope 64,
#            v_head 128) on one node with THREADS threads; measured here
#            (`fasvd analyze --shard 0/1` of a one-layer bench-model
#            checkpoint) unless given — e.g. the per-layer figure of
#            another benchmark or of a cluster node;
#   MERGE_S  seconds rank 0 spends per layer gathering and writing it:
#            `fasvd merge` of that layer's part into a spectra file (the
#            same checks and copy fasvd-mpi's rank 0 does; the merge of one
#            part also carries the merge's fixed cost, so this is an upper
#            bound per layer); measured here unless given;
#   START_S  the fixed cost of a run: `mpirun -np 2 fasvd-mpi` over a
#            one-layer one-head model (launch, preparation, one tiny item,
#            the merge) on this machine; measured unless given. A cluster's
#            launcher over many nodes takes longer: measure it there.
#
# The projection: items are dealt dynamically, largest first; DeepSeek-V3's
# 61 attention layers cost the same, so P nodes take ceil(61 / P) rounds:
#   T(P) = START_S + ceil(LAYERS / P) * LAYER_S + LAYERS * MERGE_S
# printed for NODES (1 2 4 8 16 32 61) with the speed-up over one node and
# the parallel efficiency.
#
#   bench/mpi_project.sh                          # measures all three at 128 heads
#   LAYER_S=SECONDS bench/mpi_project.sh          # a given layer time; the rest measured
#   LAYER_S=S MERGE_S=M START_S=T bench/mpi_project.sh   # arithmetic only
#
# Environment: BUILD (default build-bench, configured release if absent),
# OUT (default /tmp/fasvd-mpi-project), HEADS (128), THREADS (2), LAYERS
# (61), NODES, REPS (merge repetitions, best of; 3).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
OUT=${OUT:-/tmp/fasvd-mpi-project}
HEADS=${HEADS:-128}
THREADS=${THREADS:-2}
LAYERS=${LAYERS:-61}
NODES=${NODES:-1 2 4 8 16 32 61}
REPS=${REPS:-3}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }

need_build=
[ -n "${LAYER_S:-}" ] && [ -n "${MERGE_S:-}" ] && [ -n "${START_S:-}" ] || need_build=1
if [ -n "$need_build" ]; then
	if [ ! -f "$BUILD/build.ninja" ]; then
		meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false -Dexamples=false >/dev/null
	fi
	targets="tools/fasvd tools/fasvd-mpi bench/bench-model"
	ninja -C "$BUILD" $targets >/dev/null 2>&1 || ninja -C "$BUILD" $targets
	FASVD=$BUILD/tools/fasvd
	"$FASVD" --version --verbose | sed -n 2p
	echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
	rm -rf "$OUT"
	mkdir -p "$OUT"
fi
src_layer=given src_merge=given src_start=given

if [ -z "${LAYER_S:-}" ] || [ -z "${MERGE_S:-}" ]; then
	"$BUILD/bench/bench-model" "$OUT/layer" --layers 1 --heads "$HEADS" --hidden 7168 \
		--q-lora 1536 --kv-lora 512 --nope 128 --rope 64 --v-head 128
	t0=$(now)
	"$FASVD" analyze "$OUT/layer" -o "$OUT/part.st" --shard 0/1 -j "$THREADS" -q --force >/dev/null
	t=$(since "$t0")
	if [ -z "${LAYER_S:-}" ]; then
		LAYER_S=$t src_layer="measured: fasvd analyze, $HEADS heads, -j $THREADS"
	fi
fi
if [ -z "${MERGE_S:-}" ]; then
	for rep in $(seq "$REPS"); do
		t0=$(now)
		"$FASVD" merge "$OUT/part.st" -o "$OUT/merged.st" --force -q >/dev/null
		MERGE_S=$(min "${MERGE_S:-}" "$(since "$t0")")
	done
	src_merge="measured: fasvd merge of one $HEADS-head layer, best of $REPS"
fi
if [ -z "${START_S:-}" ]; then
	if [ "$(id -u)" = 0 ]; then
		export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
	fi
	"$BUILD/bench/bench-model" "$OUT/tiny" --layers 1 --heads 1
	for rep in $(seq "$REPS"); do
		t0=$(now)
		mpirun -np 2 --oversubscribe "$BUILD/tools/fasvd-mpi" -j 1 analyze "$OUT/tiny" \
			-o "$OUT/tiny.st" --force -q
		START_S=$(min "${START_S:-}" "$(since "$t0")")
	done
	src_start="measured: mpirun -np 2 fasvd-mpi over a 1-layer 1-head model, best of $REPS"
fi
[ -n "$need_build" ] && echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "per layer:  $LAYER_S s ($src_layer)"
echo "merge:      $MERGE_S s per layer ($src_merge)"
echo "start-up:   $START_S s ($src_start)"
echo "T(P) = start-up + ceil($LAYERS / P) x layer + $LAYERS x merge"
awk -v L="$LAYERS" -v l="$LAYER_S" -v m="$MERGE_S" -v s="$START_S" -v nodes="$NODES" 'BEGIN {
	n = split(nodes, P, " ")
	t1 = s + L * l + L * m
	printf "%6s %7s %12s %10s %9s %11s\n", "nodes", "rounds", "time (s)", "time (min)", "speed-up", "efficiency"
	for (i = 1; i <= n; i++) {
		p = P[i]; r = int((L + p - 1) / p)
		t = s + r * l + L * m
		printf "%6d %7d %12.1f %10.2f %8.2fx %10.0f%%\n", p, r, t, t / 60, t1 / t, 100 * t1 / t / p
	}
}'
