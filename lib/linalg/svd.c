/* libfasvd — SVD of one tensor: option handling, decoding, backend choice
 * (see include/fasvd/svd.h for the policy and the guarantees).
 *
 * Orientation. LAPACK's SVD drivers are markedly faster on a tall matrix
 * (m >= n: a QR step first) than on the same data presented wide (measured
 * with OpenBLAS 0.3.21, 2 threads: 3000 x 300 values 0.024 s vs 0.039 s,
 * vectors 0.041 s vs 0.085 s; 2000 x 500 vectors 0.087 s vs 0.118 s). So the
 * working matrix M is always tall: M = A decoded column-major when m >= n,
 * M = Aᵀ (A decoded row-major, which reads a C-order tensor sequentially)
 * when m < n. In the second case LAPACK's factors of Aᵀ land in the C-order
 * output tensors without a copy when the whole decomposition is wanted.
 */
#include "linalg/linalg.h"

#include <fasvd/svd.h>

#include <cblas.h>
#include <math.h>
#include <string.h>

#define FASVD__DEFAULT_SEED 0x6661737664535644ULL /* "fasvdSVD" */
#define FASVD__GRAM_AUTO_MIN 128                  /* AUTO: GRAM from p = 128 */
#define FASVD__GESVDX_AUTO_DIV 5                  /* AUTO: GESVDX for rank <= p / 5 */
#define FASVD__MAX_POWER_ITERS 100

size_t fasvd__gram_panel_bytes = (size_t)16 << 20;

/* --------------------------------------------------------------- options */

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_svd_opts, seed);
static const fasvd__struct_ver report_ver = FASVD__STRUCT_VER(fasvd_svd_report, error_estimate);

int fasvd_svd_opts_init(fasvd_svd_opts *opts, size_t size)
{
	static const fasvd_svd_opts defaults = {
		.backend = FASVD_BACKEND_AUTO,
		.oversample = 10,
		.power_iters = 2,
		.seed = FASVD__DEFAULT_SEED,
	};
	return fasvd__init_versioned(opts, size, &defaults, &opts_ver);
}

int fasvd_svd_report_init(fasvd_svd_report *r, size_t size)
{
	static const fasvd_svd_report defaults = {
		.backend = FASVD_BACKEND_AUTO,
	};
	return fasvd__init_versioned(r, size, &defaults, &report_ver);
}

const char *fasvd_backend_name(fasvd_backend b)
{
	switch (b) {
	case FASVD_BACKEND_AUTO: return "auto";
	case FASVD_BACKEND_GESDD: return "gesdd";
	case FASVD_BACKEND_GESVD: return "gesvd";
	case FASVD_BACKEND_GESVDX: return "gesvdx";
	case FASVD_BACKEND_GRAM: return "gram";
	case FASVD_BACKEND_RANDOMIZED: return "randomized";
	default: return "?";
	}
}

static int load_opts(fasvd_svd_opts *o, const fasvd_svd_opts *in, const fasvd_ctx *ctx,
                     const char *fn)
{
	fasvd_svd_opts_init(o, sizeof *o);
	if (in) {
		int rc = fasvd__load_versioned(o, in, &opts_ver, fn, "opts");
		if (rc)
			return rc;
	}
	if ((int)o->compute == 0)
		o->compute = (fasvd_compute)ctx->compute;
	if (o->compute != FASVD_COMPUTE_F32 && o->compute != FASVD_COMPUTE_F64)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: opts->compute = %d is not FASVD_COMPUTE_F32 or _F64 (or 0)",
		                    fn, (int)o->compute);
	if ((int)o->backend < FASVD_BACKEND_AUTO || (int)o->backend > FASVD_BACKEND_RANDOMIZED)
		return fasvd__error(FASVD_EINVAL, "%s: opts->backend = %d is not a fasvd_backend", fn,
		                    (int)o->backend);
	if (o->rank < 0)
		return fasvd__error(FASVD_EINVAL, "%s: opts->rank = %lld is negative", fn,
		                    (long long)o->rank);
	if (o->oversample < 0)
		return fasvd__error(FASVD_EINVAL, "%s: opts->oversample = %lld is negative", fn,
		                    (long long)o->oversample);
	if (o->power_iters < 0 || o->power_iters > FASVD__MAX_POWER_ITERS)
		return fasvd__error(FASVD_EINVAL, "%s: opts->power_iters = %lld is outside [0, %d]",
		                    fn, (long long)o->power_iters, FASVD__MAX_POWER_ITERS);
	if (o->backend == FASVD_BACKEND_RANDOMIZED && o->rank == 0)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: the randomized backend needs opts->rank >= 1 (the number of "
		                    "leading singular values wanted)",
		                    fn);
	return 0;
}

