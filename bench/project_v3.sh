#!/bin/sh
# Project the whole DeepSeek-V3 attention analysis (61 MLA layers, 128
# heads, FP8 weights) from measured multi-layer runs of `fasvd analyze` on
# this machine, against the notebook method per layer in the same run
# (bench/README.md, "The whole model"):
#
#   bench/project_v3.sh                      # 128 heads, 3 layers, 2 threads
#   HEADS=4 LAYERS=2 NOTEBOOK=0 bench/project_v3.sh   # a quick smoke run
#
# 1. bench/engine-bench writes a DeepSeek-V3-dimension checkpoint (hidden
#    7168, q_lora 1536, kv_lora 512, nope 128, rope 64, v_head 128, HEADS
#    heads; F8_E4M3 with 128 x 128 block scales, partial edge blocks in
#    kv_a_proj_with_mqa's 576 rows) of LAYERS layers, all with the same
#    weights.
# 2. `fasvd analyze --threads THREADS` runs twice: on layer 0 alone (T1) and
#    on all LAYERS layers (TL). Each layer after the first costs
#        per_layer = (TL - T1) / (LAYERS - 1)
#    and start-up (process, BLAS, opening the checkpoint, writing the file) is
#        startup = T1 - per_layer,
#    so the 61-layer model projects to
#        projected = startup + 61 x per_layer.
# 3. With NOTEBOOK=1 (default), the notebook method on one layer of the same
#    weights (bench/compare.py, Debian's python3-torch, about 4 minutes at 128
#    heads): its per-layer time, 61 x that for the model, and the ratio.
#
# Environment: HEADS (default 128), LAYERS (>= 2, default 3), THREADS
# (default 2), NOTEBOOK (1 or 0, default 1), BUILD (meson build dir, default
# build-bench, configured release if absent), OUT (work dir, default
# /tmp/fasvd-v3; about 190 MB a layer at 128 heads, plus 0.8 GB of f32
# weights with NOTEBOOK=1), MODEL_LAYERS (the projected model's layers,
# default 61).
#
# The BLAS report comes first (docs/blas.md); as in bench/run.sh, when
# OpenBLAS falls back to generic kernels the whole run uses the core `fasvd`
# re-executes itself with. The last lines, "v3 KEY VALUE", are for scripts
# (per_layer_s, startup_s, projected_s, ...).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
OUT=${OUT:-/tmp/fasvd-v3}
HEADS=${HEADS:-128}
LAYERS=${LAYERS:-3}
THREADS=${THREADS:-2}
NOTEBOOK=${NOTEBOOK:-1}
MODEL_LAYERS=${MODEL_LAYERS:-61}
PY=/usr/bin/python3

if [ "$LAYERS" -lt 2 ]; then
	echo "bench/project_v3.sh: LAYERS must be at least 2 (the per-layer time is measured after the first)" >&2
	exit 2
fi
if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false -Dexamples=false >/dev/null
fi
ninja -C "$BUILD" bench/engine-bench tools/fasvd >/dev/null
FASVD=$BUILD/tools/fasvd
if [ "$NOTEBOOK" = 1 ]; then
	"$PY" -c "import torch, numpy" 2>/dev/null || {
		echo "bench/project_v3.sh: NOTEBOOK=1 needs python3-torch and python3-numpy for $PY (or NOTEBOOK=0)" >&2
		exit 1
	}
fi
. "$ROOT/bench/blas_env.sh"
bench_blas_env "$FASVD" bench/project_v3.sh
echo

now() { date +%s.%N; }
# Wall seconds of a command.
timed() {
	t0=$(now)
	"$@"
	echo "$t0 $(now)" | awk '{ printf "%.3f", $2 - $1 }'
}

mkdir -p "$OUT"
echo "== DeepSeek-V3 dimensions, $HEADS heads, FP8, $LAYERS layers, $THREADS threads"
if [ "$NOTEBOOK" = 1 ]; then
	# The weights for the notebook side, the checkpoint, and libfasvd's
	# own timing of the layer (compare.py reads it).
	"$BUILD/bench/engine-bench" --heads "$HEADS" --threads "$THREADS" --dir "$OUT" \
		--dtype fp8 --layers "$LAYERS" --skip-floor
else
	"$BUILD/bench/engine-bench" --heads "$HEADS" --threads "$THREADS" --dir "$OUT" \
		--dtype fp8 --layers "$LAYERS" --checkpoint-only
fi
rm -f "$OUT/one.safetensors" "$OUT/all.safetensors"
t1=$(timed "$FASVD" analyze "$OUT/ckpt" -o "$OUT/one.safetensors" --layers 0-0 \
	--threads "$THREADS" -q)
echo "fasvd analyze, layer 0 alone:      $t1 s"
tl=$(timed "$FASVD" analyze "$OUT/ckpt" -o "$OUT/all.safetensors" --threads "$THREADS" -q)
echo "fasvd analyze, all $LAYERS layers:        $tl s"

nb=
if [ "$NOTEBOOK" = 1 ]; then
	echo
	OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS \
		"$PY" "$ROOT/bench/compare.py" --dir "$OUT" --threads "$THREADS" \
		--json "$OUT/result.json"
	nb=$("$PY" -c 'import json, sys; print("%.3f" % json.load(open(sys.argv[1]))["notebook_s"])' \
		"$OUT/result.json")
fi

echo
awk -v t1="$t1" -v tl="$tl" -v l="$LAYERS" -v m="$MODEL_LAYERS" -v nb="$nb" -v heads="$HEADS" 'BEGIN {
	per = (tl - t1) / (l - 1); start = t1 - per; proj = start + m * per
	printf "per layer (layers 2..%d):   %9.3f s\n", l, per
	printf "start-up:                   %9.3f s\n", start
	printf "projected %d layers:        %9.3f s = %.1f min  (start-up + %d x per layer)\n",
	       m, proj, proj / 60, m
	if (nb != "") {
		printf "notebook method, one layer: %9.3f s; %d layers: %.1f min; per-layer speed-up %.1fx\n",
		       nb, m, m * nb / 60, nb / per
	}
	printf "v3 heads %s\nv3 layers_measured %d\nv3 t_layer0_s %.3f\nv3 t_all_s %.3f\n",
	       heads, l, t1, tl
	printf "v3 per_layer_s %.3f\nv3 startup_s %.3f\nv3 projected_s %.3f\nv3 model_layers %d\n",
	       per, start, proj, m
	if (nb != "")
		printf "v3 notebook_layer_s %.3f\nv3 notebook_projected_s %.3f\nv3 speedup %.2f\n",
		       nb, m * nb, nb / per
}'
