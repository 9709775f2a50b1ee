/* libfasvd — low-rank factorisation W ≈ A·B (include/fasvd/factor.h):
 * whole matrices and per-head row blocks, at a rank or at an energy loss τ,
 * into owned tensors or caller buffers; fused and shared truncation.
 *
 * One factorisation runs in two phases over "units" (the whole matrix, or
 * one head):
 *   1. τ mode only: the full spectrum of every unit, values only
 *      (fasvd_svdvals, AUTO: the Gram path for f32), then the common rank r
 *      from the tail sums of all units;
 *   2. per unit: the singular vectors at rank r (fasvd_svd), the σ split,
 *      rounding to the factor dtype straight into the output, then one pass
 *      over W in row blocks for ‖W‖² (and, with verify, ‖W − A·B‖²).
 * Units run in parallel on the context's workers (single-threaded BLAS
 * inside, through a copy of the context with one thread); a single unit
 * uses the caller's context and threaded BLAS.
 */
#include "factor/factor_int.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FACTOR_VERIFY_BLOCK_BYTES ((size_t)1 << 20) /* W rows decoded per residual step */

/* ------------------------------------------------------------ options */

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_factor_opts, whiten);
static const fasvd__struct_ver report_ver = FASVD__STRUCT_VER(fasvd_factor_report, calibration_shift);
static const fasvd__struct_ver shared_opts_ver = FASVD__STRUCT_VER(fasvd_factor_shared_opts,
                                                                   weight);

int fasvd_factor_opts_init(fasvd_factor_opts *opts, size_t size)
{
	static const fasvd_factor_opts defaults = {
		.rank = FASVD_FACTOR_RANK_TAU,
		.tau = 0.01,
		.split = FASVD_FACTOR_SPLIT_BALANCED,
		.dtype = FASVD_DTYPE_F32,
		.backend = FASVD_BACKEND_AUTO,
		.calibration_eps = 1e-6,
		.whiten = 1,
	};
	return fasvd__init_versioned(opts, size, &defaults, &opts_ver);
}

int fasvd_factor_report_init(fasvd_factor_report *r, size_t size)
{
	static const fasvd_factor_report defaults = {
		.rel_error_sq = -1,
		.optimal_energy_lost = -1,
		.backend = FASVD_BACKEND_AUTO,
		.act_energy = -1,
		.act_energy_lost = -1,
		.act_optimal_energy_lost = -1,
	};
	return fasvd__init_versioned(r, size, &defaults, &report_ver);
}

const char *fasvd_factor_split_name(fasvd_factor_split split)
{
	switch (split) {
	case FASVD_FACTOR_SPLIT_BALANCED: return "balanced";
	case FASVD_FACTOR_SPLIT_LEFT: return "left";
	case FASVD_FACTOR_SPLIT_RIGHT: return "right";
	default: return "?";
	}
}

/* Copy a full report into the caller's (possibly older, shorter) struct. */
void fasvd__report_out(fasvd_factor_report *dst, const fasvd_factor_report *src)
{
	if (dst)
		fasvd__store_versioned(dst, src, &report_ver);
}

void fasvd__report_shape(fasvd_factor_report *rep, int64_t rows, int64_t cols, int64_t heads,
                         int64_t rank, int64_t full_rank)
{
	rep->rows = rows;
	rep->cols = cols;
	rep->heads = heads;
	rep->rank = rank;
	rep->inner = rank > 0 ? rank : 1;
	rep->full_rank = full_rank;
}

/* scale² · rel without overflowing on the way (0 stays 0 at any scale). */
static double energy_of(double scale, double rel)
{
	return scale * (scale * rel);
}

void fasvd__report_energy(fasvd_factor_report *rep, const fasvd__spectra *sp, int64_t r)
{
	double scale = fasvd__energy_scale(sp);
	rep->energy = energy_of(scale, fasvd__energy_sum(sp, scale, 0, sp->n));
	rep->energy_lost = fasvd__energy_loss(sp, r);
	rep->optimal_energy_lost = rep->energy_lost;
	rep->spectrum_exact = 1;
}

int fasvd__factor_opts_load(fasvd_factor_opts *o, const fasvd_factor_opts *user, const char *fn)
{
	fasvd_factor_opts_init(o, sizeof *o);
	if (user) {
		int rc = fasvd__load_versioned(o, user, &opts_ver, fn, "opts");
		if (rc)
			return rc;
	}
	if (o->rank < FASVD_FACTOR_RANK_TAU)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: opts->rank = %lld: must be >= 0 or FASVD_FACTOR_RANK_TAU", fn,
		                    (long long)o->rank);
	if (!(o->tau >= 0 && o->tau <= 1))
		return fasvd__error(FASVD_EINVAL, "%s: opts->tau = %g: must be in [0, 1]", fn, o->tau);
	if (o->max_rank < 0)
		return fasvd__error(FASVD_EINVAL, "%s: opts->max_rank = %lld: must be >= 0", fn,
		                    (long long)o->max_rank);
	if (o->split != FASVD_FACTOR_SPLIT_BALANCED && o->split != FASVD_FACTOR_SPLIT_LEFT &&
	    o->split != FASVD_FACTOR_SPLIT_RIGHT)
		return fasvd__error(FASVD_EINVAL, "%s: opts->split = %d is not a fasvd_factor_split",
		                    fn, (int)o->split);
	if (o->dtype != FASVD_DTYPE_F32 && o->dtype != FASVD_DTYPE_F16 &&
	    o->dtype != FASVD_DTYPE_BF16 && o->dtype != FASVD_DTYPE_F64)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: opts->dtype = %s (%d): factors are F32, F16, BF16 or F64", fn,
		                    fasvd_dtype_name(o->dtype), (int)o->dtype);
	if (o->compute != 0 && o->compute != FASVD_COMPUTE_F32 && o->compute != FASVD_COMPUTE_F64)
		return fasvd__error(FASVD_EINVAL, "%s: opts->compute = %d is not a fasvd_compute", fn,
		                    (int)o->compute);
	if (o->backend < FASVD_BACKEND_AUTO || o->backend > FASVD_BACKEND_RANDOMIZED)
		return fasvd__error(FASVD_EINVAL, "%s: opts->backend = %d is not a fasvd_backend", fn,
		                    (int)o->backend);
	if (o->backend == FASVD_BACKEND_GRAM)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: opts->backend = gram computes values only; factors need "
		                    "singular vectors",
		                    fn);
	if (o->oversample < 0 || o->power_iters < 0)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: opts->oversample = %lld, power_iters = %lld: must be >= 0", fn,
		                    (long long)o->oversample, (long long)o->power_iters);
	if (o->heads < 0)
		return fasvd__error(FASVD_EINVAL, "%s: opts->heads = %lld: must be >= 0", fn,
		                    (long long)o->heads);
	if (!(o->calibration_eps >= 0 && o->calibration_eps < INFINITY))
		return fasvd__error(FASVD_EINVAL, "%s: opts->calibration_eps = %g: must be >= 0", fn,
		                    o->calibration_eps);
	return 0;
}

/* ------------------------------------------------------- shared helpers */

/* The compute precision of validated options o: opts->compute, or when it
 * is 0 float64 for float64 input (f64_input; as the Python binding
 * chooses), else the context's FASVD_CTX_COMPUTE. */
static fasvd_compute resolve_compute(const fasvd_factor_opts *o, const fasvd_ctx *ctx,
                                     bool f64_input)
{
	if (o->compute)
		return o->compute;
	return f64_input ? FASVD_COMPUTE_F64 : (fasvd_compute)ctx->compute;
}

/* Whether every heads handle of groups[0 .. n) holds float64 weights. */
static bool heads_f64(const fasvd_heads *const *groups, int64_t n)
{
	for (int64_t g = 0; g < n; g++)
		if (!groups[g] || fasvd_tensor_dtype(fasvd_heads_tensor(groups[g])) != FASVD_DTYPE_F64)
			return false;
	return true;
}