/* ------------------------------------------------------------ the problem */

struct call {
	fasvd_ctx *ctx;
	const fasvd_tensor *a;
	fasvd_svd_opts o;
	bool dbl, vectors;
	int64_t m, n;  /* A is m x n */
	int64_t mm, p; /* M is mm x p, mm >= p: A (m >= n) or Aᵀ (m < n) */
	int64_t k;     /* values wanted */
	bool trans;    /* M = Aᵀ */
	fasvd_backend backend;
	int fallback;
	double err;
	char label[300];
};

static size_t esz(const struct call *c)
{
	return c->dbl ? sizeof(double) : sizeof(float);
}

static int setup(struct call *c, fasvd_ctx *ctx, const fasvd_tensor *a,
                 const fasvd_svd_opts *opts, const double *s, int64_t n_s, bool vectors,
                 const char *fn)
{
	memset(c, 0, sizeof *c);
	if (!a)
		return fasvd__error(FASVD_EINVAL, "%s: tensor a is NULL", fn);
	c->ctx = fasvd__ctx(ctx ? ctx : a->ctx);
	c->a = a;
	c->vectors = vectors;
	fasvd__tensor_label(a, c->label, sizeof c->label);
	c->m = fasvd_tensor_rows(a);
	c->n = fasvd_tensor_cols(a);
	/* Before anything is allocated or decoded. */
	if (c->m > FASVD__LAPACK_INT_MAX || c->n > FASVD__LAPACK_INT_MAX)
		return fasvd__error(FASVD_ERANGE,
		                    "%s: %s has %lld %s, beyond LAPACK's 32-bit index limit (%lld)", fn,
		                    c->label,
		                    (long long)(c->m > FASVD__LAPACK_INT_MAX ? c->m : c->n),
		                    c->m > FASVD__LAPACK_INT_MAX ? "rows" : "columns",
		                    (long long)FASVD__LAPACK_INT_MAX);
	if (c->m < 1 || c->n < 1)
		return fasvd__error(FASVD_EINVAL, "%s: %s has shape [%lld, %lld]", fn, c->label,
		                    (long long)c->m, (long long)c->n);
	int rc = load_opts(&c->o, opts, c->ctx, fn);
	if (rc)
		return rc;
	c->dbl = c->o.compute == FASVD_COMPUTE_F64;
	c->trans = c->m < c->n;
	c->mm = c->trans ? c->n : c->m;
	c->p = c->trans ? c->m : c->n;
	c->k = c->o.rank > 0 && c->o.rank < c->p ? c->o.rank : c->p;
	if (!s)
		return fasvd__error(FASVD_EINVAL, "%s: s is NULL", fn);
	if (n_s < c->k)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: s holds n_s = %lld values, %lld are needed for %s [%lld, %lld]",
		                    fn, (long long)n_s, (long long)c->k, c->label, (long long)c->m,
		                    (long long)c->n);

	c->backend = c->o.backend;
	if (c->backend == FASVD_BACKEND_AUTO) {
		if (!vectors)
			c->backend = !c->dbl && c->p >= FASVD__GRAM_AUTO_MIN ? FASVD_BACKEND_GRAM
			                                                     : FASVD_BACKEND_GESDD;
		else
			c->backend = c->o.rank > 0 && c->o.rank <= c->p / FASVD__GESVDX_AUTO_DIV
			                     ? FASVD_BACKEND_GESVDX
			                     : FASVD_BACKEND_GESDD;
	}
	if (vectors && c->backend == FASVD_BACKEND_GRAM)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: the gram backend computes singular values only; use "
		                    "fasvd_svdvals() or another backend",
		                    fn);
	/* Whole-matrix backends need mm x p elements addressable. */
	size_t nel, bytes;
	if (c->backend != FASVD_BACKEND_GRAM &&
	    (!fasvd__mul_size((size_t)c->mm, (size_t)c->p, &nel) ||
	     !fasvd__mul_size(nel, esz(c), &bytes)))
		return fasvd__error(FASVD_ERANGE, "%s: %s [%lld, %lld] is too large to decode", fn,
		                    c->label, (long long)c->m, (long long)c->n);
	return 0;
}

