/* libfasvd — stacked spectra: plain stacks of heads and the exact block-R
 * reduction of stacked fused heads, solved by a Gram matrix accumulated in
 * double plus the symmetric eigensolver, or by a direct SVD. */
#include "engine/engine_int.h"
#include "linalg/linalg.h"

#include <cblas.h>
#include <lapacke.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

static size_t esz(bool dbl)
{
	return dbl ? sizeof(double) : sizeof(float);
}

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_stack_opts, head_norms);
static const fasvd__struct_ver report_ver = FASVD__STRUCT_VER(fasvd_stack_report, error_bound);

int fasvd_stack_opts_init(fasvd_stack_opts *opts, size_t size)
{
	static const fasvd_stack_opts defaults = {
		.norm = FASVD_STACK_NORM_SIGMA1,
		.method = FASVD_STACK_AUTO,
	};
	return fasvd__init_versioned(opts, size, &defaults, &opts_ver);
}

int fasvd_stack_report_init(fasvd_stack_report *r, size_t size)
{
	return fasvd__init_versioned(r, size, NULL, &report_ver);
}

/* ------------------------------------------------------------- engine */

size_t fasvd__stack_batch_bytes = (size_t)192 << 20;
size_t fasvd__stack_chunk_bytes = (size_t)32 << 20;

struct fill_job {
	const fasvd__stack_src *src;
	void *x;          /* destination buffer (native type) */
	int64_t first;    /* first block of this pass */
	int64_t rows;     /* rows of the buffer (col-major leading dimension) */
	char **work;      /* per-worker scratch */
};

static int fill_task(void *arg, int64_t j, int worker)
{
	struct fill_job *f = arg;
	const fasvd__stack_src *src = f->src;
	size_t es = esz(src->dbl);
	int64_t off = j * src->rows_b;
	void *dst;
	int64_t ld;
	if (src->layout == FASVD_LAYOUT_ROW_MAJOR) {
		dst = (char *)f->x + (size_t)(off * src->cols) * es;
		ld = src->cols;
	} else {
		dst = (char *)f->x + (size_t)off * es;
		ld = f->rows;
	}
	return src->fill(src->arg, f->first + j, dst, ld, src->layout, f->work[worker]);
}

/* Fill blocks [first, first + count) into x (count·rows_b x cols). */
static int fill_blocks(fasvd_ctx *ctx, const fasvd__stack_src *src, void *x, int64_t first,
                       int64_t count, char **work)
{
	struct fill_job f = {src, x, first, count * src->rows_b, work};
	return fasvd__parallel_for(ctx, count, fill_task, &f);
}

/* n · size bytes, not zeroed (for buffers every element of which is
 * written before it is read), with overflow check. */
static void *alloc_n(fasvd_ctx *ctx, size_t n, size_t size, const char *what)
{
	size_t total;
	if (!fasvd__mul_size(n, size, &total)) {
		fasvd__error(FASVD_ENOMEM, "size of %s overflows (%zu x %zu bytes)", what, n, size);
		return NULL;
	}
	return fasvd__alloc(ctx, total, what);
}

static void to_double(const float *src, double *dst, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i];
}

/* Columns side: G (C x C, lower triangle) += X_bᵀ·X_b over batches of
 * blocks of the stack (R x C, C <= R). */
static int gram_cols(fasvd_ctx *ctx, const fasvd__stack_src *src, double *g, char **work,
                     int threads)
{
	int64_t C = src->cols;
	bool rm = src->layout == FASVD_LAYOUT_ROW_MAJOR;
	size_t es = esz(src->dbl);
	int rc = 0;
	int64_t target = (int64_t)fasvd__stack_batch_bytes / (C * (int64_t)(es + 8));
	if (target < 1)
		target = 1;
	int64_t per = target / src->rows_b;
	if (per < 1)
		per = 1;
	if (per > src->n)
		per = src->n;
	int64_t brows = per * src->rows_b;
	void *xb = alloc_n(ctx, (size_t)(brows * C), es, "a stack batch");
	double *xd = src->dbl ? xb : alloc_n(ctx, (size_t)(brows * C), 8, "a stack batch");
	if (!xb || !xd) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	for (int64_t first = 0; first < src->n; first += per) {
		int64_t cnt = src->n - first < per ? src->n - first : per;
		int64_t rb = cnt * src->rows_b;
		if ((rc = fill_blocks(ctx, src, xb, first, cnt, work)))
			goto out;
		if (!src->dbl)
			to_double(xb, xd, (size_t)(rb * C));
		fasvd__blas_set_threads(threads);
		if (rm)
			cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (blasint)C, (blasint)rb,
			            1.0, xd, (blasint)C, 1.0, g, (blasint)C);
		else
			cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, (blasint)C, (blasint)rb,
			            1.0, xd, (blasint)rb, 1.0, g, (blasint)C);
	}
