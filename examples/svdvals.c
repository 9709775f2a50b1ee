/* svdvals — print the singular values of one 2-D tensor of a safetensors
 * checkpoint, largest first, one per line.
 *
 *   usage: svdvals CHECKPOINT TENSOR
 *
 * CHECKPOINT is a .safetensors file, a sharded *.safetensors.index.json or a
 * model folder. Build it against an installed libfasvd with
 *
 *   cc svdvals.c $(pkg-config --cflags --libs fasvd) -o svdvals
 *
 * The concept: open a checkpoint (memory-mapped, nothing is read until
 * needed), take a zero-copy view of one tensor (any dtype libfasvd reads; an
 * FP8 weight with a `<name>_scale_inv` sibling is dequantised with it), and
 * compute its singular values in float64.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>

#include <fasvd/fasvd.h>

/* Every libfasvd error comes with a code and a detail message that names the
 * file, tensor or argument at fault. */
static int report(const char *what, int rc)
{
	fprintf(stderr, "svdvals: %s failed: %s: %s\n", what, fasvd_strerror(rc),
	        fasvd_last_error());
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s CHECKPOINT TENSOR\n", argv[0]);
		return 2;
	}

	fasvd_st *st = NULL;
	fasvd_tensor *t = NULL;
	double *s = NULL;
	int status = 1;
	int rc;

	/* NULL context: malloc and every CPU. */
	if ((rc = fasvd_st_open(&st, NULL, argv[1])) < 0) {
		report("fasvd_st_open", rc);
		goto out;
	}
	/* The view borrows the mapped file: st must outlive t. */
	if ((rc = fasvd_st_tensor(&t, st, argv[2], 0)) < 0) {
		report("fasvd_st_tensor", rc);
		goto out;
	}

	int64_t rows = fasvd_tensor_rows(t), cols = fasvd_tensor_cols(t);
	int64_t k = rows < cols ? rows : cols;
	s = malloc((size_t)k * sizeof *s);
	if (s == NULL) {
		fprintf(stderr, "svdvals: out of memory\n");
		goto out;
	}

	fasvd_svd_opts opts;
	fasvd_svd_opts_init(&opts, sizeof opts);
	opts.compute = FASVD_COMPUTE_F64;
	if ((rc = fasvd_svdvals(s, k, NULL, t, &opts, NULL)) < 0) {
		report("fasvd_svdvals", rc);
		goto out;
	}

	for (int64_t i = 0; i < k; i++)
		printf("%.17g\n", s[i]);
	status = 0;

out:
	free(s);
	fasvd_tensor_free(t); /* views first, then the checkpoint */
	fasvd_st_free(st);
	return status;
}