/* Decode A into M (mm x p column-major, ld mm). Also the gesdd fallback's
 * refill callback. */
static int decode_m(void *arg, void *buf, int64_t ld)
{
	const struct call *c = arg;
	fasvd_layout layout = c->trans ? FASVD_LAYOUT_ROW_MAJOR : FASVD_LAYOUT_COL_MAJOR;
	return c->dbl ? fasvd_tensor_to_f64(buf, ld, layout, c->a, 0)
	              : fasvd_tensor_to_f32(buf, ld, layout, c->a, 0);
}

static void *alloc_m(const struct call *c)
{
	return fasvd__calloc(c->ctx, (size_t)(c->mm * c->p), esz(c), "the decoded matrix");
}

/* LAPACK-style factors of M: um (mm x kk, ld mm), vtm (kk' x p, ld ldvt),
 * first k used. Write A's U (m x k) and Vᵀ (k x n) into the C-order
 * outputs. */
static void place_factors(const struct call *c, const void *um, const void *vtm, int64_t ldvt,
                          void *u, void *vt)
{
	if (!c->trans) {
		/* M = A: U_A(i, j) = um[j * mm + i]; Vt_A(i, j) = vtm[j * ldvt + i]. */
		fasvd__copy_strided(c->dbl, c->m, c->k, um, 1, c->mm, u, c->k);
		fasvd__copy_strided(c->dbl, c->k, c->n, vtm, 1, ldvt, vt, c->n);
	} else {
		/* M = Aᵀ = um S vtm: U_A = vtmᵀ, Vt_A = umᵀ. */
		if (vtm != u)
			fasvd__copy_strided(c->dbl, c->m, c->k, vtm, ldvt, 1, u, c->k);
		if (um != vt)
			fasvd__copy_strided(c->dbl, c->k, c->n, um, c->mm, 1, vt, c->n);
	}
}

/* ------------------------------------------------------------- backends */

/* Binary exponent e such that the largest |entry| / 2^e is in [0.5, 1),
 * or 0 when no entry is beyond 2^±FASVD__SAFE_EXP (then no scaling is
 * needed). Monotone in the largest entry. */
#define FASVD__SAFE_EXP 100

static int safe_exponent(double amax)
{
	if (!(amax > 0.0))
		return 0;
	int e;
	frexp(amax, &e);
	return e >= -FASVD__SAFE_EXP && e <= FASVD__SAFE_EXP ? 0 : e;
}

/* Largest |entry| of the rows x cols column-major block x (ld >= rows)
 * into *amax; false when an entry is NaN or ±Inf. On the bit patterns: with
 * the sign cleared, IEEE values of either width order as unsigned integers,
 * and NaN and Inf are exactly those at or above the exponent-all-ones
 * pattern. Four independent maxima so that the loop is not one long
 * dependency chain. MAX_ABS_BITS: those maxima for values stored as the
 * unsigned integers U (sign cleared by ABS), combined into m[0]. */
#define MAX_ABS_BITS(U, ABS)                                              \
	do {                                                              \
		for (int64_t j = 0; j < cols; j++) {                      \
			const U *col = (const U *)x + (size_t)(j * ld);   \
			int64_t i = 0;                                    \
			for (; i + 4 <= rows; i += 4)                     \
				for (int t = 0; t < 4; t++) {             \
					U v = col[i + t] & (ABS);         \
					m[t] = v > m[t] ? v : m[t];       \
				}                                         \
			for (; i < rows; i++) {                           \
				U v = col[i] & (ABS);                     \
				m[0] = v > m[0] ? v : m[0];               \
			}                                                 \
		}                                                         \
		for (int t = 1; t < 4; t++)                               \
			m[0] = m[t] > m[0] ? m[t] : m[0];                 \
	} while (0)