bool fasvd__factor_canceled(const fasvd_factor_opts *o, fasvd_cancel_fn extra, void *extra_arg)
{
	return (o->cancel && o->cancel(o->cancel_arg)) || (extra && extra(extra_arg));
}

int fasvd__canceled_error(const char *fn, const char *label)
{
	return fasvd__error(FASVD_ECANCELED, "%s: %s: cancelled by the caller", fn, label);
}

/* Encode n doubles as dtype into dst; refuse values that overflow the
 * dtype (F16 beyond 65504) with FASVD_ERANGE naming `what`; when back is not
 * NULL, it receives the stored values decoded. */
int fasvd__encode_checked(fasvd_dtype dt, const double *src, size_t n, void *dst, double *back,
                          const char *what)
{
	int rc = fasvd_dtype_encode(dst, dt, src, n);
	if (rc)
		return rc;
	if (dt == FASVD_DTYPE_F64) {
		if (back)
			memcpy(back, src, n * sizeof(double));
		return 0;
	}
	double tmp[256];
	for (size_t i0 = 0; i0 < n; i0 += 256) {
		size_t k = n - i0 < 256 ? n - i0 : 256;
		double *d = back ? back + i0 : tmp;
		if ((rc = fasvd_dtype_decode(d, dt, (const char *)dst + i0 * fasvd_dtype_size(dt),
		                             k)))
			return rc;
		for (size_t i = 0; i < k; i++)
			if (!isfinite(d[i]))
				return fasvd__error(FASVD_ERANGE,
				                    "%s: value %g overflows %s: use a wider factor dtype "
				                    "(bf16 or f32)",
				                    what, src[i0 + i], fasvd_dtype_name(dt));
	}
	return 0;
}

/* Write zero factors (rank 0: inner dimension 1) of one unit. */
static void zero_unit(fasvd_dtype dt, void *a, int64_t rows, void *b, int64_t cols)
{
	size_t es = fasvd_dtype_size(dt);
	memset(a, 0, (size_t)rows * es);
	memset(b, 0, (size_t)cols * es);
}

/* dst (rows x cols, C order, dt) = the leading rows x cols block of src
 * (F32 or F64, any strides), column j scaled by col_scale[j] or row i by
 * row_scale[i]; row: a buffer of cols doubles. */
static int store_scaled(fasvd_dtype dt, const fasvd_tensor *src, int64_t rows, int64_t cols,
                        const double *col_scale, const double *row_scale, double *row,
                        void *dst, double *back, const char *what)
{
	bool dbl = fasvd_tensor_dtype(src) == FASVD_DTYPE_F64;
	const char *d = fasvd_tensor_data(src);
	int64_t rs = fasvd_tensor_row_stride(src), cs = fasvd_tensor_col_stride(src);
	size_t es = fasvd_dtype_size(dt);
	for (int64_t i = 0; i < rows; i++) {
		for (int64_t j = 0; j < cols; j++) {
			int64_t off = i * rs + j * cs;
			double v = dbl ? ((const double *)d)[off] : ((const float *)d)[off];
			row[j] = v * (col_scale ? col_scale[j] : row_scale[i]);
		}
		int rc = fasvd__encode_checked(dt, row, (size_t)cols, (char *)dst + (size_t)(i * cols) * es,
		                               back ? back + i * cols : NULL, what);
		if (rc)
			return rc;
	}
	return 0;
}

/* Split σ between U (rows x r) and Vt (r x cols) and store A = U·Σ^α,
 * B = Σ^(1−α)·Vt as dt at a (rows x inner) and b (inner x cols).
 * u, vt: owned C-order F32/F64 tensors with at least r columns / rows.
 * a_back / b_back (may be NULL): the stored values decoded. */
int fasvd__store_factors(fasvd_ctx *ctx, fasvd_factor_split split, fasvd_dtype dt,
                         const fasvd_tensor *u, const double *s, const fasvd_tensor *vt,
                         int64_t rows, int64_t cols, int64_t r, void *a, void *b,
                         double *a_back, double *b_back, const char *label)
{
	double alpha = split == FASVD_FACTOR_SPLIT_LEFT ? 1.0
	               : split == FASVD_FACTOR_SPLIT_RIGHT ? 0.0 : 0.5;
	int64_t len = r > cols ? r : cols;
	double *row = fasvd__alloc(ctx, (size_t)len * sizeof(double), "factor row");
	double *sa = fasvd__alloc(ctx, (size_t)r * 2 * sizeof(double), "singular value split");
	int rc = 0;
	if (!row || !sa) {
		rc = FASVD_ENOMEM;
		goto out;
	}
	for (int64_t j = 0; j < r; j++) {
		double sj = s[j] > 0 ? s[j] : 0;
		sa[j] = alpha == 1.0 ? sj : alpha == 0.0 ? 1.0 : sqrt(sj);
		sa[r + j] = alpha == 0.0 ? sj : alpha == 1.0 ? 1.0 : sqrt(sj);
	}
	char what[320];
	snprintf(what, sizeof what, "factor A of %s", label);
	if ((rc = store_scaled(dt, u, rows, r, sa, NULL, row, a, a_back, what)))
		goto out;
	snprintf(what, sizeof what, "factor B of %s", label);
	rc = store_scaled(dt, vt, r, cols, NULL, sa + r, row, b, b_back, what);
out:
	fasvd__free(ctx, row);
	fasvd__free(ctx, sa);
	return rc;
}

/* ‖W‖²_F of w (any tensor) and, when a_dec/b_dec are given (rows x r and
 * r x cols, row-major doubles), ‖W − A·B‖²_F, decoding W in row blocks. */
int fasvd__measure(fasvd_ctx *ctx, const fasvd_tensor *w, const double *a_dec,
                   const double *b_dec, int64_t r, double *energy, double *resid)
{
	int64_t rows = fasvd_tensor_rows(w), cols = fasvd_tensor_cols(w);
	int64_t nb = (int64_t)(FACTOR_VERIFY_BLOCK_BYTES / ((size_t)cols * sizeof(double)));
	if (nb < 1)
		nb = 1;
	if (nb > rows)
		nb = rows;
	double *buf = fasvd__alloc(ctx, (size_t)(nb * cols) * sizeof(double), "residual block");
	if (!buf)
		return FASVD_ENOMEM;
	int rc = 0;
	double e = 0, res = 0;
	for (int64_t r0 = 0; r0 < rows; r0 += nb) {
		int64_t nr = rows - r0 < nb ? rows - r0 : nb;
		fasvd_tensor *v = NULL;
		if ((rc = fasvd_tensor_view(&v, w, r0, 0, nr, cols)))
			break;
		rc = fasvd_tensor_to_f64(buf, cols, FASVD_LAYOUT_ROW_MAJOR, v, 0);
		fasvd_tensor_free(v);
		if (rc)
			break;
		size_t n = (size_t)(nr * cols);
		for (size_t i = 0; i < n; i++)
			e += buf[i] * buf[i];
		if (a_dec && b_dec) {
			if (r > 0)
				cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)nr,
				            (blasint)cols, (blasint)r, -1.0, a_dec + r0 * r, (blasint)r,
				            b_dec, (blasint)cols, 1.0, buf, (blasint)cols);
			for (size_t i = 0; i < n; i++)
				res += buf[i] * buf[i];
		}
	}
	fasvd__free(ctx, buf);
	if (!rc) {
		*energy = e;
		if (resid)
			*resid = res;
	}
	return rc;
}

/* ------------------------------------------------------------ the job */

typedef struct unit_out {
	double energy;      /* ‖W_u‖² from the decode */
	double resid;       /* ‖W_u − A_u·B_u‖² (verify) */
	double kept;        /* Σ_{i<=r} σ̂² of the vectors pass */
	double tail;        /* exact tail beyond r when known, else -1 */
	fasvd_backend backend;
	double err_est;
} unit_out;