out:
	if (xd != xb)
		fasvd__free(ctx, xd);
	fasvd__free(ctx, xb);
	return rc;
}

/* G (R x R, lower triangle) += X·Xᵀ over column chunks of the f32 stack x
 * (R x C), each converted to double first. */
static int gram_rows_f32(fasvd_ctx *ctx, const fasvd__stack_src *src, const float *xf,
                         int64_t R, double *g)
{
	int64_t C = src->cols;
	bool rm = src->layout == FASVD_LAYOUT_ROW_MAJOR;
	int64_t w = (int64_t)fasvd__stack_chunk_bytes / (R * 8);
	if (w < 1)
		w = 1;
	if (w > C)
		w = C;
	double *d = alloc_n(ctx, (size_t)(R * w), 8, "a stack chunk");
	if (!d)
		return FASVD_ENOMEM;
	for (int64_t c0 = 0; c0 < C; c0 += w) {
		int64_t wc = C - c0 < w ? C - c0 : w;
		if (rm) {
			for (int64_t r = 0; r < R; r++)
				to_double(xf + r * C + c0, d + r * wc, (size_t)wc);
			cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, (blasint)R, (blasint)wc, 1.0, d,
			            (blasint)wc, 1.0, g, (blasint)R);
		} else {
			to_double(xf + c0 * R, d, (size_t)(R * wc));
			cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (blasint)R, (blasint)wc, 1.0,
			            d, (blasint)R, 1.0, g, (blasint)R);
		}
	}
	fasvd__free(ctx, d);
	return 0;
}

/* Rows side: G (R x R) = X·Xᵀ; X is assembled whole, then accumulated
 * (over column chunks converted to double chunk by chunk for f32). */
static int gram_rows(fasvd_ctx *ctx, const fasvd__stack_src *src, int64_t R, double *g,
                     char **work, int threads)
{
	int64_t C = src->cols;
	bool rm = src->layout == FASVD_LAYOUT_ROW_MAJOR;
	void *x = alloc_n(ctx, (size_t)(R * C), esz(src->dbl), "a stacked matrix");
	if (!x)
		return FASVD_ENOMEM;
	int rc = fill_blocks(ctx, src, x, 0, src->n, work);
	if (rc)
		goto out;
	fasvd__blas_set_threads(threads);
	if (!src->dbl)
		rc = gram_rows_f32(ctx, src, x, R, g);
	else if (rm)
		cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, (blasint)R, (blasint)C, 1.0, x,
		            (blasint)C, 0.0, g, (blasint)R);
	else
		cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (blasint)R, (blasint)C, 1.0,
		            x, (blasint)R, 0.0, g, (blasint)R);
out:
	fasvd__free(ctx, x);
	return rc;
}

/* G (m x m, lower triangle) = Gram of the smaller side of the stack;
 * *inner is the length of the products summed in each entry. */
static int gram_build(fasvd_ctx *ctx, const fasvd__stack_src *src, double *g, char **work,
                      int64_t *inner)
{
	int64_t R = src->n * src->rows_b, C = src->cols;
	int threads = fasvd__threads(fasvd__ctx(ctx));
	*inner = C <= R ? R : C;
	return C <= R ? gram_cols(ctx, src, g, work, threads)
	              : gram_rows(ctx, src, R, g, work, threads);
}