static bool scan_block(bool dbl, const void *x, int64_t rows, int64_t cols, int64_t ld,
                       double *amax)
{
	if (dbl) {
		uint64_t m[4] = {0, 0, 0, 0};
		MAX_ABS_BITS(uint64_t, UINT64_C(0x7FFFFFFFFFFFFFFF));
		double d;
		memcpy(&d, &m[0], sizeof d);
		*amax = d;
		return m[0] < UINT64_C(0x7FF0000000000000);
	}
	uint32_t m[4] = {0, 0, 0, 0};
	MAX_ABS_BITS(uint32_t, UINT32_C(0x7FFFFFFF));
	float f;
	memcpy(&f, &m[0], sizeof f);
	*amax = (double)f;
	return m[0] < UINT32_C(0x7F800000);
}
#undef MAX_ABS_BITS

/* Scale the nel decoded elements x by 2^-e (exact unless an entry
 * underflows, which is then negligible next to the largest) so that BLAS
 * products in the randomised backend cannot overflow or underflow;
 * returns e. */
static int scale_m(bool dbl, void *x, size_t nel)
{
	double amax = 0.0;
	scan_block(dbl, x, (int64_t)nel, 1, (int64_t)nel, &amax); /* decoded: finite */
	int e = safe_exponent(amax);
	if (e)
		for (size_t i = 0; i < nel; i++) {
			if (dbl)
				((double *)x)[i] = ldexp(((double *)x)[i], -e);
			else
				((float *)x)[i] = ldexpf(((float *)x)[i], -e);
		}
	return e;
}

/* run_dense_with's request to redo the work with GESDD. */
#define FASVD__RETRY_GESDD 1

/* xGESVDX computes vectors by inverse iteration on a tridiagonal problem;
 * for large clusters of equal values (e.g. the exact zeros of a low-rank
 * matrix) they can come out far from orthogonal (measured: 0.24 for
 * sgesvdx on a rank-3 150 x 130 matrix). Such results are rejected. */
static int check_orthonormal(const struct call *c, int64_t rows, int64_t k, const void *q,
                             int64_t ldq, bool row_block)
{
	double defect = 0.0;
	int rc = fasvd__orth_defect(c->ctx, c->dbl, rows, k, q, ldq, row_block, &defect);
	if (rc)
		return rc;
	double eps = c->dbl ? 0x1p-52 : 0x1p-23;
	return defect <= 32.0 * sqrt((double)rows) * eps ? 0 : FASVD__RETRY_GESDD;
}