typedef struct job {
	const char *fn;
	fasvd_ctx *ctx;            /* the caller's (resolved) */
	struct fasvd_ctx inner;    /* one-thread copy for parallel units */
	const fasvd_tensor *w;
	fasvd_factor_opts o;
	fasvd_cancel_fn cancel2;   /* extra cancel hook (on-load input) */
	void *cancel2_arg;
	char label[256];
	bool dbl;
	int64_t h, rh, n, p;       /* units, rows per unit, cols, min(rh, n) */
	double *spec;              /* h x p values (τ mode / rank query) */
	int64_t r, inner_dim;
	fasvd_backend vec_backend; /* AUTO resolved per unit (same for all) */
	bool want_full;            /* vectors pass computes all p values */
	void *a, *b;               /* outputs */
	unit_out *uo;
} job;

static int job_canceled(const job *j)
{
	if (fasvd__factor_canceled(&j->o, j->cancel2, j->cancel2_arg))
		return fasvd__canceled_error(j->fn, j->label);
	return 0;
}

static fasvd_ctx *unit_ctx(job *j)
{
	return j->h > 1 ? &j->inner : j->ctx;
}

static int unit_view(const job *j, int64_t u, fasvd_tensor **v)
{
	if (j->h <= 1) {
		*v = NULL;
		return 0;
	}
	return fasvd_tensor_view(v, j->w, u * j->rh, 0, j->rh, j->n);
}

static void svd_opts(const job *j, fasvd_svd_opts *so, fasvd_backend backend, int64_t rank)
{
	fasvd_svd_opts_init(so, sizeof *so);
	so->compute = j->dbl ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
	so->backend = backend;
	so->rank = rank;
	if (j->o.oversample)
		so->oversample = j->o.oversample;
	if (j->o.power_iters)
		so->power_iters = j->o.power_iters;
	if (j->o.seed)
		so->seed = j->o.seed;
}

/* Singular values beyond the compute precision's range (a float32
 * computation of a matrix with entries near FLT_MAX) come back as Inf or
 * NaN: refuse them rather than choose a rank from them. */
static int check_finite(const job *j, const double *s, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(s[i]))
			return fasvd__error(FASVD_ERANGE,
			                    "%s: %s: singular value %lld overflows %s computation: use "
			                    "float64 compute (FASVD_COMPUTE_F64)",
			                    j->fn, j->label, (long long)i, j->dbl ? "float64" : "float32");
	return 0;
}

static int values_task(void *arg, int64_t u, int worker)
{
	(void)worker;
	job *j = arg;
	int rc = job_canceled(j);
	if (rc)
		return rc;
	fasvd_tensor *v = NULL;
	if ((rc = unit_view(j, u, &v)))
		return rc;
	fasvd_svd_opts so;
	svd_opts(j, &so, FASVD_BACKEND_AUTO, 0);
	rc = fasvd_svdvals(j->spec + u * j->p, j->p, unit_ctx(j), v ? v : j->w, &so, NULL);
	fasvd_tensor_free(v);
	if (!rc)
		rc = check_finite(j, j->spec + u * j->p, j->p);
	if (rc && j->h > 1)
		fasvd__error_prefix(rc, "head %lld", (long long)u);
	return rc;
}

/* The backend of the vectors pass at rank r (0 < r < p handled by AUTO). */
static void choose_vec_backend(job *j, bool tau_mode)
{
	int64_t r = j->r, p = j->p;
	j->want_full = false;
	if (j->o.backend != FASVD_BACKEND_AUTO) {
		j->vec_backend = j->o.backend;
		j->want_full = (j->vec_backend == FASVD_BACKEND_GESDD ||
		                j->vec_backend == FASVD_BACKEND_GESVD) && !tau_mode;
		return;
	}
	/* Exact in both modes: the best rank-r approximation is what the
	 * report promises (the randomised backend is opt-in). */
	if (r >= p) {
		j->vec_backend = FASVD_BACKEND_GESDD;
		j->want_full = !tau_mode;
	} else if (r * 5 <= p) {
		j->vec_backend = FASVD_BACKEND_GESVDX;
	} else {
		j->vec_backend = FASVD_BACKEND_GESDD;
		/* the whole spectrum comes for free: exact tail */
		j->want_full = !tau_mode;
	}
}

/* Where unit u's factors go in j->a (rh x inner) and j->b (inner x n). */
static void unit_factors(const job *j, int64_t u, void **a, void **b)
{
	size_t es = fasvd_dtype_size(j->o.dtype);
	*a = (char *)j->a + (size_t)(u * j->rh * j->inner_dim) * es;
	*b = (char *)j->b + (size_t)(u * j->inner_dim * j->n) * es;
}

/* With verify, zeroed buffers for the stored factors decoded (rh x r and
 * r x n doubles); NULL without. */
static int decoded_factors(const job *j, fasvd_ctx *ctx, int64_t r, double **a_dec,
                           double **b_dec)
{
	*a_dec = *b_dec = NULL;
	if (!j->o.verify)
		return 0;
	*a_dec = fasvd__calloc(ctx, (size_t)(j->rh * r), sizeof(double), "decoded factor A");
	*b_dec = fasvd__calloc(ctx, (size_t)(r * j->n), sizeof(double), "decoded factor B");
	return *a_dec && *b_dec ? 0 : FASVD_ENOMEM;
}

/* Rank 0: zero factors of inner dimension 1; W_u (w) measured against them. */
static int zero_unit_task(job *j, int64_t u, const fasvd_tensor *w)
{
	unit_out *uo = &j->uo[u];
	fasvd_ctx *ctx = unit_ctx(j);
	void *a, *b;
	unit_factors(j, u, &a, &b);
	zero_unit(j->o.dtype, a, j->rh, b, j->n);
	uo->kept = 0;
	uo->backend = FASVD_BACKEND_AUTO;
	double *a_dec, *b_dec;
	int rc = decoded_factors(j, ctx, 1, &a_dec, &b_dec);
	if (!rc)
		rc = fasvd__measure(ctx, w, a_dec, b_dec, 1, &uo->energy, &uo->resid);
	fasvd__free(ctx, a_dec);
	fasvd__free(ctx, b_dec);
	return rc;
}

/* The SVD of W_u (w) at rank j->r (or all ns = p values when want_full)
 * into *tu, s, *tvt; the kept energy and, with the whole spectrum, the
 * exact tail into uo. */
static int unit_svd(const job *j, fasvd_ctx *ctx, const fasvd_tensor *w, double *s, int64_t ns,
                    fasvd_tensor **tu, fasvd_tensor **tvt, unit_out *uo)
{
	fasvd_svd_opts so;
	fasvd_svd_report sr;
	fasvd_svd_report_init(&sr, sizeof sr);
	svd_opts(j, &so, j->vec_backend, j->want_full ? 0 : j->r);
	int rc;
	if ((rc = fasvd_svd(tu, s, ns, tvt, ctx, w, &so, &sr)) || (rc = check_finite(j, s, ns)))
		return rc;
	uo->backend = sr.backend;
	uo->err_est = sr.error_estimate;
	fasvd__spectra sp = {s, 1, ns, ns};
	double scale = fasvd__energy_scale(&sp);
	uo->kept = energy_of(scale, fasvd__energy_sum(&sp, scale, 0, j->r));
	if (j->want_full)
		uo->tail = energy_of(scale, fasvd__energy_sum(&sp, scale, j->r, ns));
	return 0;
}

/* Rank r > 0: the truncated SVD of W_u (w), its factors split and stored,
 * then W_u measured (against the stored factors with verify). */