/* Eigenvalues of the m x m Gram matrix g (lower triangle) as descending
 * singular values. With threaded BLAS, fasvd__gram_svdvals's policy. In a
 * single-threaded worker (the layer runs independent stacks concurrently)
 * the one-stage reduction (dsytrd, half BLAS-2) is bound by memory bandwidth
 * once the matrix leaves the cache, while dsyevd_2stage reduces to a band
 * with BLAS-3 and chases bulges in cache: measured on the 2-core development
 * machine (lower triangle, values only), the two are even at n = 2048 and
 * 2-stage wins above (1.1x at 2304, 1.4x at 3072, 1.5x at 4096). The
 * two-stage solver is linalg's band path (FASVD__EIG_BAND: its band width
 * tuned, see fasvd__gram_band_kd). */
int64_t fasvd__stack_2stage_min = 2048;

static int gram_eigvals(fasvd_ctx *ctx, int64_t m, double *g, double *s, int threads)
{
	bool two = threads <= 1 && m >= fasvd__stack_2stage_min;
	return fasvd__gram_svdvals_with(ctx, m, g, m, s, two ? FASVD__EIG_BAND : FASVD__EIG_AUTO);
}

/* Check that the stack (R x C rows and columns) fits the method. */
static int check_solve(fasvd_stack_method method, int64_t R, int64_t C)
{
	int64_t m = R < C ? R : C;
	if (method != FASVD_STACK_GRAM && method != FASVD_STACK_DIRECT)
		return fasvd__error(FASVD_EINVAL, "stack: unknown method %d", (int)method);
	int rc;
	if ((rc = fasvd__check_lapack_dim("stacked rows", R)) ||
	    (rc = fasvd__check_lapack_dim("stacked columns", C)))
		return rc;
	if (method == FASVD_STACK_GRAM) {
		int64_t mm;
		if (!fasvd__mul_i64(m, m, &mm) || mm > FASVD__LAPACK_INT_MAX)
			return fasvd__error(FASVD_ERANGE,
			                    "stack: Gram matrix of order %lld exceeds LAPACK's 32-bit "
			                    "index limit",
			                    (long long)m);
	} else {
		int64_t rcount;
		if (!fasvd__mul_i64(R, C, &rcount))
			return fasvd__error(FASVD_ERANGE, "stack: %lld x %lld elements overflow",
			                    (long long)R, (long long)C);
	}
	return 0;
}

/* The m values by the Gram matrix (order m) and its eigenvalues; *bound
 * the rounding bound of the result. */
static int solve_gram(fasvd_ctx *ctx, const fasvd__stack_src *src, int64_t m, char **work,
                      double *vals, double *bound)
{
	int threads = fasvd__threads(fasvd__ctx(ctx));
	int64_t inner = 0;
	double *g = fasvd__calloc(ctx, (size_t)(m * m), sizeof *g, "a Gram matrix");
	if (!g)
		return FASVD_ENOMEM;
	int rc = gram_build(ctx, src, g, work, &inner);
	if (!rc) {
		fasvd__blas_set_threads(threads);
		rc = gram_eigvals(ctx, m, g, vals, threads);
	}
	/* Rounding of the double Gram products and of the eigensolver:
	 * |λ̂ − σ²| ≲ (inner + m)·ε·σ₁² (worst case in order of magnitude). */
	if (!rc)
		*bound = sqrt((double)(inner + m) * DBL_EPSILON) * vals[0];
	fasvd__free(ctx, g);
	return rc;
}

/* The values by an SVD of the whole stack (R rows) in the compute type. */
static int solve_direct(fasvd_ctx *ctx, const fasvd__stack_src *src, int64_t R, char **work,
                        double *vals)
{
	int64_t C = src->cols;
	void *x = alloc_n(ctx, (size_t)(R * C), esz(src->dbl), "a stacked matrix");
	if (!x)
		return FASVD_ENOMEM;
	int rc = fill_blocks(ctx, src, x, 0, src->n, work);
	if (!rc) {
		fasvd__blas_set_threads(fasvd__threads(fasvd__ctx(ctx)));
		bool rm = src->layout == FASVD_LAYOUT_ROW_MAJOR;
		/* Row-major R x C is column-major C x R: same singular values. */
		int64_t mm = rm ? C : R, nn = rm ? R : C;
		rc = src->dbl ? fasvd__svdvals_d(ctx, mm, nn, x, mm, vals)
		              : fasvd__svdvals_s(ctx, mm, nn, x, mm, vals);
	}
	fasvd__free(ctx, x);
	return rc;
}