/* GESDD / GESVD / GESVDX (backend b) on the decoded M. */
static int run_dense_with(struct call *c, fasvd_backend b, double *s, void *u, void *vt)
{
	int rc;
	size_t es = esz(c);
	double *sv = NULL;
	void *m = alloc_m(c), *scratch = NULL;
	if (!m)
		return FASVD_ENOMEM;
	if ((rc = decode_m(c, m, c->mm)))
		goto out;

	/* Where the factors of M go: straight into the outputs when M = Aᵀ and
	 * the shapes agree, else scratch. */
	int64_t kk = b == FASVD_BACKEND_GESDD || b == FASVD_BACKEND_GESVD ? c->p : c->k;
	int64_t ldvt = kk;
	void *um = NULL, *vtm = NULL;
	if (c->vectors) {
		if (c->trans && kk == c->k) {
			um = vt;
			vtm = u;
		} else {
			scratch = fasvd__calloc(c->ctx, (size_t)(c->mm * kk + kk * c->p), es,
			                        "singular vectors of the working matrix");
			if (!scratch) {
				rc = FASVD_ENOMEM;
				goto out;
			}
			um = scratch;
			vtm = (char *)scratch + (size_t)(c->mm * kk) * es;
		}
	}
	sv = fasvd__calloc(c->ctx, (size_t)c->p, sizeof(double), "singular values");
	if (!sv) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	int fell_back = 0;
	switch (b) {
	case FASVD_BACKEND_GESDD:
	case FASVD_BACKEND_GESVD: {
		fasvd__svd_job j = {.dbl = c->dbl, .vectors = c->vectors,
		                    .method = b == FASVD_BACKEND_GESDD ? FASVD__SVD_GESDD
		                                                       : FASVD__SVD_GESVD,
		                    .m = c->mm, .n = c->p, .a = m, .lda = c->mm, .s = sv, .u = um,
		                    .ldu = c->mm, .vt = vtm, .ldvt = ldvt, .refill = decode_m,
		                    .refill_arg = c, .fallback = &fell_back};
		rc = fasvd__svd_run(c->ctx, &j);
		c->fallback |= fell_back;
		break;
	}
	case FASVD_BACKEND_GESVDX:
		rc = fasvd__gesvdx(c->ctx, c->dbl, c->vectors, c->mm, c->p, m, c->mm, 1, c->k, sv, um,
		                   c->mm, vtm, ldvt);
		if (rc == 0 && c->vectors)
			rc = check_orthonormal(c, c->mm, c->k, um, c->mm, false);
		if (rc == 0 && c->vectors)
			rc = check_orthonormal(c, c->p, c->k, vtm, ldvt, true);
		break;
	default:
		rc = fasvd__error(FASVD_EINTERNAL, "svd: unexpected backend %d", (int)b);
	}
	if (rc)
		goto out;
	memcpy(s, sv, (size_t)c->k * sizeof(double));
	if (c->vectors)
		place_factors(c, um, vtm, ldvt, u, vt);
out:
	fasvd__free(c->ctx, sv);
	fasvd__free(c->ctx, scratch);
	fasvd__free(c->ctx, m);
	return rc;
}

static int panel_nonfinite(const struct call *c, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                           int rc);

/* RANDOMIZED. The working matrix X is A in the tensor's own memory order,
 * read and written sequentially: a tensor whose rows are contiguous (C
 * order) gives the column-major X = Aᵀ (n x m: A decoded row-major, 4x
 * faster than a transposing column-major decode), one whose columns are
 * contiguous (a transposed view, Fortran order) X = A. An F32 tensor with
 * F32 compute (F64 with F64) and no block scales is used in place, without
 * a copy, after one scan for non-finite values and for the scaling below.
 * The kernel works on either orientation (it applies X or Xᵀ through the
 * BLAS transpose flags); the factors of X = Aᵀ are those of A swapped: X's
 * left vectors, column-major n x k, are the C-order k x n Vᵀ of A, and X's
 * Vᵀ, column-major k x m, is the C-order m x k U of A, so both are written
 * straight into the output tensors. */