static int rank_unit_task(job *j, int64_t u, const fasvd_tensor *w)
{
	unit_out *uo = &j->uo[u];
	fasvd_ctx *ctx = unit_ctx(j);
	fasvd_tensor *tu = NULL, *tvt = NULL;
	double *a_dec = NULL, *b_dec = NULL;
	int64_t ns = j->want_full ? j->p : j->r;
	double *s = fasvd__alloc(ctx, (size_t)ns * sizeof(double), "singular values");
	if (!s)
		return FASVD_ENOMEM;
	int rc;
	if ((rc = unit_svd(j, ctx, w, s, ns, &tu, &tvt, uo)) || (rc = job_canceled(j)) ||
	    (rc = decoded_factors(j, ctx, j->r, &a_dec, &b_dec)))
		goto out;
	void *a, *b;
	unit_factors(j, u, &a, &b);
	char label[300];
	if (j->h > 1)
		snprintf(label, sizeof label, "%s head %lld", j->label, (long long)u);
	else
		snprintf(label, sizeof label, "%s", j->label);
	if ((rc = fasvd__store_factors(ctx, j->o.split, j->o.dtype, tu, s, tvt, j->rh, j->n, j->r,
	                               a, b, a_dec, b_dec, label)))
		goto out;
	fasvd_tensor_free(tu);
	fasvd_tensor_free(tvt);
	tu = tvt = NULL;
	rc = fasvd__measure(ctx, w, a_dec, b_dec, j->r, &uo->energy, &uo->resid);
out:
	fasvd_tensor_free(tu);
	fasvd_tensor_free(tvt);
	fasvd__free(ctx, s);
	fasvd__free(ctx, a_dec);
	fasvd__free(ctx, b_dec);
	return rc;
}

/* Phase 2 for unit u: its factors into j->a / j->b, its results into j->uo[u]. */
static int vectors_task(void *arg, int64_t u, int worker)
{
	(void)worker;
	job *j = arg;
	fasvd_tensor *v = NULL;
	int rc = job_canceled(j);
	if (rc || (rc = unit_view(j, u, &v)))
		return rc;
	const fasvd_tensor *w = v ? v : j->w;
	j->uo[u].tail = -1;
	j->uo[u].backend = j->vec_backend;
	rc = j->r == 0 ? zero_unit_task(j, u, w) : rank_unit_task(j, u, w);
	if (rc && j->h > 1 && rc != FASVD_ECANCELED)
		fasvd__error_prefix(rc, "head %lld", (long long)u);
	fasvd_tensor_free(v);
	return rc;
}

static int job_setup(job *j, fasvd_ctx *ctx, const fasvd_tensor *w, const fasvd_factor_opts *opts,
                     const char *fn)
{
	memset(j, 0, sizeof *j);
	j->fn = fn;
	if (!w)
		return fasvd__error(FASVD_EINVAL, "%s: w is NULL", fn);
	int rc = fasvd__factor_opts_load(&j->o, opts, fn);
	if (rc)
		return rc;
	j->ctx = fasvd__ctx(ctx ? ctx : w->ctx);
	j->inner = *j->ctx;
	j->inner.threads = 1;
	j->inner.is_default = false;
	j->w = w;
	fasvd__tensor_label(w, j->label, sizeof j->label);
	j->dbl = resolve_compute(&j->o, j->ctx, fasvd_tensor_dtype(w) == FASVD_DTYPE_F64) ==
	         FASVD_COMPUTE_F64;
	int64_t m = fasvd_tensor_rows(w);
	j->n = fasvd_tensor_cols(w);
	j->h = j->o.heads > 1 ? j->o.heads : 1;
	if (m % j->h)
		return fasvd__error(FASVD_ESHAPE,
		                    "%s: %s has %lld rows, not a multiple of opts->heads = %lld", fn,
		                    j->label, (long long)m, (long long)j->h);
	j->rh = m / j->h;
	j->p = j->rh < j->n ? j->rh : j->n;
	if ((rc = fasvd__check_lapack_dim("rows", j->rh)) ||
	    (rc = fasvd__check_lapack_dim("cols", j->n)))
		return fasvd__error_prefix(rc, "%s: %s", fn, j->label);
	j->uo = fasvd__calloc(j->ctx, (size_t)j->h, sizeof *j->uo, "per-head results");
	if (!j->uo)
		return FASVD_ENOMEM;
	return 0;
}

static void job_clear(job *j)
{
	if (!j->ctx)
		return;
	fasvd__free(j->ctx, j->spec);
	fasvd__free(j->ctx, j->uo);
	j->spec = NULL;
	j->uo = NULL;
}

static int run_units(job *j, fasvd__task_fn fn)
{
	if (j->h == 1)
		return fn(j, 0, 0);
	return fasvd__parallel_for(j->ctx, j->h, fn, j);
}

/* The rank the options ask for, at most p: opts->rank, or in τ mode the
 * smallest rank of the spectra sp losing at most τ, capped by max_rank. */
static int64_t pick_rank(const fasvd_factor_opts *o, const fasvd__spectra *sp, int64_t p)
{
	int64_t r = o->rank;
	if (o->rank == FASVD_FACTOR_RANK_TAU) {
		r = fasvd__energy_rank(sp, o->tau);
		if (o->max_rank > 0 && r > o->max_rank)
			r = o->max_rank;
	}
	return r < p ? r : p;
}

/* Phase 1: spectrum (when needed) and rank. */
static int job_rank(job *j, bool need_spectrum, fasvd_factor_report *rep)
{
	int rc;
	bool tau_mode = j->o.rank == FASVD_FACTOR_RANK_TAU;
	if ((rc = job_canceled(j)))
		return rc;
	if (tau_mode || need_spectrum) {
		j->spec = fasvd__calloc(j->ctx, (size_t)(j->h * j->p), sizeof(double), "spectra");
		if (!j->spec)
			return FASVD_ENOMEM;
		if ((rc = run_units(j, values_task)))
			return rc;
	}
	fasvd__spectra sp = {j->spec, j->h, j->p, j->p};
	j->r = pick_rank(&j->o, &sp, j->p);
	j->inner_dim = j->r > 0 ? j->r : 1;
	fasvd__report_shape(rep, j->h * j->rh, j->n, j->h, j->r, j->p);
	rep->params_before = j->h * j->rh * j->n;
	rep->params_after = j->h * j->inner_dim * (j->rh + j->n);
	if (j->spec)
		fasvd__report_energy(rep, &sp, j->r);
	return 0;
}

/* Phase 2 into j->a / j->b; fills the rest of the report. */
static int job_vectors(job *j, fasvd_factor_report *rep)
{
	bool tau_mode = j->o.rank == FASVD_FACTOR_RANK_TAU;
	choose_vec_backend(j, tau_mode);
	int rc = run_units(j, vectors_task);
	if (rc)
		return rc;
	double energy = 0, resid = 0, lost = 0, kept = 0, err = 0;
	bool exact = true; /* every unit's tail known exactly */
	for (int64_t u = 0; u < j->h; u++) {
		const unit_out *uo = &j->uo[u];
		energy += uo->energy;
		resid += uo->resid;
		kept += uo->kept;
		if (uo->err_est > err)
			err = uo->err_est;
		if (j->r == 0) {
			lost += uo->energy;
		} else if (uo->tail >= 0) {
			lost += uo->tail;
		} else {
			double d = uo->energy - uo->kept;
			lost += d > 0 ? d : 0;
			exact = false;
		}
	}
	rep->energy = energy;
	bool randomized = j->r > 0 && j->r < j->p && j->vec_backend == FASVD_BACKEND_RANDOMIZED;
	rep->approximate = randomized;
	if (j->spec && !randomized) {
		/* τ mode: energy_lost, its optimum and spectrum_exact were set by
		 * job_rank from the full spectrum */
	} else if (j->spec) {
		/* τ mode with randomised vectors: the true loss of these factors
		 * (the optimum from the spectrum stays) */
		double d = energy - kept;
		rep->energy_lost = energy > 0 ? (d > 0 ? d : 0) / energy : 0;
		rep->spectrum_exact = 0;
	} else {
		rep->energy_lost = energy > 0 ? lost / energy : 0;
		rep->spectrum_exact = exact && !randomized ? 1 : 0;
		/* exact vectors: Σ_{i>r} σ_i² (or ‖W‖² − Σ_{i<=r} σ_i²) is the optimum */
		rep->optimal_energy_lost = randomized ? -1 : rep->energy_lost;
	}
	rep->rel_error_sq = j->o.verify ? (energy > 0 ? resid / energy : 0) : -1;
	rep->backend = j->r == 0 ? FASVD_BACKEND_AUTO : j->uo[0].backend;
	rep->error_estimate = err;
	return 0;
}

