/* libfasvd — tensor layer: the tensor handle's representation, shared by
 * the modules that build or read tensors. Never installed; hidden. */
#ifndef FASVD_TENSOR_INT_H
#define FASVD_TENSOR_INT_H

#include "core/internal.h"

struct fasvd_tensor {
	fasvd_ctx *ctx;
	fasvd_dtype dtype;
	int64_t rows, cols;
	int64_t rs, cs;              /* strides in elements */
	const unsigned char *data;   /* element (0, 0) */
	void *owned;                 /* owned buffer (fasvd_tensor_new) or NULL */
	bool is_view;
	/* Block scales in the coordinates of the root tensor. A view element
	 * (i, j) is root element (root_r, root_c) with
	 * root_r = row0 + (transposed ? j : i), root_c = col0 + (transposed ? i : j). */
	const double *scales;        /* [grid_rows x grid_cols] row-major, or NULL */
	double *scales_owned;
	int64_t grid_rows, grid_cols, block_rows, block_cols;
	int64_t row0, col0;
	bool transposed;
	char *name;
};

/* Name for messages: "tensor 'name'" or "tensor" when unnamed. */
const char *fasvd__tensor_label(const fasvd_tensor *t, char *buf, size_t n);

/* A destination of rows x cols values in `layout` with leading dimension
 * ld: FASVD_EINVAL naming fn for an unknown layout or a leading dimension
 * below the row (row-major) or column (column-major) length. */
int fasvd__check_dst_layout(fasvd_layout layout, int64_t ld, int64_t rows, int64_t cols,
                            const char *fn);

#endif /* FASVD_TENSOR_INT_H */
