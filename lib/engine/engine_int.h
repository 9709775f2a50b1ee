/* libfasvd — internals shared by the spectral engine's modules (heads.c,
 * fuse.c, stack.c, subspace.c, layer.c, attnmap.c). Never installed; every
 * symbol is hidden. */
#ifndef FASVD_ENGINE_INT_H
#define FASVD_ENGINE_INT_H

#include "tensor/tensor_int.h"

#include <fasvd/attnmap.h>
#include <fasvd/fuse.h>
#include <fasvd/heads.h>
#include <fasvd/layer.h>
#include <fasvd/rfactors.h>
#include <fasvd/spectra.h>
#include <fasvd/stack.h>
#include <fasvd/subspace.h>

/* ---- heads (heads.c) ---- */
struct fasvd_heads {
	fasvd_ctx *ctx;
	const fasvd_tensor *t;
	fasvd_axis axis;
	int64_t n, rows, cols;     /* heads; each head is rows x cols */
	int64_t offset, stride;    /* along t's rows (ROWS) or columns (COLS) */
	double *scale;             /* cols values or NULL */
	double *row_scale;         /* rows values (the same for every head) or NULL */
	/* Plane rotations of row pairs (rot_a[j], rot_b[j]) by angle rot[j]
	 * (the same for every head), applied after the scales; NULL: none. */
	int64_t *rot_a, *rot_b, n_rot;
	double *rot;
	/* The heads of a factored weight held reduced (lib/model/factored.c,
	 * docs/design.md "Factored weights"): t's rows are the heads' rows and
	 * it has dcols columns; head i = (its block of t) · basisᵀ, basis
	 * (cols x dcols, orthonormal columns, borrowed) with any column scale
	 * folded in. Without a basis dcols = cols. */
	const fasvd_tensor *basis;
	int64_t dcols;
};

/* Initialise a heads struct on the stack (no allocation, no scale copy):
 * used for single matrices (layer subspaces) treated as one head. The scale
 * pointer is borrowed. Errors as fasvd_heads_new. */
int fasvd__heads_init(struct fasvd_heads *h, fasvd_ctx *ctx, const fasvd_tensor *t,
                      fasvd_axis axis, int64_t n_heads, int64_t head_size, int64_t offset,
                      int64_t stride, const double *borrowed_scale);

/* Multiply every head's row r by scale[r] when decoding (a norm that acts
 * on each head's output, such as q_norm / k_norm, folded in); n must be the
 * head size. The scale is copied; NULL with n = 0 removes it. Errors as
 * fasvd_heads_set_col_scale. */
int fasvd__heads_set_row_scale(fasvd_heads *h, const double *scale, int64_t n);

/* A new handle on h's heads with copies of its scales and rotations
 * (fasvd_heads_free frees it). Errors: FASVD_EINVAL, FASVD_ENOMEM. */
int fasvd__heads_clone(fasvd_heads **out, const fasvd_heads *h);

/* Rotate every head's row pair (a[j], b[j]) by angle[j] when decoding:
 * row a ← cos·a − sin·b, row b ← sin·a + cos·b (a rotary position
 * embedding R(Δ) acting on the head's output, after any row scale). The
 * pairs must be disjoint rows of the head. The values are copied; n = 0
 * removes the rotations. Errors: FASVD_EINVAL (a row outside the head or
 * used twice, an angle not finite), FASVD_ENOMEM. */
int fasvd__heads_set_row_rotation(fasvd_heads *h, const int64_t *a, const int64_t *b,
                                  const double *angle, int64_t n);

/* The layout in which decoding head matrices reads the source sequentially
 * (ROW_MAJOR when the head's columns are the source's contiguous axis). */
fasvd_layout fasvd__heads_natural(const fasvd_heads *h);

/* Decode head i as float (dbl = false) or double into dst (ld, layout),
 * dequantised, NaN/Inf refused, column and row scales applied. */
int fasvd__heads_decode(const fasvd_heads *h, int64_t i, bool dbl, void *dst, int64_t ld,
                        fasvd_layout layout);

/* Decode head i reduced: rows x h->dcols values whose row Gram (and that of
 * every stack or product of heads of h taken along rows) is the head's;
 * the head itself when h has no basis. Arguments as fasvd__heads_decode. */
int fasvd__heads_decode_red(const fasvd_heads *h, int64_t i, bool dbl, void *dst, int64_t ld,
                            fasvd_layout layout);

/* Rebind h to the reduced stand-in t of a factored weight: t's rows are
 * the heads' rows (h's offset and stride now run along them, axis ROWS),
 * basis is cols x p with orthonormal columns, t has p columns, and h's
 * column scale (already folded into t) is dropped. Both are borrowed.
 * Errors: FASVD_EINVAL, FASVD_ESHAPE. */
int fasvd__heads_set_basis(fasvd_heads *h, const fasvd_tensor *t, const fasvd_tensor *basis);

/* Resolve a fasvd_compute option: 0 -> context default; EINVAL otherwise. */
int fasvd__compute_resolve(fasvd_ctx *ctx, int compute, bool *dbl, const char *fn);