static int check_report(fasvd_factor_report *report, const char *fn)
{
	return report ? fasvd__check_versioned(report, &report_ver, fn, "report") : 0;
}

int fasvd__factor_check_report(fasvd_factor_report *report, const char *fn)
{
	return check_report(report, fn);
}

int fasvd__factor_run(fasvd_tensor **a, fasvd_tensor **b, void *abuf, void *bbuf,
                      int64_t capacity, fasvd_ctx *ctx, const fasvd_tensor *w,
                      const fasvd_factor_opts *opts, fasvd_cancel_fn cancel2, void *cancel2_arg,
                      fasvd_factor_report *report, const char *fn)
{
	job j;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	fasvd_tensor *ta = NULL, *tb = NULL;
	int rc = check_report(report, fn);
	if (rc)
		return rc;
	if ((rc = job_setup(&j, ctx, w, opts, fn)))
		goto out;
	j.cancel2 = cancel2;
	j.cancel2_arg = cancel2_arg;
	if (!a && capacity < 1) {
		rc = fasvd__error(FASVD_EINVAL, "%s: capacity = %lld: must be >= 1", fn,
		                  (long long)capacity);
		goto out;
	}
	if ((rc = job_rank(&j, false, &rep)))
		goto out;
	if (a) {
		if ((rc = fasvd_tensor_new(&ta, j.ctx, j.o.dtype, j.h * j.rh, j.inner_dim)) ||
		    (rc = fasvd_tensor_new(&tb, j.ctx, j.o.dtype, j.h * j.inner_dim, j.n)))
			goto out;
		j.a = fasvd_tensor_data_mut(ta);
		j.b = fasvd_tensor_data_mut(tb);
	} else {
		if (j.inner_dim > capacity) {
			rc = fasvd__error(FASVD_ERANGE,
			                  "%s: %s needs inner dimension %lld (rank %lld), buffers hold "
			                  "%lld",
			                  fn, j.label, (long long)j.inner_dim, (long long)j.r,
			                  (long long)capacity);
			goto out;
		}
		j.a = abuf;
		j.b = bbuf;
	}
	if ((rc = job_vectors(&j, &rep)))
		goto out;
	if (a) {
		*a = ta;
		*b = tb;
		ta = tb = NULL;
	}
out:
	fasvd_tensor_free(ta);
	fasvd_tensor_free(tb);
	job_clear(&j);
	fasvd__report_out(report, &rep);
	return rc;
}

int fasvd__factor_rank_run(int64_t *rank, fasvd_ctx *ctx, const fasvd_tensor *w,
                           const fasvd_factor_opts *opts, fasvd_factor_report *report,
                           const char *fn)
{
	job j;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	if (!rank)
		return fasvd__error(FASVD_EINVAL, "%s: rank is NULL", fn);
	int rc = check_report(report, fn);
	if (rc)
		return rc;
	if (!(rc = job_setup(&j, ctx, w, opts, fn)) && !(rc = job_rank(&j, true, &rep)))
		*rank = j.r;
	job_clear(&j);
	fasvd__report_out(report, &rep);
	return rc;
}

/* ---------------------------------------------------------- workspace */

int64_t fasvd__factor_max_rank(const fasvd_factor_opts *o, int64_t p)
{
	if (o->rank >= 0 && o->rank < p)
		return o->rank;
	if (o->rank < 0 && o->max_rank > 0 && o->max_rank < p)
		return o->max_rank;
	return p;
}

static bool add_u64(uint64_t *acc, uint64_t v)
{
	if (*acc > UINT64_MAX - v)
		return false;
	*acc += v;
	return true;
}

int fasvd__factor_workspace(uint64_t *bytes, int64_t rows, int64_t cols,
                            const fasvd_factor_opts *o, bool dbl, int64_t workers)
{
	int64_t h = o->heads > 1 ? o->heads : 1;
	if (rows < 1 || cols < 1 || rows % h)
		return fasvd__error(FASVD_ESHAPE,
		                    "fasvd_factor_workspace: shape [%lld, %lld] with %lld heads",
		                    (long long)rows, (long long)cols, (long long)h);
	if (workers < 1)
		workers = 1;
	if (workers > h)
		workers = h;
	/* Per unit (all sizes in elements, then bytes), m = rows per unit. */
	double m = (double)(rows / h), n = (double)cols;
	double p = m < n ? m : n, big = m > n ? m : n;
	double es = dbl ? 8 : 4;
	double r = (double)fasvd__factor_max_rank(o, (int64_t)p);
	/* values pass: Gram p² doubles + a decoded panel (16 MB, at least 64
	 * rows, at most the whole matrix), or a decoded copy plus gesdd
	 * workspace (3p + max(big, 7p)) and 8p ints */
	double panel = (double)(16u << 20);
	if (panel < 512 * p)
		panel = 512 * p;
	if (panel > 8 * m * n)
		panel = 8 * m * n;
	double values = 8 * p * p + 16 * p + panel;
	double vdense = es * (m * n + 3 * p + (big > 7 * p ? big : 7 * p)) + 32 * p + 8 * p;
	if (vdense > values)
		values = vdense;
	/* vectors pass: decoded copy, U and Vt (outputs and scratch), LAPACK
	 * work (gesdd: 3p + max(big, 4p² + 4p); gesvdx: p(p + 4) + 2p(p + 1)
	 * extra; randomised: sketches of (r + oversample) columns), values,
	 * then the factor split and the decoded factors / residual block. */
	double l = r + (double)(o->oversample ? o->oversample : 10);
	double work = 3 * p + (big > 4 * p * p + 4 * p ? big : 4 * p * p + 4 * p);
	double gx = p * (p + 4) + 2 * p * (2 * p + 1) + 14 * p;
	if (gx > work)
		work = gx;
	double rnd = 4 * l * (m + n) + 4 * l * l;
	if (rnd > work)
		work = rnd;
	double vectors = es * (m * n + 2 * (m * p + p * n) + work) + 12 * 8 * p + 8 * 4 * p;
	double store = 8 * (2 * (big > r ? big : r) + 2 * r) + 8 * (m * r + r * n) +
	               (double)FACTOR_VERIFY_BLOCK_BYTES + 8 * n;
	double per = (values > vectors ? values : vectors) + store + 4096;
	/* calibrated: W, W·S_ε, G, S_ε, the residual and M·G (float64) */
	if (o->calibration)
		per += 8 * (4 * m * h * n + 2 * n * n) + 8 * (m * h + h * n) * r;
	double total = per * (double)workers + 8 * p * (double)h + 64 * (double)h + 4096;
	if (!(total < 1.8e19))
		return fasvd__error(FASVD_ERANGE, "fasvd_factor_workspace: bound overflows");
	uint64_t acc = 0;
	add_u64(&acc, (uint64_t)total);
	*bytes = acc;
	return 0;
}

