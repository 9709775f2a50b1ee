#!/bin/sh
# Run the spectral-engine benchmarks (bench/README.md) in one command:
#
#   bench/run.sh                      # 32 and 128 heads, 2 threads
#   HEADS="32" THREADS=2 bench/run.sh
#
# Environment: HEADS (list of head counts, default "32 128"), THREADS
# (default 2), BUILD (meson build dir, default build-bench, configured
# release if absent), OUT (work dir for weights and spectra, default
# /tmp/fasvd-bench; about 0.8 GB at 128 heads), DTYPE (f32 | bf16 | fp8
# weights, default f32), REPS (engine repetitions, best kept, default 1).
# Needs Debian's python3-torch (apt-get install -y python3-torch) for the
# notebook side, run with /usr/bin/python3.
#
# Every part prints the BLAS it runs on first (docs/blas.md). When OpenBLAS
# falls back to generic kernels on this CPU (and OPENBLAS_CORETYPE is unset),
# the whole run, the notebook's PyTorch included, uses the kernels `fasvd`
# re-executes itself with, so that both sides run the CPU's best kernels.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
OUT=${OUT:-/tmp/fasvd-bench}
HEADS=${HEADS:-"32 128"}
THREADS=${THREADS:-2}
DTYPE=${DTYPE:-f32}
REPS=${REPS:-1}
PY=/usr/bin/python3

if [ ! -f "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false -Dexamples=false >/dev/null
fi
ninja -C "$BUILD" bench/engine-bench tools/fasvd >/dev/null
"$PY" -c "import torch, numpy" 2>/dev/null || {
	echo "bench/run.sh: needs python3-torch and python3-numpy for $PY" >&2
	exit 1
}
. "$ROOT/bench/blas_env.sh"
bench_blas_env "$BUILD/tools/fasvd" bench/run.sh
echo
status=0
for h in $HEADS; do
	dir="$OUT/h$h"
	mkdir -p "$dir"
	echo "== $h heads, $THREADS threads, $DTYPE weights =="
	"$BUILD/bench/engine-bench" --heads "$h" --threads "$THREADS" --dir "$dir" \
		--dtype "$DTYPE" --reps "$REPS"
	OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS \
		"$PY" "$ROOT/bench/compare.py" --dir "$dir" --threads "$THREADS" \
		--json "$dir/result.json" \
		--analyze "$BUILD/tools/fasvd analyze $dir/ckpt -o $dir/analyze.safetensors --force -j $THREADS -q" \
		--analyze-out "$dir/analyze.safetensors" \
		--engine-again "$BUILD/bench/engine-bench --heads $h --threads $THREADS --dir $dir --dtype $DTYPE --reps $REPS --no-weights --timings $dir/timings-after.json" \
		--engine-again-timings "$dir/timings-after.json" || status=1
	echo
done
exit $status