int fasvd__stack_solve(fasvd_ctx *ctx, const fasvd__stack_src *src, fasvd_stack_method method,
                       double *s, int64_t n_s, fasvd_stack_report *rep)
{
	int64_t R, C = src->cols;
	if (!fasvd__mul_i64(src->n, src->rows_b, &R))
		return fasvd__error(FASVD_ERANGE, "stacked matrix: row count overflows");
	int64_t m = R < C ? R : C;
	int64_t def_min = src->def_rows < C ? src->def_rows : C;
	if (method == FASVD_STACK_AUTO) /* callers resolve it; be safe */
		method = FASVD_STACK_GRAM;
	int rc = check_solve(method, R, C);
	if (rc)
		return rc;
	int nw = fasvd__parallel_workers(ctx, src->n);
	char **work = fasvd__calloc(ctx, (size_t)nw, sizeof *work, "stack workspaces");
	double *vals = fasvd__calloc(ctx, (size_t)m, sizeof *vals, "singular values");
	if (!work || !vals) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	for (int w = 0; w < nw; w++)
		if (!(work[w] = fasvd__calloc(ctx, src->work_elems ? src->work_elems : 1,
		                              esz(src->dbl), "a stack workspace"))) {
			rc = FASVD_ENOMEM;
			goto out;
		}
	int saved = fasvd__blas_get_threads();
	double bound = 0.0;
	rc = method == FASVD_STACK_GRAM ? solve_gram(ctx, src, m, work, vals, &bound)
	                                : solve_direct(ctx, src, R, work, vals);
	if (rc)
		goto out_threads;
	for (int64_t i = 0; i < n_s; i++)
		s[i] = i < m && i < def_min ? ldexp(vals[i], src->out_exp) : 0.0;
	bound = ldexp(bound, src->out_exp);
	if (rep) {
		fasvd_stack_report full;
		fasvd_stack_report_init(&full, sizeof full);
		full.method = method;
		full.rows = src->def_rows;
		full.cols = src->def_cols ? src->def_cols : C;
		full.solved_rows = R;
		full.solved_cols = C;
		full.error_bound = bound;
		fasvd__store_versioned(rep, &full, &report_ver);
	}
out_threads:
	fasvd__blas_set_threads(saved);
out:
	if (work)
		for (int w = 0; w < nw; w++)
			fasvd__free(ctx, work[w]);
	fasvd__free(ctx, work);
	fasvd__free(ctx, vals);
	return rc;
}

/* ------------------------------------------------------ option parsing */

static int get_opts(const fasvd_stack_opts *opts, fasvd_stack_opts *o, fasvd_stack_report *rep,
                    const char *fn)
{
	fasvd_stack_opts_init(o, sizeof *o);
	int rc = opts ? fasvd__load_versioned(o, opts, &opts_ver, fn, "opts") : 0;
	if (rc)
		return rc;
	if (o->norm != FASVD_STACK_NORM_SIGMA1 && o->norm != FASVD_STACK_NORM_FROBENIUS &&
	    o->norm != FASVD_STACK_NORM_NONE)
		return fasvd__error(FASVD_EINVAL, "%s: unknown stack normalisation %d", fn,
		                    (int)o->norm);
	if (o->method != FASVD_STACK_AUTO && o->method != FASVD_STACK_GRAM &&
	    o->method != FASVD_STACK_DIRECT)
		return fasvd__error(FASVD_EINVAL, "%s: unknown stack method %d", fn, (int)o->method);
	return rep ? fasvd__check_versioned(rep, &report_ver, fn, "report") : 0;
}

/* Per-head multipliers 1/norm (1 for a zero or absent norm). */
static double *inverse_norms(fasvd_ctx *ctx, const double *norms, int64_t n)
{
	double *inv = fasvd__calloc(ctx, (size_t)n, sizeof *inv, "stack normalisers");
	if (!inv)
		return NULL;
	for (int64_t i = 0; i < n; i++)
		inv[i] = norms && norms[i] > 0.0 && isfinite(norms[i]) ? 1.0 / norms[i] : 1.0;
	return inv;
}