int fasvd_factor_workspace(uint64_t *bytes, int64_t rows, int64_t cols,
                           const fasvd_factor_opts *opts, int64_t workers)
{
	static const char fn[] = "fasvd_factor_workspace";
	if (!bytes)
		return fasvd__error(FASVD_EINVAL, "%s: bytes is NULL", fn);
	fasvd_factor_opts o;
	int rc = fasvd__factor_opts_load(&o, opts, fn);
	if (rc)
		return rc;
	/* compute 0 follows the input, unknown here: bound the float64 case */
	bool dbl = o.compute ? o.compute == FASVD_COMPUTE_F64 : true;
	return fasvd__factor_workspace(bytes, rows, cols, &o, dbl, workers);
}

/* ====================================================== fused heads */

typedef struct fused_job {
	const char *fn;
	fasvd_ctx *inner;
	const fasvd_rfactors *ra, *rb;
	const fasvd_factor_opts *o;
	int64_t n, ml, mr, r, inner_dim;
	void *a, *b;
	char label[64];
} fused_job;

static int fused_task(void *arg, int64_t i, int worker)
{
	(void)worker;
	fused_job *j = arg;
	size_t es = fasvd_dtype_size(j->o->dtype);
	void *a = (char *)j->a + (size_t)(i * j->ml * j->inner_dim) * es;
	void *b = (char *)j->b + (size_t)(i * j->inner_dim * j->mr) * es;
	if (fasvd__factor_canceled(j->o, NULL, NULL))
		return fasvd__canceled_error(j->fn, j->label);
	if (j->r == 0) {
		zero_unit(j->o->dtype, a, j->ml, b, j->mr);
		return 0;
	}
	fasvd_tensor *u = NULL, *vt = NULL;
	double *s = fasvd__alloc(j->inner, (size_t)j->r * sizeof(double), "fused singular values");
	if (!s)
		return FASVD_ENOMEM;
	int rc = fasvd_fuse_svd(&u, s, &vt, j->inner, j->ra, j->rb, i, j->r);
	if (!rc) {
		char label[96];
		snprintf(label, sizeof label, "%s head %lld", j->label, (long long)i);
		rc = fasvd__store_factors(j->inner, j->o->split, j->o->dtype, u, s, vt, j->ml, j->mr,
		                          j->r, a, b, NULL, NULL, label);
	}
	fasvd_tensor_free(u);
	fasvd_tensor_free(vt);
	fasvd__free(j->inner, s);
	return rc;
}

/* The R factors of both sides' heads (Q kept for the vectors) and the
 * number of fused pairs; ESHAPE when the heads cannot be fused. */
static int fused_open(fasvd_rfactors **ra, fasvd_rfactors **rb, int64_t *n, fasvd_ctx *ctx,
                      const fasvd_heads *left, const fasvd_heads *right,
                      const fasvd_factor_opts *o, const char *fn)
{
	fasvd_rfactors_opts ro;
	fasvd_rfactors_opts_init(&ro, sizeof ro);
	ro.compute = o->compute;
	ro.keep_q = 1;
	int rc;
	if ((rc = fasvd_rfactors_new(ra, ctx, left, &ro)) ||
	    (rc = fasvd_rfactors_new(rb, ctx, right, &ro)))
		return rc;
	*n = fasvd_fuse_count(*ra, *rb);
	if (*n < 1)
		return fasvd__error(FASVD_ESHAPE,
		                    "%s: heads of %lld x %lld (%lld heads) and %lld x %lld (%lld heads) "
		                    "cannot be fused: head rows must agree and the head counts divide "
		                    "each other",
		                    fn, (long long)fasvd_heads_rows(left),
		                    (long long)fasvd_heads_cols(left), (long long)fasvd_heads_count(left),
		                    (long long)fasvd_heads_rows(right), (long long)fasvd_heads_cols(right),
		                    (long long)fasvd_heads_count(right));
	return 0;
}

/* The rank *r of the n fused pairs from their spectra, and the report's
 * shape, energy and parameter counts. */
static int fused_rank(int64_t *r, fasvd_factor_report *rep, fasvd_ctx *ctx,
                      const fasvd_factor_opts *o, const fasvd_rfactors *ra,
                      const fasvd_rfactors *rb, int64_t n, const fasvd_heads *left,
                      const fasvd_heads *right)
{
	int64_t k = fasvd_heads_rows(left), ml = fasvd_heads_cols(left),
	        mr = fasvd_heads_cols(right);
	int64_t lds = ml < mr ? ml : mr;
	int64_t p = k < lds ? k : lds;
	double *spec = fasvd__calloc(ctx, (size_t)(n * lds), sizeof(double), "fused spectra");
	if (!spec)
		return FASVD_ENOMEM;
	int rc = fasvd_fuse_svdvals(spec, lds, ctx, ra, rb);
	if (!rc) {
		fasvd__spectra sp = {spec, n, lds, lds};
		*r = pick_rank(o, &sp, p);
		int64_t id = *r > 0 ? *r : 1;
		fasvd__report_shape(rep, ml, mr, n, *r, p);
		fasvd__report_energy(rep, &sp, *r);
		rep->params_before = fasvd_heads_count(left) * k * ml +
		                     fasvd_heads_count(right) * k * mr;
		rep->params_after = n * id * (ml + mr);
		rep->backend = FASVD_BACKEND_GESDD;
	}
	fasvd__free(ctx, spec);
	return rc;
}

int fasvd_factor_fused(fasvd_tensor **a, fasvd_tensor **b, fasvd_ctx *ctx,
                       const fasvd_heads *left, const fasvd_heads *right,
                       const fasvd_factor_opts *opts, fasvd_factor_report *report)
{
	static const char fn[] = "fasvd_factor_fused";
	fasvd_factor_opts o;
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	fasvd_rfactors *ra = NULL, *rb = NULL;
	fasvd_tensor *ta = NULL, *tb = NULL;
	if (a)
		*a = NULL;
	if (b)
		*b = NULL;
	if (!a || !b || !left || !right)
		return fasvd__error(FASVD_EINVAL, "%s: %s is NULL", fn,
		                    !a ? "a" : !b ? "b" : !left ? "left" : "right");
	int rc = check_report(report, fn);
	if (rc || (rc = fasvd__factor_opts_load(&o, opts, fn)))
		return rc;
	ctx = fasvd__ctx(ctx);
	o.compute = resolve_compute(&o, ctx, heads_f64((const fasvd_heads *const[]){left, right}, 2));
	struct fasvd_ctx inner = *ctx;
	inner.threads = 1;
	inner.is_default = false;
	if (fasvd__factor_canceled(&o, NULL, NULL))
		return fasvd__canceled_error(fn, "fused heads");
	int64_t n, r;
	if ((rc = fused_open(&ra, &rb, &n, ctx, left, right, &o, fn)) ||
	    (rc = fused_rank(&r, &rep, ctx, &o, ra, rb, n, left, right)))
		goto out;
	int64_t ml = fasvd_heads_cols(left), mr = fasvd_heads_cols(right), id = r > 0 ? r : 1;
	if ((rc = fasvd_tensor_new(&ta, ctx, o.dtype, n * ml, id)) ||
	    (rc = fasvd_tensor_new(&tb, ctx, o.dtype, n * id, mr)))
		goto out;
	fused_job j = {fn, &inner, ra, rb, &o, n, ml, mr, r, id, fasvd_tensor_data_mut(ta),
	               fasvd_tensor_data_mut(tb), "fused heads"};
	if ((rc = fasvd__parallel_for(ctx, n, fused_task, &j)))
		goto out;
	*a = ta;
	*b = tb;
	ta = tb = NULL;
out:
	fasvd_tensor_free(ta);
	fasvd_tensor_free(tb);
	fasvd_rfactors_free(ra);
	fasvd_rfactors_free(rb);
	fasvd__report_out(report, &rep);
	return rc;
}

/* =================================================== shared subspace */

