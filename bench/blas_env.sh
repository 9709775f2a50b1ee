# Sourced by the benchmark scripts (bench/run.sh, bench/project_v3.sh):
# bench_blas_env FASVD NAME prints the BLAS report of the `fasvd` tool FASVD
# (docs/blas.md) and, when OpenBLAS falls back to generic kernels here (the
# tool re-executed itself), exports the core the tool chose as
# OPENBLAS_CORETYPE, so that every part of the run, the notebook's PyTorch
# included, runs the CPU's best kernels. NAME prefixes the message.
bench_blas_env() {
	_blas=$("$1" --version --verbose)
	echo "$_blas"
	_core=$(echo "$_blas" | sed -n 's/^OPENBLAS_CORETYPE: \([A-Za-z0-9_]*\) (set by fasvd.*/\1/p')
	if [ -n "$_core" ]; then
		echo "$2: OpenBLAS falls back to generic kernels here: OPENBLAS_CORETYPE=$_core for every run below"
		OPENBLAS_CORETYPE=$_core
		export OPENBLAS_CORETYPE
	fi
}