static int run_randomized(struct call *c, double *s, void *u, void *vt)
{
	int64_t rs = fasvd_tensor_row_stride(c->a), cs = fasvd_tensor_col_stride(c->a);
	int64_t ars = rs < 0 ? -rs : rs, acs = cs < 0 ? -cs : cs;
	/* the decoder's own reading order (tensor.c make_plan) */
	bool col_order = c->m > 1 && (c->n == 1 || acs > ars);
	bool xt = !col_order;
	int64_t xr = xt ? c->n : c->m, xc = xt ? c->m : c->n;
	size_t es = esz(c), nel = (size_t)(xr * xc);
	void *um = NULL, *vtm = NULL, *scratch = NULL, *x = NULL;
	const void *xa = NULL;
	int64_t ld = xr;
	int rc = 0, e = 0;

	/* In place: unit stride along X's columns, leading dimension >= xr
	 * (any when X has one column), aligned elements. */
	const void *data = fasvd_tensor_data(c->a);
	int64_t in_ld = xc == 1 ? xr : (xt ? rs : cs);
	if (fasvd_tensor_dtype(c->a) == (c->dbl ? FASVD_DTYPE_F64 : FASVD_DTYPE_F32) &&
	    !fasvd_tensor_has_block_scales(c->a) && (xr == 1 || (xt ? cs : rs) == 1) &&
	    in_ld >= xr && in_ld <= FASVD__LAPACK_INT_MAX && (uintptr_t)data % es == 0) {
		double amax;
		if (!scan_block(c->dbl, data, xr, xc, in_ld, &amax))
			return panel_nonfinite(c, 0, c->m, 0, c->n, FASVD_ENONFINITE);
		/* entries beyond 2^±100 need the scaled copy below */
		if (safe_exponent(amax) == 0) {
			xa = data;
			ld = in_ld;
		}
	}
	if (!xa) {
		x = fasvd__alloc(c->ctx, nel * es, "the decoded matrix");
		if (!x)
			return FASVD_ENOMEM;
		fasvd_layout layout = xt ? FASVD_LAYOUT_ROW_MAJOR : FASVD_LAYOUT_COL_MAJOR;
		rc = c->dbl ? fasvd_tensor_to_f64(x, xr, layout, c->a, 0)
		            : fasvd_tensor_to_f32(x, xr, layout, c->a, 0);
		if (rc)
			goto out;
		/* LAPACK scales internally; plain BLAS products do not. */
		e = scale_m(c->dbl, x, nel);
		xa = x;
	}
	if (c->vectors) {
		if (xt) {
			um = vt;
			vtm = u;
		} else {
			scratch = fasvd__alloc(c->ctx, (size_t)(c->m * c->k + c->k * c->n) * es,
			                       "singular vectors of the working matrix");
			if (!scratch) {
				rc = FASVD_ENOMEM;
				goto out;
			}
			um = scratch;
			vtm = (char *)scratch + (size_t)(c->m * c->k) * es;
		}
	}
	rc = fasvd__randomized_svd(c->ctx, c->dbl, xr, xc, xa, ld, c->k, c->o.oversample,
	                           c->o.power_iters, c->o.seed, s, um, xr, vtm, c->k, &c->err);
	if (rc)
		goto out;
	for (int64_t i = 0; i < c->k; i++)
		s[i] = ldexp(s[i], e);
	if (c->vectors && !xt) {
		/* X = A: U (m x k) and Vᵀ (k x n) column-major into C order. */
		fasvd__copy_strided(c->dbl, c->m, c->k, um, 1, c->m, u, c->k);
		fasvd__copy_strided(c->dbl, c->k, c->n, vtm, 1, c->k, vt, c->n);
	}
out:
	fasvd__free(c->ctx, scratch);
	fasvd__free(c->ctx, x);
	return rc;
}

static int run_dense(struct call *c, double *s, void *u, void *vt)
{
	int rc = run_dense_with(c, c->backend, s, u, vt);
	if (rc == FASVD__RETRY_GESDD) {
		c->fallback = 1;
		rc = run_dense_with(c, FASVD_BACKEND_GESDD, s, u, vt);
	}
	return rc;
}

/* Locate the first non-finite element of rows [r0, r1) x cols [c0, c1) of
 * a and report it in a's own coordinates (a panel view's message would
 * count from the panel). */