int fasvd_factor_shared_opts_init(fasvd_factor_shared_opts *opts, size_t size)
{
	static const fasvd_factor_shared_opts defaults = {
		.side = FASVD_SUBSPACE_SHARED_INPUT,
		.weight = FASVD_SUBSPACE_WEIGHT_NONE,
	};
	return fasvd__init_versioned(opts, size, &defaults, &shared_opts_ver);
}

/* Encode an F64 tensor (C order) into dst, or zeros when zero is set. */
static int encode_f64_tensor(const fasvd_tensor *src, fasvd_dtype dt, void *dst, bool zero,
                             const char *what)
{
	size_t n = (size_t)(fasvd_tensor_rows(src) * fasvd_tensor_cols(src));
	if (zero) {
		memset(dst, 0, n * fasvd_dtype_size(dt));
		return 0;
	}
	return fasvd__encode_checked(dt, fasvd_tensor_data(src), n, dst, NULL, what);
}

/* One shared-subspace factorisation: the inputs, the rank and the outputs. */
typedef struct shared_job {
	const char *fn;
	fasvd_ctx *ctx;
	fasvd_factor_opts o;
	fasvd_factor_shared_opts so;
	const fasvd_heads *const *groups;
	int64_t n_groups;
	int64_t nh, rows, cols;     /* heads in all groups, each rows x cols */
	bool in;                    /* shared input side: W_i ~ A_i·B, else B·A_i */
	int64_t p, r, id;           /* full rank, rank, inner dimension max(r, 1) */
	int64_t bsz, fsz;           /* elements of the basis, of one head's factor */
	fasvd_tensor *tb, *tf, *tm; /* outputs: basis, head factors, mean */
} shared_job;

/* Every group present, all heads of one shape: sj->nh, rows, cols. */
static int shared_shape(shared_job *sj)
{
	const fasvd_heads *const *groups = sj->groups;
	for (int64_t g = 0; g < sj->n_groups; g++) {
		if (!groups[g])
			return fasvd__error(FASVD_EINVAL, "%s: groups[%lld] is NULL", sj->fn,
			                    (long long)g);
		if (g == 0) {
			sj->rows = fasvd_heads_rows(groups[g]);
			sj->cols = fasvd_heads_cols(groups[g]);
		} else if (fasvd_heads_rows(groups[g]) != sj->rows ||
		           fasvd_heads_cols(groups[g]) != sj->cols) {
			return fasvd__error(FASVD_ESHAPE,
			                    "%s: heads of group %lld are %lld x %lld, those of group 0 "
			                    "%lld x %lld: a shared basis needs heads of one shape",
			                    sj->fn, (long long)g, (long long)fasvd_heads_rows(groups[g]),
			                    (long long)fasvd_heads_cols(groups[g]), (long long)sj->rows,
			                    (long long)sj->cols);
		}
		sj->nh += fasvd_heads_count(groups[g]);
	}
	return 0;
}

/* Every head of every group decoded into one F64 stack *comb, as heads *hc. */
static int shared_stack(const shared_job *sj, fasvd_tensor **comb, fasvd_heads **hc)
{
	int64_t rows = sj->rows, cols = sj->cols;
	int rc = fasvd_tensor_new(comb, sj->ctx, FASVD_DTYPE_F64, sj->nh * rows, cols);
	if (rc)
		return rc;
	double *d = fasvd_tensor_data_mut(*comb);
	int64_t at = 0;
	for (int64_t g = 0; g < sj->n_groups && !rc; g++)
		for (int64_t i = 0; i < fasvd_heads_count(sj->groups[g]) && !rc; i++, at++)
			rc = fasvd_heads_decode_f64(d + at * rows * cols, cols, FASVD_LAYOUT_ROW_MAJOR,
			                            sj->groups[g], i);
	if (rc)
		return rc;
	return fasvd_heads_new(hc, sj->ctx, *comb, FASVD_AXIS_ROWS, sj->nh, rows, 0, 0);
}

/* The subspace of heads h at the rank of the options (sj->r): in τ mode
 * the full spectrum first, then, when it is not the rank the subspace
 * chose, once more at that rank. */
static int shared_subspace(shared_job *sj, const fasvd_heads *h, fasvd_subspace **sp)
{
	const fasvd_factor_opts *o = &sj->o;
	fasvd_subspace_opts eo;
	fasvd_subspace_opts_init(&eo, sizeof eo);
	eo.compute = o->compute;
	eo.side = sj->so.side;
	eo.center = sj->so.center;
	eo.weight = sj->so.weight;
	bool tau_mode = o->rank == FASVD_FACTOR_RANK_TAU;
	eo.rank = tau_mode ? 0 : (o->rank < 1 ? 1 : o->rank > sj->p ? sj->p : o->rank);
	eo.tau = o->tau;
	int rc = fasvd_subspace_new(sp, sj->ctx, h, &eo);
	if (rc)
		return rc;
	int64_t n_spec = 0;
	const double *spec = fasvd_subspace_spectrum(&n_spec, *sp);
	fasvd__spectra spectrum = {spec, 1, n_spec, n_spec};
	sj->r = pick_rank(o, &spectrum, sj->p);
	if (tau_mode && sj->r > 0 && sj->r != fasvd_subspace_rank(*sp)) {
		fasvd_subspace_free(*sp);
		*sp = NULL;
		eo.rank = sj->r;
		rc = fasvd_subspace_new(sp, sj->ctx, h, &eo);
	}
	return rc;
}

/* The basis, the head factors (zeros at rank 0) and the mean as outputs
 * of the factor dtype. */
static int shared_store(shared_job *sj, const fasvd_subspace *sp)
{
	fasvd_dtype dt = sj->o.dtype;
	bool in = sj->in, zero = sj->r == 0;
	int64_t rows = sj->rows, cols = sj->cols, id = sj->id;
	int rc;
	if ((rc = fasvd_tensor_new(&sj->tb, sj->ctx, dt, in ? id : rows, in ? cols : id)) ||
	    (rc = fasvd_tensor_new(&sj->tf, sj->ctx, dt, in ? sj->nh * rows : sj->nh * id,
	                           in ? id : cols)))
		return rc;
	if ((rc = encode_f64_tensor(fasvd_subspace_basis(sp), dt, fasvd_tensor_data_mut(sj->tb),
	                            zero, "shared basis")))
		return rc;
	size_t es = fasvd_dtype_size(dt);
	char *f = fasvd_tensor_data_mut(sj->tf);
	for (int64_t i = 0; i < sj->nh; i++)
		if ((rc = encode_f64_tensor(fasvd_subspace_factor(sp, i), dt,
		                            f + (size_t)(i * sj->fsz) * es, zero, "head factor")))
			return rc;
	if (sj->so.center &&
	    ((rc = fasvd_tensor_new(&sj->tm, sj->ctx, dt, in ? 1 : rows, in ? cols : 1)) ||
	     (rc = encode_f64_tensor(fasvd_subspace_mean(sp), dt, fasvd_tensor_data_mut(sj->tm),
	                             false, "mean"))))
		return rc;
	return 0;
}

/* Decoded (double) buffers of the measurement: one head, its
 * reconstruction, the stored basis, one head's factor, the mean. */
typedef struct shared_dec {
	double *w, *rec, *b, *f, *m;
} shared_dec;

/* Ŵ_i = μ + A_i·B (shared input) or μ·1ᵀ + B·A_i into d->rec, from the
 * decoded factor d->f, basis d->b and mean d->m. */
static void shared_rebuild(const shared_job *sj, const shared_dec *d)
{
	int64_t rows = sj->rows, cols = sj->cols, id = sj->id;
	for (int64_t x = 0; x < rows; x++)
		for (int64_t y = 0; y < cols; y++)
			d->rec[x * cols + y] = sj->in ? d->m[y] : d->m[x];
	if (sj->in)
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)cols,
		            (blasint)id, 1.0, d->f, (blasint)id, d->b, (blasint)cols, 1.0, d->rec,
		            (blasint)cols);
	else
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)cols,
		            (blasint)id, 1.0, d->b, (blasint)id, d->f, (blasint)cols, 1.0, d->rec,
		            (blasint)cols);
}

