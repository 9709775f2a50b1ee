/* libfasvd — the on-load runtime API: factorise weights as a runtime loads them,
 * with options validated once (a plan).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FASVD_ONLOAD_H
#define FASVD_ONLOAD_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>
#include <fasvd/factor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A plan: the factorisation options of a runtime, validated once, immutable.
 * One plan may be used by any number of threads at once, each on its own
 * tensor. */
typedef struct fasvd_onload fasvd_onload;

/* Create a plan (opts copied; NULL = defaults; opts->calibration must be
 * NULL: calibration statistics are per weight, given with each input). The plan borrows ctx (NULL =
 * default context), whose allocator receives every allocation made while
 * factorising (workspace and owned factors). For concurrent use give it a
 * context with FASVD_CTX_THREADS = 1, or calls will each use threaded BLAS.
 * Errors: FASVD_EINVAL (an option out of range, opts->calibration set),
 * FASVD_ENOMEM. */
FASVD_API int fasvd_onload_new(fasvd_onload **out, fasvd_ctx *ctx,
                               const fasvd_factor_opts *opts);
/* Accepts NULL. */
FASVD_API void fasvd_onload_free(fasvd_onload *plan);

/* One weight as the runtime has it while loading: the checkpoint's bytes,
 * borrowed (typically a pointer into the mmapped safetensors file; never
 * copied as a whole and never written). */
typedef struct fasvd_onload_input {
	size_t size;            /* set by fasvd_onload_input_init */
	const char *name;       /* for error messages (may be NULL) */
	fasvd_dtype dtype;      /* dtype of data (the checkpoint's) */
	const void *data;       /* element (r, c) at data + (r·row_stride + c)·elsize */
	int64_t rows, cols;     /* as stored (Linear: out x in) */
	int64_t row_stride;     /* elements; 0: cols (dense C order) */
	/* FP8 block scales `<name>_scale_inv` (F32, C order,
	 * [ceil(rows / block_rows), ceil(cols / block_cols)]); NULL for none. */
	const float *scale_inv;
	int64_t block_rows, block_cols; /* 0: 128 */
	int64_t heads;          /* 0: the plan's opts.heads */
	fasvd_cancel_fn cancel; /* per call, polled with the plan's (either cancels) */
	void *cancel_arg;
	/* Activation-aware truncation of this weight (factor.h): the Gram XᵀX
	 * [cols, cols] of its inputs, or with calibration_cholesky = 1 its lower
	 * Cholesky factor; borrowed for the call; NULL (default): plain SVD. The
	 * plan's calibration_eps and whiten apply. */
	const fasvd_tensor *calibration;
	int calibration_cholesky;
} fasvd_onload_input;

/* Zeroes the input.
 * Call as fasvd_onload_input_init(&in, sizeof in) (versioned struct, see core.h). */
FASVD_API int fasvd_onload_input_init(fasvd_onload_input *in, size_t size);

/* Factorise one weight: *a, *b as fasvd_factor() (owned by the caller,
 * allocated through the plan's context; free with fasvd_tensor_free()).
 * Memory: the input is read in place; the extra memory is bounded by
 * fasvd_onload_workspace() plus the factors — never a copy of the model,
 * and, per call, at most one decoded copy of the matrix (one head per
 * worker in per-head mode) in the compute precision plus the SVD's
 * workspace. Thread-safe with other calls on the same plan.
 * Errors: FASVD_EINVAL (NULL, bad input fields), FASVD_EDTYPE,
 * FASVD_ESHAPE (scale grid of the wrong shape, rows not a multiple of
 * heads), FASVD_ENONFINITE, FASVD_ERANGE, FASVD_ELAPACK, FASVD_ECANCELED,
 * FASVD_ENOMEM. */
FASVD_API int fasvd_onload_factor(fasvd_tensor **a, fasvd_tensor **b, const fasvd_onload *plan,
                                  const fasvd_onload_input *in, fasvd_factor_report *report);

/* As fasvd_onload_factor(), into caller buffers (fasvd_factor_into()
 * semantics: packed [heads, rows/heads, inner] and [heads, inner, cols] of
 * the plan's dtype, FASVD_ERANGE when the chosen inner dimension exceeds
 * capacity). */
FASVD_API int fasvd_onload_factor_into(void *a, void *b, int64_t capacity,
                                       const fasvd_onload *plan, const fasvd_onload_input *in,
                                       fasvd_factor_report *report);

/* Largest inner dimension the plan can produce for a rows x cols weight
 * with `heads` heads (0: the plan's): the clamped rank for a fixed rank,
 * else min(rows/heads, cols) capped by max_rank. A runtime sizes its buffers
 * with it. Errors: FASVD_EINVAL, FASVD_ESHAPE. */
FASVD_API int fasvd_onload_max_inner(int64_t *out, const fasvd_onload *plan, int64_t rows,
                                     int64_t cols, int64_t heads);

/* Upper bound of the bytes one fasvd_onload_factor() call allocates for a
 * rows x cols weight besides the factors (fasvd_factor_workspace() with the
 * plan's options and its context's worker count). An input with
 * calibration needs besides about 8·(4·rows·cols + 2·cols² + 2·(rows +
 * cols)·inner) bytes (decoded W, W·S, residual, its product with G, G and
 * S, float64 factors): what fasvd_factor_workspace() adds for options with
 * a calibration. */
FASVD_API int fasvd_onload_workspace(uint64_t *bytes, const fasvd_onload *plan, int64_t rows,
                                     int64_t cols, int64_t heads);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_ONLOAD_H */