static void scale_block(bool dbl, void *dst, int64_t ld, fasvd_layout layout, int64_t rows,
                        int64_t cols, double f)
{
	if (f == 1.0)
		return;
	int64_t outer = layout == FASVD_LAYOUT_ROW_MAJOR ? rows : cols;
	int64_t inner = layout == FASVD_LAYOUT_ROW_MAJOR ? cols : rows;
	for (int64_t o = 0; o < outer; o++) {
		if (dbl) {
			double *p = (double *)dst + o * ld;
			for (int64_t i = 0; i < inner; i++)
				p[i] *= f;
		} else {
			float *p = (float *)dst + o * ld;
			for (int64_t i = 0; i < inner; i++)
				p[i] = (float)((double)p[i] * f);
		}
	}
}

/* --------------------------------------------------------- plain stack */

struct plain_src {
	const fasvd_heads *h;
	bool dbl;
	const double *inv;
};

static int plain_fill(void *arg, int64_t i, void *dst, int64_t ld, fasvd_layout layout,
                      void *work)
{
	(void)work;
	struct plain_src *p = arg;
	int rc = fasvd__heads_decode_red(p->h, i, p->dbl, dst, ld, layout);
	if (rc)
		return rc;
	scale_block(p->dbl, dst, ld, layout, p->h->rows, p->h->dcols, p->inv[i]);
	return 0;
}

/* Norms of h's heads (σ₁ or Frobenius) through their factors. */
static int head_norms(fasvd_ctx *ctx, const fasvd_heads *h, bool dbl, fasvd_stack_norm norm,
                      double *out)
{
	fasvd_rfactors_opts ro;
	fasvd_rfactors_opts_init(&ro, sizeof ro);
	ro.compute = dbl ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
	fasvd_rfactors *f = NULL;
	int rc = fasvd_rfactors_new(&f, ctx, h, &ro);
	if (rc)
		return rc;
	for (int64_t i = 0; i < f->n; i++) {
		const double *sv = f->sv + i * f->r;
		if (norm == FASVD_STACK_NORM_SIGMA1) {
			out[i] = sv[0];
		} else {
			double ss = 0;
			for (int64_t q = f->r - 1; q >= 0; q--)
				ss += sv[q] * sv[q];
			out[i] = sqrt(ss);
		}
	}
	fasvd_rfactors_free(f);
	return 0;
}

/* AUTO: the Gram path for f32 compute, a direct SVD for f64. The Gram path
 * always assembles in double (its products are exact there); the direct
 * path in the compute precision. */
static fasvd_stack_method resolve_method(fasvd_stack_method m, bool dbl)
{
	if (m == FASVD_STACK_AUTO)
		return dbl ? FASVD_STACK_DIRECT : FASVD_STACK_GRAM;
	return m;
}

int fasvd_stack_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx, const fasvd_heads *h,
                        const fasvd_stack_opts *opts, fasvd_stack_report *report)
{
	const char *fn = "fasvd_stack_svdvals";
	fasvd_stack_opts o;
	int rc = get_opts(opts, &o, report, fn);
	if (rc)
		return rc;
	if (!h || !s || n_s < 1)
		return fasvd__error(FASVD_EINVAL, "%s: NULL heads or empty output", fn);
	bool dbl;
	if ((rc = fasvd__compute_resolve(ctx, o.compute, &dbl, fn)))
		return rc;
	fasvd_stack_method method = resolve_method(o.method, dbl);
	double *norms = NULL, *inv = NULL;
	if (o.norm != FASVD_STACK_NORM_NONE && !o.head_norms) {
		if (!(norms = fasvd__calloc(ctx, (size_t)h->n, sizeof *norms, "head norms")))
			return FASVD_ENOMEM;
		if ((rc = head_norms(ctx, h, dbl, o.norm, norms)))
			goto out;
	}
	if (!(inv = inverse_norms(ctx, o.norm == FASVD_STACK_NORM_NONE ? NULL
	                                 : o.head_norms              ? o.head_norms
	                                                             : norms,
	                          h->n))) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	bool edbl = dbl || method == FASVD_STACK_GRAM;
	struct plain_src ps = {h, edbl, inv};
	fasvd__stack_src src = {
		.n = h->n,
		.rows_b = h->rows,
		.cols = h->dcols, /* reduced heads: the same values (design.md) */
		.def_cols = h->cols,
		.dbl = edbl,
		.layout = fasvd__heads_natural(h),
		.fill = plain_fill,
		.arg = &ps,
		.work_elems = 1,
		.def_rows = h->n * h->rows,
	};
	rc = fasvd__stack_solve(ctx, &src, method, s, n_s, report);
	if (rc) {
		char lab[300];
		fasvd__error_prefix(rc, "%s: %s", fn, fasvd__tensor_label(h->t, lab, sizeof lab));
	}
out:
	fasvd__free(ctx, norms);
	fasvd__free(ctx, inv);
	return rc;
}