static int panel_nonfinite(const struct call *c, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                           int rc)
{
	for (int64_t r = r0; r < r1; r++)
		for (int64_t cc = c0; cc < c1; cc++) {
			double v;
			if (fasvd_tensor_get(&v, c->a, r, cc) == 0 && !isfinite(v))
				return fasvd__error(FASVD_ENONFINITE, "%s: element (%lld, %lld) is %s",
				                    c->label, (long long)r, (long long)cc,
				                    isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"));
		}
	return rc;
}

/* Values only: Gram matrix of the smaller side accumulated in double from
 * panels of the exactly decoded input, then the symmetric eigensolver.
 * Entries beyond 2^±100 (float64 tensors only) would overflow or underflow
 * when squared: the Gram matrix then holds Σ (a / 2^e)² with e tracking the
 * largest entry seen (safe_exponent, monotone), rescaled when e grows. */
static int run_gram(struct call *c, double *s)
{
	int64_t p = c->p, L = c->mm;
	size_t gbytes;
	if (!fasvd__mul_size((size_t)p, (size_t)p, &gbytes) ||
	    !fasvd__mul_size(gbytes, sizeof(double), &gbytes))
		return fasvd__error(FASVD_ERANGE, "svdvals: Gram matrix of order %lld is too large",
		                    (long long)p);
	int64_t nb = (int64_t)(fasvd__gram_panel_bytes / ((size_t)p * sizeof(double)));
	if (nb < 64)
		nb = 64;
	if (nb > L)
		nb = L;
	int rc = 0, e = 0;
	double amax_all = 0.0;
	fasvd_tensor *view = NULL;
	double *g = fasvd__calloc(c->ctx, (size_t)p * (size_t)p, sizeof(double), "Gram matrix");
	double *panel = fasvd__calloc(c->ctx, (size_t)p * (size_t)nb, sizeof(double),
	                              "Gram panel");
	double *sv = fasvd__calloc(c->ctx, (size_t)p, sizeof(double), "singular values");
	if (!g || !panel || !sv) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	for (int64_t l0 = 0; l0 < L; l0 += nb) {
		int64_t w = L - l0 < nb ? L - l0 : nb;
		/* The panel P (p x w, ld p) holds w rows of A (m >= n, decoded
		 * row-major, so P = A_panelᵀ) or w columns of A (m < n, decoded
		 * column-major); either way G += P Pᵀ. */
		int64_t r0 = c->trans ? 0 : l0, c0 = c->trans ? l0 : 0;
		int64_t nr = c->trans ? c->m : w, nc = c->trans ? w : c->n;
		const fasvd_tensor *src = c->a;
		if (w < L) {
			if ((rc = fasvd_tensor_view(&view, c->a, r0, c0, nr, nc)))
				goto out;
			src = view;
		}
		rc = fasvd_tensor_to_f64(panel, p,
		                         c->trans ? FASVD_LAYOUT_COL_MAJOR : FASVD_LAYOUT_ROW_MAJOR,
		                         src, 0);
		fasvd_tensor_free(view);
		view = NULL;
		if (rc == FASVD_ENONFINITE && w < L)
			rc = panel_nonfinite(c, r0, r0 + nr, c0, c0 + nc, rc);
		if (rc)
			goto out;
		size_t nel = (size_t)p * (size_t)w;
		double amax = 0.0;
		for (size_t i = 0; i < nel; i++)
			amax = fmax(amax, fabs(panel[i]));
		amax_all = fmax(amax_all, amax);
		int ep = safe_exponent(amax_all);
		if (ep != e) {
			/* ep > e unless G is still zero (first non-zero panel). */
			for (int64_t j = 0; j < p; j++)
				for (int64_t i = j; i < p; i++)
					g[j * p + i] = ldexp(g[j * p + i], 2 * (e - ep));
			e = ep;
		}
		if (e)
			for (size_t i = 0; i < nel; i++)
				panel[i] = ldexp(panel[i], -e);
		cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (blasint)p, (blasint)w, 1.0, panel,
		            (blasint)p, 1.0, g, (blasint)p);
	}
	if ((rc = fasvd__gram_svdvals(c->ctx, p, g, p, sv)))
		goto out;
	for (int64_t i = 0; i < c->k; i++)
		sv[i] = ldexp(sv[i], e);
	memcpy(s, sv, (size_t)c->k * sizeof(double));
out:
	fasvd_tensor_free(view);
	fasvd__free(c->ctx, sv);
	fasvd__free(c->ctx, panel);
	fasvd__free(c->ctx, g);
	return rc;
}

/* ------------------------------------------------------------ public API */

static int report_in(const fasvd_svd_report *r, const char *fn)
{
	return r ? fasvd__check_versioned(r, &report_ver, fn, "report") : 0;
}

static void report_out(fasvd_svd_report *r, const struct call *c)
{
	if (!r)
		return;
	fasvd_svd_report full;
	fasvd_svd_report_init(&full, sizeof full);
	full.backend = c->backend;
	full.fallback = c->fallback;
	full.error_estimate = c->err;
	fasvd__store_versioned(r, &full, &report_ver);
}

/* Threaded BLAS only pays for itself on big problems: below about 1e8
 * (mm·p², the order of the flop count) waking the BLAS threads costs more
 * than it saves, and idle OpenBLAS threads spin. Small problems therefore
 * run single-threaded, which is also what a caller looping over many small
 * matrices from its own threads wants. */
#define FASVD__THREADED_WORK 1e8