/* Σ‖W_i‖² and Σ‖W_i − Ŵ_i‖² over every head of every group. */
static int shared_measure_heads(const shared_job *sj, const shared_dec *d, double *energy,
                                double *resid)
{
	size_t es = fasvd_dtype_size(sj->o.dtype), hsz = (size_t)(sj->rows * sj->cols);
	const char *f = fasvd_tensor_data(sj->tf);
	double e = 0, res = 0;
	int64_t at = 0;
	for (int64_t g = 0; g < sj->n_groups; g++)
		for (int64_t i = 0; i < fasvd_heads_count(sj->groups[g]); i++, at++) {
			int rc;
			if ((rc = fasvd_heads_decode_f64(d->w, sj->cols, FASVD_LAYOUT_ROW_MAJOR,
			                                 sj->groups[g], i)) ||
			    (rc = fasvd_dtype_decode(d->f, sj->o.dtype, f + (size_t)(at * sj->fsz) * es,
			                             (size_t)sj->fsz)))
				return rc;
			shared_rebuild(sj, d);
			for (size_t q = 0; q < hsz; q++) {
				double dl = d->w[q] - d->rec[q];
				e += d->w[q] * d->w[q];
				res += dl * dl;
			}
		}
	*energy = e;
	*resid = res;
	return 0;
}

/* Measure with the stored (rounded) outputs: ‖W‖² and ‖W − Ŵ‖². */
static int shared_measure(const shared_job *sj, double *energy, double *resid)
{
	fasvd_ctx *ctx = sj->ctx;
	size_t hsz = (size_t)(sj->rows * sj->cols);
	int64_t msz = sj->in ? sj->cols : sj->rows;
	shared_dec d = {
		fasvd__alloc(ctx, hsz * sizeof(double), "a decoded head"),
		fasvd__alloc(ctx, hsz * sizeof(double), "a reconstructed head"),
		fasvd__alloc(ctx, (size_t)sj->bsz * sizeof(double), "decoded basis"),
		fasvd__alloc(ctx, (size_t)sj->fsz * sizeof(double), "decoded head factor"),
		fasvd__calloc(ctx, (size_t)msz, sizeof(double), "decoded mean"),
	};
	int rc;
	if (!d.w || !d.rec || !d.b || !d.f || !d.m)
		rc = FASVD_ENOMEM;
	else if (!(rc = fasvd_dtype_decode(d.b, sj->o.dtype, fasvd_tensor_data(sj->tb),
	                                   (size_t)sj->bsz)) &&
	         !(rc = sj->tm ? fasvd_dtype_decode(d.m, sj->o.dtype, fasvd_tensor_data(sj->tm),
	                                            (size_t)msz)
	                       : 0))
		rc = shared_measure_heads(sj, &d, energy, resid);
	fasvd__free(ctx, d.w);
	fasvd__free(ctx, d.rec);
	fasvd__free(ctx, d.b);
	fasvd__free(ctx, d.f);
	fasvd__free(ctx, d.m);
	return rc;
}

static void shared_report(const shared_job *sj, const fasvd_subspace *sp, double energy,
                          double resid, fasvd_factor_report *rep)
{
	int64_t n_spec = 0;
	const double *spec = fasvd_subspace_spectrum(&n_spec, sp);
	fasvd__spectra spectrum = {spec, 1, n_spec, n_spec};
	fasvd__report_shape(rep, sj->rows, sj->cols, sj->nh, sj->r, sj->p);
	fasvd__report_energy(rep, &spectrum, sj->r);
	rep->rel_error_sq = sj->o.verify ? (energy > 0 ? resid / energy : 0) : -1;
	rep->params_before = sj->nh * sj->rows * sj->cols;
	rep->params_after = sj->bsz + sj->nh * sj->fsz +
	                    (sj->so.center ? (sj->in ? sj->cols : sj->rows) : 0);
	rep->backend = FASVD_BACKEND_GESDD;
}

int fasvd_factor_shared(fasvd_tensor **basis, fasvd_tensor **factors, fasvd_tensor **mean,
                        fasvd_ctx *ctx, const fasvd_heads *const *groups, int64_t n_groups,
                        const fasvd_factor_opts *opts, const fasvd_factor_shared_opts *sopts,
                        fasvd_factor_report *report)
{
	static const char fn[] = "fasvd_factor_shared";
	shared_job sj = {.fn = fn, .groups = groups, .n_groups = n_groups};
	fasvd_factor_report rep;
	fasvd_factor_report_init(&rep, sizeof rep);
	fasvd_tensor *comb = NULL;
	fasvd_heads *hc = NULL;
	fasvd_subspace *sp = NULL;
	if (basis)
		*basis = NULL;
	if (factors)
		*factors = NULL;
	if (mean)
		*mean = NULL;
	if (!basis || !factors || !groups || n_groups < 1)
		return fasvd__error(FASVD_EINVAL, "%s: %s", fn,
		                    !basis     ? "basis is NULL"
		                    : !factors ? "factors is NULL"
		                    : !groups  ? "groups is NULL"
		                               : "n_groups must be >= 1");
	int rc = check_report(report, fn);
	if (rc || (rc = fasvd__factor_opts_load(&sj.o, opts, fn)))
		return rc;
	fasvd_factor_shared_opts_init(&sj.so, sizeof sj.so);
	if (sopts && (rc = fasvd__load_versioned(&sj.so, sopts, &shared_opts_ver, fn, "sopts")))
		return rc;
	if (sj.so.center && !mean)
		return fasvd__error(FASVD_EINVAL, "%s: sopts->center = 1 needs a mean output", fn);
	sj.ctx = fasvd__ctx(ctx);
	if ((rc = shared_shape(&sj)))
		return rc;
	sj.o.compute = resolve_compute(&sj.o, sj.ctx, heads_f64(groups, n_groups));
	if (fasvd__factor_canceled(&sj.o, NULL, NULL))
		return fasvd__canceled_error(fn, "shared subspace");
	/* Heads of one handle (no copy), or every group decoded into one stack. */
	if (n_groups > 1 && (rc = shared_stack(&sj, &comb, &hc)))
		goto out;
	sj.in = sj.so.side == FASVD_SUBSPACE_SHARED_INPUT;
	int64_t R = sj.in ? sj.nh * sj.rows : sj.rows, C = sj.in ? sj.cols : sj.nh * sj.cols;
	sj.p = R < C ? R : C;
	if ((rc = shared_subspace(&sj, hc ? hc : groups[0], &sp)))
		goto out;
	if (fasvd__factor_canceled(&sj.o, NULL, NULL)) {
		rc = fasvd__canceled_error(fn, "shared subspace");
		goto out;
	}
	sj.id = sj.r > 0 ? sj.r : 1;
	sj.bsz = sj.in ? sj.id * sj.cols : sj.rows * sj.id;
	sj.fsz = sj.in ? sj.rows * sj.id : sj.id * sj.cols;
	double energy = 0, resid = 0;
	if ((rc = shared_store(&sj, sp)) || (rc = shared_measure(&sj, &energy, &resid)))
		goto out;
	shared_report(&sj, sp, energy, resid, &rep);
	*basis = sj.tb;
	*factors = sj.tf;
	if (mean)
		*mean = sj.tm;
	sj.tb = sj.tf = sj.tm = NULL;
out:
	fasvd_subspace_free(sp);
	fasvd_heads_free(hc);
	fasvd_tensor_free(comb);
	fasvd_tensor_free(sj.tb);
	fasvd_tensor_free(sj.tf);
	fasvd_tensor_free(sj.tm);
	fasvd__report_out(report, &rep);
	return rc;
}