/* --------------------------------------------------------- fused stack */

struct fused_src {
	const fasvd_rfactors *a, *b;
	fasvd_layout blay; /* layout B heads are decoded in */
	bool dbl;          /* element type of the blocks */
	bool use_rd;       /* multiply by a's true-scale double factors (Rd) instead of
	                      its native, 2^-rexp scaled ones */
	const double *inv;
	int out_exp;       /* blocks are computed scaled by 2^-out_exp */
};

/* Block i = F_{a(i)} (r x k) · B_{b(i)} (k x m_b) / s_i. */
static int fused_fill(void *arg, int64_t i, void *dst, int64_t ld, fasvd_layout layout,
                      void *work)
{
	struct fused_src *p = arg;
	const fasvd_rfactors *a = p->a, *b = p->b;
	int64_t ia, ib, k = a->k, mb = b->h->dcols, r = a->r;
	fasvd__fuse_map(i, a->n, b->n, &ia, &ib);
	bool brm = p->blay == FASVD_LAYOUT_ROW_MAJOR;
	int rc = fasvd__heads_decode_red(b->h, ib, p->dbl, work, brm ? mb : k, p->blay);
	if (rc)
		return rc;
	const void *R;
	double alpha;
	if (p->use_rd) {
		R = a->Rd + (size_t)(ia * r * k);
		alpha = ldexp(p->inv[i], -p->out_exp);
	} else {
		R = fasvd__rfac_r(a, ia);
		alpha = ldexp(p->inv[i], a->rexp[ia] - p->out_exp);
	}
	/* Row-major B (k x mb, ld mb) is column-major Bᵀ; column-major B has ld k. */
	blasint ldb = (blasint)(brm ? mb : k);
	if (layout == FASVD_LAYOUT_ROW_MAJOR) {
		/* dst row-major (r x mb) = column-major dstᵀ = Bᵀ·Fᵀ (mb x r). */
		enum CBLAS_TRANSPOSE bt = brm ? CblasNoTrans : CblasTrans;
		if (p->dbl)
			cblas_dgemm(CblasColMajor, bt, CblasTrans, (blasint)mb, (blasint)r, (blasint)k,
			            alpha, work, ldb, R, (blasint)r, 0.0, dst, (blasint)ld);
		else
			cblas_sgemm(CblasColMajor, bt, CblasTrans, (blasint)mb, (blasint)r, (blasint)k,
			            (float)alpha, work, ldb, R, (blasint)r, 0.0f, dst, (blasint)ld);
	} else {
		/* dst column-major (r x mb) = F·B. */
		enum CBLAS_TRANSPOSE bt = brm ? CblasTrans : CblasNoTrans;
		if (p->dbl)
			cblas_dgemm(CblasColMajor, CblasNoTrans, bt, (blasint)r, (blasint)mb, (blasint)k,
			            alpha, R, (blasint)r, work, ldb, 0.0, dst, (blasint)ld);
		else
			cblas_sgemm(CblasColMajor, CblasNoTrans, bt, (blasint)r, (blasint)mb, (blasint)k,
			            (float)alpha, R, (blasint)r, work, ldb, 0.0f, dst, (blasint)ld);
	}
	return 0;
}

