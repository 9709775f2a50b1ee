/* tensor_svd — thin SVD of a matrix that lives in the caller's memory.
 *
 *   usage: tensor_svd
 *
 * Build it against an installed libfasvd with
 *
 *   cc tensor_svd.c $(pkg-config --cflags --libs fasvd) -o tensor_svd
 *
 * The concept: libfasvd borrows the caller's buffer without copying it
 * (fasvd_tensor_new_borrowed), with separate row and column strides, so a
 * sub-block of a larger array, a transposed (column-major) layout or one
 * head's slice of a weight matrix is a tensor as it stands. Here the tensor
 * is the transpose of the top-left 3 x 4 block of a 4 x 6 row-major array;
 * its thin SVD A = U·diag(s)·Vᵀ is computed in float64 and checked by
 * rebuilding A.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include <fasvd/fasvd.h>

static int report(const char *what, int rc)
{
	fprintf(stderr, "tensor_svd: %s failed: %s: %s\n", what, fasvd_strerror(rc),
	        fasvd_last_error());
	return 1;
}

int main(void)
{
	/* The caller's data: 4 x 6, row-major. */
	static const float buf[4][6] = {
		{ 4.0f, 1.0f, 0.5f, 2.0f, 9.0f, 9.0f },
		{ 1.0f, 3.0f, 0.0f, 1.0f, 9.0f, 9.0f },
		{ 0.5f, 0.0f, 2.0f, 0.0f, 9.0f, 9.0f },
		{ 9.0f, 9.0f, 9.0f, 9.0f, 9.0f, 9.0f },
	};
	/* A = (rows 0..2, columns 0..3 of buf)ᵀ: 4 x 3. Element (r, c) of A is
	 * buf[c][r], i.e. at offset r·1 + c·6 elements: row stride 1, column
	 * stride 6. Nothing is copied; buf must outlive the tensor. */
	const int64_t m = 4, n = 3;
	fasvd_tensor *a = NULL, *u = NULL, *vt = NULL;
	double s[3];
	int status = 1;
	int rc;

	if ((rc = fasvd_tensor_new_borrowed(&a, NULL, FASVD_DTYPE_F32, buf, m, n, 1, 6)) < 0) {
		report("fasvd_tensor_new_borrowed", rc);
		goto out;
	}

	fasvd_svd_opts opts;
	fasvd_svd_opts_init(&opts, sizeof opts);
	opts.compute = FASVD_COMPUTE_F64;
	/* u (m x 3) and vt (3 x n) are new owned F64 tensors, C order. */
	if ((rc = fasvd_svd(&u, s, 3, &vt, NULL, a, &opts, NULL)) < 0) {
		report("fasvd_svd", rc);
		goto out;
	}

	printf("singular values: %.6f %.6f %.6f\n", s[0], s[1], s[2]);

	/* Rebuild A from the factors and compare with the borrowed data. */
	const double *pu = fasvd_tensor_data(u), *pvt = fasvd_tensor_data(vt);
	double err = 0.0;
	for (int64_t r = 0; r < m; r++) {
		for (int64_t c = 0; c < n; c++) {
			double x = 0.0;
			for (int64_t i = 0; i < 3; i++)
				x += pu[r * 3 + i] * s[i] * pvt[i * n + c];
			double want;
			if ((rc = fasvd_tensor_get(&want, a, r, c)) < 0) {
				report("fasvd_tensor_get", rc);
				goto out;
			}
			double d = x > want ? x - want : want - x;
			if (d > err)
				err = d;
		}
	}
	printf("max |A - U diag(s) Vt| = %.3g\n", err);
	status = err <= 1e-12 * s[0] ? 0 : 1;

out:
	fasvd_tensor_free(u);
	fasvd_tensor_free(vt);
	fasvd_tensor_free(a);
	return status;
}