static int run(struct call *c, double *s, void *u, void *vt)
{
	int saved = fasvd__blas_get_threads();
	double work = (double)c->mm * (double)c->p * (double)c->p;
	if (c->backend == FASVD_BACKEND_RANDOMIZED) {
		/* mm·p per column of each pass: 2 + 2·power_iters passes of
		 * rank + oversample columns */
		double l = (double)c->k + (double)c->o.oversample;
		work = (double)c->mm * (double)c->p * fmin(l, (double)c->p) *
		       (2.0 + 2.0 * (double)c->o.power_iters);
	}
	fasvd__blas_set_threads(work >= FASVD__THREADED_WORK ? fasvd__threads(c->ctx) : 1);
	int rc = c->backend == FASVD_BACKEND_GRAM         ? run_gram(c, s)
	         : c->backend == FASVD_BACKEND_RANDOMIZED ? run_randomized(c, s, u, vt)
	                                                  : run_dense(c, s, u, vt);
	fasvd__blas_set_threads(saved);
	return rc;
}

static bool all_finite(const double *s, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(s[i]))
			return false;
	return true;
}

int fasvd_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx, const fasvd_tensor *a,
                  const fasvd_svd_opts *opts, fasvd_svd_report *report)
{
	static const char fn[] = "fasvd_svdvals";
	struct call c;
	int rc = report_in(report, fn);
	if (rc)
		return rc;
	if ((rc = setup(&c, ctx, a, opts, s, n_s, false, fn)))
		goto out;
	rc = run(&c, s, NULL, NULL);
	if (!rc && !c.dbl && !all_finite(s, c.k)) {
		/* Every weight is finite (decoding checked) but a singular value
		 * overflowed float32 (weights near FLT_MAX): redo it in double. */
		fasvd_svd_opts o2 = c.o;
		o2.compute = FASVD_COMPUTE_F64;
		if (!(rc = setup(&c, ctx, a, &o2, s, n_s, false, fn)))
			rc = run(&c, s, NULL, NULL);
	}
	if (rc && rc != FASVD_ENONFINITE)
		fasvd__error_prefix(rc, "%s (%s backend) of %s [%lld, %lld]", fn,
		                    fasvd_backend_name(c.backend), c.label, (long long)c.m,
		                    (long long)c.n);
out:
	report_out(report, &c);
	return rc;
}

int fasvd_svd(fasvd_tensor **u, double *s, int64_t n_s, fasvd_tensor **vt, fasvd_ctx *ctx,
              const fasvd_tensor *a, const fasvd_svd_opts *opts, fasvd_svd_report *report)
{
	static const char fn[] = "fasvd_svd";
	struct call c;
	fasvd_tensor *tu = NULL, *tvt = NULL;
	if (u)
		*u = NULL;
	if (vt)
		*vt = NULL;
	int rc = report_in(report, fn);
	if (rc)
		return rc;
	if (!u || !vt)
		return fasvd__error(FASVD_EINVAL, "%s: %s is NULL", fn, !u ? "u" : "vt");
	if ((rc = setup(&c, ctx, a, opts, s, n_s, true, fn)))
		goto out;
	fasvd_dtype dt = c.dbl ? FASVD_DTYPE_F64 : FASVD_DTYPE_F32;
	if ((rc = fasvd_tensor_new(&tu, c.ctx, dt, c.m, c.k)) ||
	    (rc = fasvd_tensor_new(&tvt, c.ctx, dt, c.k, c.n)))
		goto out;
	rc = run(&c, s, fasvd_tensor_data_mut(tu), fasvd_tensor_data_mut(tvt));
	if (!rc && !c.dbl && !all_finite(s, c.k))
		rc = fasvd__error(FASVD_ERANGE,
		                  "singular values of %s overflow float32 although its elements "
		                  "are finite: use FASVD_COMPUTE_F64",
		                  c.label);
	if (rc) {
		if (rc != FASVD_ENONFINITE)
			fasvd__error_prefix(rc, "%s (%s backend) of %s [%lld, %lld]", fn,
			                    fasvd_backend_name(c.backend), c.label, (long long)c.m,
			                    (long long)c.n);
		goto out;
	}
	*u = tu;
	*vt = tvt;
	tu = tvt = NULL;
out:
	fasvd_tensor_free(tu);
	fasvd_tensor_free(tvt);
	report_out(report, &c);
	return rc;
}