/* Norms of the n fused heads a_i·b_j (σ₁ or Frobenius). */
static int fused_norms(fasvd_ctx *ctx, const fasvd_rfactors *a, const fasvd_rfactors *b,
                       fasvd_stack_norm norm, int64_t n, double *norms)
{
	if (norm == FASVD_STACK_NORM_FROBENIUS)
		return fasvd_fuse_norms(norms, ctx, a, b);
	int64_t w = a->m < b->m ? a->m : b->m;
	double *sv = fasvd__calloc(ctx, (size_t)(n * w), sizeof *sv, "fused spectra");
	int rc;
	if (!sv)
		rc = FASVD_ENOMEM;
	else if (!(rc = fasvd_fuse_svdvals(sv, w, ctx, a, b)))
		for (int64_t i = 0; i < n; i++)
			norms[i] = sv[i * w];
	fasvd__free(ctx, sv);
	return rc;
}

int fasvd_stack_fused_svdvals(double *s, int64_t n_s, fasvd_ctx *ctx, const fasvd_rfactors *a,
                              const fasvd_rfactors *b, const fasvd_stack_opts *opts,
                              fasvd_stack_report *report)
{
	const char *fn = "fasvd_stack_fused_svdvals";
	fasvd_stack_opts o;
	int rc = get_opts(opts, &o, report, fn);
	if (rc)
		return rc;
	if ((rc = fasvd__fuse_check(a, b, fn)))
		return rc;
	if (!s || n_s < 1)
		return fasvd__error(FASVD_EINVAL, "%s: NULL or empty output", fn);
	int64_t n = fasvd_fuse_count(a, b);
	fasvd_stack_method method = resolve_method(o.method, a->dbl);
	double *norms = NULL, *inv = NULL;
	if (o.norm != FASVD_STACK_NORM_NONE && !o.head_norms) {
		if (!(norms = fasvd__calloc(ctx, (size_t)n, sizeof *norms, "fused head norms")))
			return FASVD_ENOMEM;
		if ((rc = fused_norms(ctx, a, b, o.norm, n, norms)))
			goto out;
	}
	if (!(inv = inverse_norms(ctx, o.norm == FASVD_STACK_NORM_NONE ? NULL
	                                 : o.head_norms              ? o.head_norms
	                                                             : norms,
	                          n))) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	/* f32 compute with the Gram path: assemble in double from the true-scale
	 * factors (double has the range). Otherwise blocks are formed in the
	 * compute precision from the scaled native factors, with a common power
	 * of two bringing every block near unit size so that f32 products
	 * neither overflow nor underflow whatever the heads' scale: block i is
	 * about 2^(rexp_a + rexp_b) / norm_i in magnitude. */
	struct fused_src fs = {a, b, fasvd__heads_natural(b->h), a->dbl, false, inv, 0};
	if (!a->dbl && method == FASVD_STACK_GRAM) {
		fs.dbl = true;
		fs.use_rd = true;
	} else {
		int out_exp = INT_MIN;
		for (int64_t i = 0; i < n; i++) {
			int64_t ia, ib;
			fasvd__fuse_map(i, a->n, b->n, &ia, &ib);
			int e = a->rexp[ia] + b->rexp[ib] + ilogb(inv[i]);
			if (e > out_exp)
				out_exp = e;
		}
		fs.out_exp = out_exp;
	}
	fasvd__stack_src src = {
		.n = n,
		.rows_b = a->r,
		.cols = b->h->dcols,
		.def_cols = b->m,
		.dbl = fs.dbl,
		.layout = fs.blay,
		.fill = fused_fill,
		.arg = &fs,
		.work_elems = (size_t)(b->k * b->h->dcols),
		.def_rows = n * a->m,
		.out_exp = fs.out_exp,
	};
	rc = fasvd__stack_solve(ctx, &src, method, s, n_s, report);
	if (rc) {
		char la[300], lb[300];
		fasvd__error_prefix(rc, "%s: %s x %s", fn, fasvd__tensor_label(a->h->t, la, sizeof la),
		                    fasvd__tensor_label(b->h->t, lb, sizeof lb));
	}
out:
	fasvd__free(ctx, norms);
	fasvd__free(ctx, inv);
	return rc;
}