/* Public entry points run BLAS with the context's thread count (parallel
 * regions drop it to 1 inside workers) and restore the caller's setting. */
static inline int fasvd__blas_enter(fasvd_ctx *ctx)
{
	int saved = fasvd__blas_get_threads();
	fasvd__blas_set_threads(fasvd__threads(fasvd__ctx(ctx)));
	return saved;
}

static inline void fasvd__blas_leave(int saved)
{
	fasvd__blas_set_threads(saved);
}

/* ---- R factors (fuse.c) ---- */
struct fasvd_rfactors {
	fasvd_ctx *ctx;
	const fasvd_heads *h;
	bool dbl;
	int64_t n;      /* heads */
	int64_t k;      /* head rows (the shared inner dimension) */
	int64_t m;      /* head cols */
	int64_t dm;     /* cols of the decoded heads: m, or h->dcols when the
	                   heads are held reduced and no Q is kept */
	int64_t r;      /* min(dm, k): rows of each R */
	void *R;        /* n blocks of r x k, column-major, ld r, in the compute precision
	                   (upper trapezoidal for QR factors), scaled: see rexp */
	void *Q;        /* keep_q: n blocks, see q_trans; else NULL */
	bool q_trans;   /* false: Q_i stored m x r col-major (ld m);
	                   true: Q_iᵀ stored r x m col-major (ld r) */
	/* R_i is stored scaled by 2^-rexp[i] (the head scaled so that its largest
	 * entry is in [0.5, 1) before the QR): products of two R factors and
	 * their singular values stay inside the float range for heads of any
	 * magnitude. True R_i = 2^rexp[i] · stored R_i. */
	int *rexp;
	/* True-scale factors in double (n blocks of r x k, column-major, ld r):
	 * what the per-head and fused spectra are computed from. */
	double *Rd;
	double *sv;     /* n x r singular values of the heads, descending */
	bool gram;      /* factors from the heads' Gram matrices (see fuse.c) */
};

/* Pointer to head i's R block. */
static inline void *fasvd__rfac_r(const fasvd_rfactors *f, int64_t i)
{
	size_t es = f->dbl ? sizeof(double) : sizeof(float);
	return (char *)f->R + (size_t)i * (size_t)(f->r * f->k) * es;
}

/* Map fused head i to (a index, b index); n = fasvd_fuse_count(a, b). */
static inline void fasvd__fuse_map(int64_t i, int64_t na, int64_t nb, int64_t *ia, int64_t *ib)
{
	int64_t n = na > nb ? na : nb;
	*ia = na == n ? i : i / (n / na);
	*ib = nb == n ? i : i / (n / nb);
}

/* Check a and b can be fused; returns 0 or an error naming fn. */
int fasvd__fuse_check(const fasvd_rfactors *a, const fasvd_rfactors *b, const char *fn);

/* ---- stack engine (stack.c) ---- */

/* Fill block i (rows_b x cols) of the stack into dst (float or double as the
 * source's dbl) with leading dimension ld in `layout`. `work` is
 * work_elems elements of scratch private to the worker. */
typedef int (*fasvd__fill_fn)(void *arg, int64_t i, void *dst, int64_t ld, fasvd_layout layout,
                              void *work);

typedef struct fasvd__stack_src {
	int64_t n;             /* blocks */
	int64_t rows_b;        /* rows per block */
	int64_t cols;
	bool dbl;              /* element type of the blocks */
	fasvd_layout layout;   /* preferred layout of the assembled stack */
	fasvd__fill_fn fill;
	void *arg;
	size_t work_elems;     /* scratch per worker (elements of the block type) */
	int64_t def_rows;      /* rows of the stacked matrix as defined (for the report
	                          and the number of structurally possible values) */
	int64_t def_cols;      /* its columns as defined, when the blocks are reduced
	                          to fewer (cols) with the same values; 0: cols */
	int out_exp;           /* the blocks are the true stack times 2^-out_exp */
} fasvd__stack_src;

/* Working-set sizes of the Gram path (bytes): rows of a columns-side batch
 * and width of a rows-side chunk are chosen to fit. Tunable by white-box
 * tests (to exercise several batches on small inputs) and benchmarks. */
extern size_t fasvd__stack_batch_bytes;
extern size_t fasvd__stack_chunk_bytes;
/* Smallest Gram order solved with dsyevd_2stage by single-threaded workers
 * (see gram_eigvals in stack.c). */
extern int64_t fasvd__stack_2stage_min;

/* Singular values of the stack described by src: s gets n_s values (zeros
 * past min(def_rows, cols) and past the solved problem's size). */
int fasvd__stack_solve(fasvd_ctx *ctx, const fasvd__stack_src *src, fasvd_stack_method method,
                       double *s, int64_t n_s, fasvd_stack_report *rep);

/* ---- spectra (layer.c) ---- */
/* Append taking ownership of data (allocated through s's context). On
 * failure data is freed. */
int fasvd__spectra_add_owned(fasvd_spectra *s, const char *name, int64_t n_rows, int64_t n_cols,
                             int64_t mat_rows, int64_t mat_cols, double *data);

#endif /* FASVD_ENGINE_INT_H */
