/* Fault injection: every allocation and every LAPACK call of
 * a small analysis is made to fail, one at a time, and the library must
 * report the documented error, free everything and leave no output behind.
 *
 * Allocation failure: a counting allocator (tests/test-helpers.h) fails the
 * k-th allocation made through the context, for k = 1 .. N where N is the
 * number of allocations of an unfailing run. Each run must return 0 (a
 * documented graceful degradation, whose result must then equal the
 * unfailing run's) or FASVD_ENOMEM with a detail message; every successful
 * allocation must be freed; a failed fasvd_analyze must leave its output
 * folder as it found it, but for the spectra of the steps it completed
 * (resumable, named in the message).
 *
 * LAPACK failure: this program is linked with -Wl,--wrap=LAPACKE_<f>_work
 * for every LAPACK routine the library calls (grep lib/ for LAPACKE_), and
 * with -Wl,--wrap=<f>_ for the Fortran routines it calls directly (grep
 * lib/ for FASVD__FORTRAN), so
 * the library's calls reach the __wrap_ functions below; they count calls
 * and make the k-th call of one routine return an error: info > 0 (a
 * numerical failure: no convergence) or info < 0 (an illegal argument).
 * Positive info is only injected where LAPACK can return it: not into a
 * workspace query (lwork = -1), nor into geqrf / gelqf / orgqr / orglq /
 * laswp; for getrf, where it only reports an exactly zero pivot, the
 * routine still runs. Each run must return FASVD_ELAPACK or, for
 * a documented fallback (gesdd not converging -> gesvd; potrf finding a
 * Gram matrix not positive definite -> its eigendecomposition), succeed with the
 * unfailing run's result; and free everything.
 *
 * Everything runs with one worker thread, so the k-th allocation or call is
 * the same in every run; test_alloc_threads repeats the analyze sweep with
 * two workers to exercise error propagation out of worker threads.
 * test_wrap_list_complete fails when lib/ calls a LAPACKE_*_work routine
 * that is not wrapped here. Library bugs already reported are listed in
 * known_bugs[]: logged instead of failing, and a listed bug that no longer
 * shows up fails the test so that its entry goes (docs/hostile-inputs.md).
 */
#include "test-helpers.h"
#include "hostile/scratch.h"
#include "fixture.h"
#include "engine/engine_int.h"

#if defined(__GNUC__)
#define FASVD_TEST_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FASVD_TEST_PRINTF(f, a)
#endif

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <lapacke.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

/* ============================================================ LAPACK wraps */

/* The wrapped routines, in the order of the counters below. */
#define LAPACK_ROUTINES(X)                                                                   \
	X(sgesdd) X(dgesdd) X(sgesvd) X(dgesvd) X(sgesvdx) X(dgesvdx) X(sgeqrf) X(dgeqrf)      \
	X(sgelqf) X(dgelqf) X(sorgqr) X(dorgqr) X(sorglq) X(dorglq) X(dsyevd) X(dsyevd_2stage) \
	X(sgetrf) X(dgetrf) X(slaswp) X(dlaswp) X(dsterf) X(dsytrd_sy2sb) X(dsytrd_sb2st)  \
	X(dpotrf)

enum {
#define X(f) R_##f,
	LAPACK_ROUTINES(X)
#undef X
	N_ROUTINES
};

static const char *const routine_names[N_ROUTINES] = {
#define X(f) #f,
	LAPACK_ROUTINES(X)
#undef X
};

/* Routines that can return info > 0 (LAPACK's documentation): no
 * convergence (gesdd, gesvd, gesvdx, syevd) or an exactly singular U
 * (getrf, not a failure) or dsterf's no convergence, or a matrix that is
 * not positive definite (potrf: the Gram R factors then take the
 * eigendecomposition, a documented fallback). The QR / LQ
 * factorisations, their Q generation, laswp and the two-stage band
 * reduction (sy2sb, sb2st) only ever report illegal arguments (info < 0), so
 * only those are injected into them. */
static int positive_info_possible(int r)
{
	switch (r) {
	case R_sgesdd: case R_dgesdd: case R_sgesvd: case R_dgesvd: case R_sgesvdx:
	case R_dgesvdx: case R_dsyevd: case R_dsyevd_2stage: case R_sgetrf: case R_dgetrf:
	case R_dsterf: case R_dpotrf:
		return 1;
	default:
		return 0;
	}
}

static struct {
	long calls[N_ROUTINES];
	int routine;    /* routine to fail, -1: none */
	long k;         /* its k-th call */
	lapack_int info;
	int injected;   /* the fault fired */
	int skipped;    /* the k-th call was a workspace query (positive info n/a) */
} lf = {.routine = -1};

static void lapack_reset(int routine, long k, lapack_int info)
{
	memset(lf.calls, 0, sizeof lf.calls);
	lf.routine = routine;
	lf.k = k;
	lf.info = info;
	lf.injected = lf.skipped = 0;
}

/* Count the call; return 1 and set *info when this call is to fail.
 * Routines whose info > 0 is not a failure (getrf: an exactly zero pivot,
 * the factors are complete) are then still run: *info is only reported. */
static int lapack_fault(int r, int query, lapack_int *info)
{
	long n = __atomic_add_fetch(&lf.calls[r], 1, __ATOMIC_SEQ_CST);
	if (r != lf.routine || n != lf.k)
		return 0;
	if (query && lf.info > 0) {
		lf.skipped = 1;
		return 0;
	}
	lf.injected = 1;
	*info = lf.info;
	return 1;
}

#define WRAP_(f, query, run_on_positive, params, args)                                        \
	lapack_int __real_LAPACKE_##f##_work params;                                         \
	lapack_int __wrap_LAPACKE_##f##_work params;                                         \
	lapack_int __wrap_LAPACKE_##f##_work params                                          \
	{                                                                                     \
		lapack_int info_;                                                             \
		if (lapack_fault(R_##f, (query), &info_)) {                                   \
			if ((run_on_positive) && info_ > 0)                                    \
				(void)__real_LAPACKE_##f##_work args;                          \
			return info_;                                                         \
		}                                                                             \
		return __real_LAPACKE_##f##_work args;                                        \
	}
#define WRAP(f, query, params, args) WRAP_(f, query, 0, params, args)

#define GESDD(f, T)                                                                           \
	WRAP(f, lwork == -1,                                                                 \
	     (int layout, char jobz, lapack_int m, lapack_int n, T *a, lapack_int lda, T *s,   \
	      T *u, lapack_int ldu, T *vt, lapack_int ldvt, T *work, lapack_int lwork,         \
	      lapack_int *iwork),                                                              \
	     (layout, jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, iwork))
GESDD(sgesdd, float)
GESDD(dgesdd, double)

#define GESVD(f, T)                                                                           \
	WRAP(f, lwork == -1,                                                                 \
	     (int layout, char jobu, char jobvt, lapack_int m, lapack_int n, T *a,             \
	      lapack_int lda, T *s, T *u, lapack_int ldu, T *vt, lapack_int ldvt, T *work,     \
	      lapack_int lwork),                                                               \
	     (layout, jobu, jobvt, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork))
GESVD(sgesvd, float)
GESVD(dgesvd, double)

#define GESVDX(f, T)                                                                          \
	WRAP(f, lwork == -1,                                                                 \
	     (int layout, char jobu, char jobvt, char range, lapack_int m, lapack_int n, T *a, \
	      lapack_int lda, T vl, T vu, lapack_int il, lapack_int iu, lapack_int *ns, T *s,   \
	      T *u, lapack_int ldu, T *vt, lapack_int ldvt, T *work, lapack_int lwork,         \
	      lapack_int *iwork),                                                              \
	     (layout, jobu, jobvt, range, m, n, a, lda, vl, vu, il, iu, ns, s, u, ldu, vt,    \
	      ldvt, work, lwork, iwork))
GESVDX(sgesvdx, float)
GESVDX(dgesvdx, double)

#define GEQF(f, T)                                                                            \
	WRAP(f, lwork == -1,                                                                 \
	     (int layout, lapack_int m, lapack_int n, T *a, lapack_int lda, T *tau, T *work,   \
	      lapack_int lwork),                                                               \
	     (layout, m, n, a, lda, tau, work, lwork))
GEQF(sgeqrf, float)
GEQF(dgeqrf, double)
GEQF(sgelqf, float)
GEQF(dgelqf, double)

#define ORGQ(f, T)                                                                            \
	WRAP(f, lwork == -1,                                                                 \
	     (int layout, lapack_int m, lapack_int n, lapack_int k, T *a, lapack_int lda,      \
	      const T *tau, T *work, lapack_int lwork),                                        \
	     (layout, m, n, k, a, lda, tau, work, lwork))
ORGQ(sorgqr, float)
ORGQ(dorgqr, double)
ORGQ(sorglq, float)
ORGQ(dorglq, double)

#define SYEVD(f)                                                                              \
	WRAP(f, lwork == -1 || liwork == -1,                                                 \
	     (int layout, char jobz, char uplo, lapack_int n, double *a, lapack_int lda,       \
	      double *w, double *work, lapack_int lwork, lapack_int *iwork, lapack_int liwork), \
	     (layout, jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork))
SYEVD(dsyevd)
SYEVD(dsyevd_2stage)

#define GETRF(f, T)                                                                           \
	WRAP_(f, 0, 1, (int layout, lapack_int m, lapack_int n, T *a, lapack_int lda,          \
	                lapack_int *ipiv),                                                     \
	      (layout, m, n, a, lda, ipiv))
GETRF(sgetrf, float)
GETRF(dgetrf, double)

#define LASWP(f, T)                                                                           \
	WRAP(f, 0,                                                                            \
	     (int layout, lapack_int n, T *a, lapack_int lda, lapack_int k1, lapack_int k2,    \
	      const lapack_int *ipiv, lapack_int incx),                                        \
	     (layout, n, a, lda, k1, k2, ipiv, incx))
LASWP(slaswp, float)
LASWP(dlaswp, double)

WRAP(dsterf, 0, (lapack_int n, double *d, double *e), (n, d, e))
WRAP(dpotrf, 0, (int layout, char uplo, lapack_int n, double *a, lapack_int lda),
     (layout, uplo, n, a, lda))

/* The two-stage band reduction has no LAPACKE interface: the library calls
 * the Fortran routines (hidden string lengths last), wrapped here as
 * __wrap_<name>_ (tests/meson.build). */
#define FWRAP(f, query, params, args)                                                         \
	void __real_##f##_ params;                                                            \
	void __wrap_##f##_ params;                                                            \
	void __wrap_##f##_ params                                                             \
	{                                                                                     \
		if (!lapack_fault(R_##f, (query), info))                                      \
			__real_##f##_ args;                                                   \
	}
FWRAP(dsytrd_sy2sb, *lwork == -1,
      (const char *uplo, const lapack_int *n, const lapack_int *kd, double *a,
       const lapack_int *lda, double *ab, const lapack_int *ldab, double *tau, double *work,
       const lapack_int *lwork, lapack_int *info, size_t l_uplo),
      (uplo, n, kd, a, lda, ab, ldab, tau, work, lwork, info, l_uplo))
FWRAP(dsytrd_sb2st, *lhous == -1 || *lwork == -1,
      (const char *stage1, const char *vect, const char *uplo, const lapack_int *n,
       const lapack_int *kd, double *ab, const lapack_int *ldab, double *d, double *e,
       double *hous, const lapack_int *lhous, double *work, const lapack_int *lwork,
       lapack_int *info, size_t l_stage1, size_t l_vect, size_t l_uplo),
      (stage1, vect, uplo, n, kd, ab, ldab, d, e, hous, lhous, work, lwork, info, l_stage1,
       l_vect, l_uplo))

/* ================================================================ fixtures */

static char tmp_root[512];
static char dir_llama[600], dir_mla[600], out_dir[600];


/* Number of entries in a folder (0 when it is empty); their names into
 * names (space-separated) when names is not NULL. */
static int count_entries(const char *path, char *names, size_t n_names)
{
	DIR *d = opendir(path);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	if (names)
		names[0] = '\0';
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		n++;
		if (names)
			snprintf(names + strlen(names), n_names - strlen(names), " %s", e->d_name);
	}
	closedir(d);
	return n;
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmp_root, sizeof tmp_root, "%s/fasvd-faults-XXXXXX", scratch_base());
	if (!mkdtemp(tmp_root))
		return -1;
	snprintf(dir_llama, sizeof dir_llama, "%s/llama", tmp_root);
	snprintf(dir_mla, sizeof dir_mla, "%s/deepseek_v3", tmp_root);
	snprintf(out_dir, sizeof out_dir, "%s/out", tmp_root);
	if (mkdir(out_dir, 0755))
		return -1;
	fasvd_fixture_opts o;
	fasvd_fixture_opts_init(&o, sizeof o);
	o.n_layers = 1;
	o.n_heads = 4;
	o.n_kv_heads = 2;
	o.hidden = 32;
	o.head_dim = 8;
	o.intermediate = 16; /* one FFN tensor for the T.* path */
	if (fasvd_fixture_write(NULL, dir_llama, "llama", &o))
		return -1;
	/* MLA, FP8 with 4 x 4 blocks (partial edges), two shards. */
	fasvd_fixture_opts_init(&o, sizeof o);
	o.n_layers = 1;
	o.n_heads = 2;
	o.hidden = 32;
	o.q_lora_rank = 12;
	o.kv_lora_rank = 10;
	o.qk_nope_head_dim = 6;
	o.qk_rope_head_dim = 4;
	o.v_head_dim = 5;
	o.intermediate = -1;
	o.block_size = 4;
	o.n_shards = 2;
	if (fasvd_fixture_write(NULL, dir_mla, "deepseek_v3", &o))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (tmp_root[0])
		scratch_rmtree(tmp_root);
	return 0;
}

/* ============================================================== problems */

/* Problems found by a sweep: collected (the first of each kind in full) so
 * that one run reports every broken path, then failed at the end. */
static char problems[8192];
static int n_problems;
static const char *current_test;

/* Library bugs reported to their owners (docs/hostile-inputs.md, "Known
 * failures"): a problem of `test` whose text contains `pattern` is logged as
 * a known bug instead of failing the test; when a listed bug no longer shows
 * up, the test fails so that its entry is removed. */
static const struct {
	const char *test, *pattern, *bug;
} known_bugs[] = {
	/* none open; entries look like
	 * {"test_lapack_analyze", "text of the problem", "where the bug is"} */
	{NULL, NULL, NULL},
};
#define N_KNOWN_BUGS (sizeof known_bugs / sizeof known_bugs[0] - 1)
static int known_hits[N_KNOWN_BUGS + 1];

static void problem(const char *fmt, ...) FASVD_TEST_PRINTF(1, 2);
static void problem(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	for (size_t i = 0; known_bugs[i].test; i++)
		if (current_test && !strcmp(known_bugs[i].test, current_test) &&
		    strstr(line, known_bugs[i].pattern)) {
			if (!known_hits[i]++)
				print_message("# KNOWN BUG (%s): %s\n", known_bugs[i].bug, line);
			return;
		}
	n_problems++;
	print_message("# PROBLEM: %s\n", line);
	if (strlen(problems) + strlen(line) + 2 < sizeof problems) {
		strcat(problems, line);
		strcat(problems, "\n");
	}
}

static void problems_reset(const char *test)
{
	problems[0] = '\0';
	n_problems = 0;
	current_test = test;
	memset(known_hits, 0, sizeof known_hits);
}

static void problems_check(void)
{
	for (size_t i = 0; known_bugs[i].test; i++) {
		if (strcmp(known_bugs[i].test, current_test))
			continue;
		if (!known_hits[i]) {
			char line[512];
			snprintf(line, sizeof line,
			         "the known bug \"%s\" no longer shows up: remove its entry from "
			         "known_bugs[] in tests/test-faults.c",
			         known_bugs[i].pattern);
			print_message("# PROBLEM: %s\n", line);
			n_problems++;
			if (strlen(problems) + strlen(line) + 2 < sizeof problems) {
				strcat(problems, line);
				strcat(problems, "\n");
			}
		} else
			print_message("# known bug hit %d times: %s\n", known_hits[i], known_bugs[i].bug);
	}
	if (n_problems)
		fail_msg("%d problem(s):\n%s", n_problems, problems);
}

/* ============================================================ operations */

/* An operation under test: runs with ctx, frees everything it created
 * whatever happens, and returns its result code. `result`/`n_result`
 * (optional) receive numbers to compare against the unfailing run. */
typedef struct op op;
struct op {
	const char *name;
	int (*run)(const op *o, fasvd_ctx *ctx, double *result, int64_t *n_result);
	const char *dir;
	fasvd_compute compute;
	fasvd_backend backend;
	int flags;
	double tol; /* relative to the largest value, for degraded successes */
};

#define MAX_RESULT 65536

/* Spectra file `path` into result (every tensor's values, in name order). */
static void read_spectra(const char *path, double *result, int64_t *n)
{
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, path));
	*n = 0;
	for (int64_t i = 0; i < fasvd_st_count(st); i++) {
		const void *raw;
		uint64_t nb;
		assert_ok(fasvd_st_raw(&raw, &nb, st, fasvd_st_name(st, i)));
		assert_true(*n + (int64_t)(nb / 8) <= MAX_RESULT);
		memcpy(result + *n, raw, nb);
		*n += (int64_t)(nb / 8);
	}
	fasvd_st_free(st);
}

/* Is out the spectra file that the failure message `detail` says keeps the
 * completed steps (all of them, when the summaries failed)? */
static bool kept_partial(const char *out, const char *detail)
{
	char named[1300];
	snprintf(named, sizeof named, "%s keeps the", out);
	fasvd_st *st = NULL;
	if (!strstr(detail, named) || fasvd_st_open(&st, NULL, out))
		return false;
	const char *format = NULL;
	fasvd_st_metadata(&format, st, "format");
	bool ok = format && !strcmp(format, "fasvd.spectra");
	fasvd_st_free(st);
	return ok;
}

static int op_analyze(const op *o, fasvd_ctx *ctx, double *result, int64_t *n)
{
	char out[1200], json[1200], csv[1200];
	snprintf(out, sizeof out, "%s/spectra.safetensors", out_dir);
	snprintf(json, sizeof json, "%s/summary.json", out_dir);
	snprintf(csv, sizeof csv, "%s/summary.csv", out_dir);
	fasvd_analyze_opts ao;
	fasvd_analyze_opts_init(&ao, sizeof ao);
	ao.compute = o->compute;
	ao.json_path = json;
	ao.csv_path = csv;
	static const char *const globs[] = {"*mlp*"};
	if (o->flags & 1) {
		ao.tensor_globs = globs;
		ao.n_tensor_globs = 1;
	}
	int rc = fasvd_analyze(ctx, o->dir, out, &ao);
	if (rc) {
		/* No temporary, no summary left behind; the spectra file only
		 * with the steps completed before the failure, resumable and
		 * named in the message. */
		char left[512], detail[1100];
		snprintf(detail, sizeof detail, "%s", fasvd_last_error());
		if (kept_partial(out, detail))
			unlink(out);
		if (count_entries(out_dir, left, sizeof left) != 0) {
			scratch_rmtree(out_dir);
			mkdir(out_dir, 0755);
			problem("%s failed (%s: %s) but left files in its output folder:%s", o->name,
			        fasvd_strerror(rc), detail, left);
		}
		return rc;
	}
	if (result)
		read_spectra(out, result, n);
	unlink(out);
	unlink(json);
	unlink(csv);
	assert_int_equal(count_entries(out_dir, NULL, 0), 0);
	return 0;
}

static int op_st_open(const op *o, fasvd_ctx *ctx, double *result, int64_t *n)
{
	fasvd_st *st = NULL;
	fasvd_tensor *t = NULL;
	int rc = fasvd_st_open(&st, ctx, o->dir);
	if (rc) {
		assert_null(st);
		return rc;
	}
	assert_ok(fasvd_st_set_block_size(st, 4, 4));
	/* An FP8 weight whose scale_inv may sit in the other shard. */
	rc = fasvd_st_tensor(&t, st, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight", 0);
	if (!rc) {
		int64_t m = fasvd_tensor_rows(t), c = fasvd_tensor_cols(t);
		assert_true(m * c <= MAX_RESULT);
		double *buf = result ? result : malloc((size_t)(m * c) * sizeof *buf);
		assert_non_null(buf);
		rc = fasvd_tensor_to_f64(buf, c, FASVD_LAYOUT_ROW_MAJOR, t, 0);
		if (n)
			*n = m * c;
		if (!result)
			free(buf);
	} else {
		assert_null(t);
	}
	fasvd_tensor_free(t);
	fasvd_st_free(st);
	return rc;
}

static int op_model_open(const op *o, fasvd_ctx *ctx, double *result, int64_t *n)
{
	(void)result;
	(void)n;
	fasvd_model *m = NULL;
	int rc = fasvd_model_open(&m, ctx, o->dir, FASVD_MODEL_REQUIRE_ALL);
	if (rc) {
		assert_null(m);
		return rc;
	}
	fasvd_model_layer *l = NULL;
	rc = fasvd_model_layer_open(&l, m, 0, NULL);
	if (rc)
		assert_null(l);
	fasvd_model_layer_free(l);
	fasvd_model_free(m);
	return rc;
}

/* fasvd_layer_spectra with ctx, on a layer opened with the default context
 * (so that only the engine's allocations are counted and failed). */
static int op_layer_spectra(const op *o, fasvd_ctx *ctx, double *result, int64_t *n)
{
	fasvd_model *m = NULL;
	fasvd_model_layer *l = NULL;
	assert_ok(fasvd_model_open(&m, NULL, o->dir, 0));
	assert_ok(fasvd_model_layer_open(&l, m, 0, NULL));
	fasvd_layer_opts lo;
	fasvd_layer_opts_init(&lo, sizeof lo);
	lo.compute = o->compute;
	fasvd_spectra *s = NULL;
	int rc = fasvd_layer_spectra(&s, ctx, fasvd_model_layer_desc(l), &lo);
	if (rc) {
		assert_null(s);
	} else if (result) {
		*n = 0;
		for (int64_t i = 0; i < fasvd_spectra_count(s); i++) {
			int64_t r, c;
			assert_ok(fasvd_spectra_shape(&r, &c, NULL, NULL, s, i));
			assert_true(*n + r * c <= MAX_RESULT);
			memcpy(result + *n, fasvd_spectra_data(s, i), (size_t)(r * c) * sizeof(double));
			*n += r * c;
		}
	}
	fasvd_spectra_free(s);
	fasvd_model_layer_free(l);
	fasvd_model_free(m);
	return rc;
}

/* fasvd_layer_spectra with the eigenvalues of every Gram stack by the
 * two-stage band path (dsytrd_sy2sb + dsytrd_sb2st + dsterf): its order
 * threshold, for a single-threaded worker, lowered to 1. */
static int op_layer_band(const op *o, fasvd_ctx *ctx, double *result, int64_t *n)
{
	int64_t saved = fasvd__stack_2stage_min;
	fasvd__stack_2stage_min = 1;
	int rc = op_layer_spectra(o, ctx, result, n);
	fasvd__stack_2stage_min = saved;
	return rc;
}

/* fasvd_svdvals of one tensor with a given backend and precision. */
static int op_svdvals(const op *o, fasvd_ctx *ctx, double *result, int64_t *n)
{
	fasvd_st *st = NULL;
	fasvd_tensor *t = NULL;
	char path[1200];
	snprintf(path, sizeof path, "%s/model.safetensors", o->dir);
	assert_ok(fasvd_st_open(&st, NULL, path));
	assert_ok(fasvd_st_tensor(&t, st, "model.layers.0.self_attn.o_proj.weight", 0));
	fasvd_svd_opts so;
	fasvd_svd_opts_init(&so, sizeof so);
	so.compute = o->compute;
	so.backend = o->backend;
	if (o->backend == FASVD_BACKEND_GESVDX || o->backend == FASVD_BACKEND_RANDOMIZED)
		so.rank = 5;
	double s[64];
	int64_t k = fasvd_tensor_rows(t) < fasvd_tensor_cols(t) ? fasvd_tensor_rows(t)
	                                                         : fasvd_tensor_cols(t);
	if (so.rank)
		k = so.rank;
	fasvd_svd_report rep;
	fasvd_svd_report_init(&rep, sizeof rep);
	int rc = fasvd_svdvals(s, 64, ctx, t, &so, &rep);
	if (!rc && result) {
		memcpy(result, s, (size_t)k * sizeof *s);
		*n = k;
	}
	fasvd_tensor_free(t);
	fasvd_st_free(st);
	return rc;
}

/* ================================================================= sweeps */

static double ref[MAX_RESULT], got[MAX_RESULT];

static void compare(const op *o, const char *what, int64_t n_ref, int64_t n_got)
{
	if (n_ref != n_got) {
		problem("%s (%s): degraded success with %lld values, the unfailing run had %lld",
		        o->name, what, (long long)n_got, (long long)n_ref);
		return;
	}
	double scale = 0;
	for (int64_t i = 0; i < n_ref; i++)
		scale = fmax(scale, fabs(ref[i]));
	for (int64_t i = 0; i < n_ref; i++)
		if (!(fabs(got[i] - ref[i]) <= o->tol * scale + 1e-300)) {
			problem("%s (%s): degraded success differs at value %lld: %.17g vs %.17g",
			        o->name, what, (long long)i, got[i], ref[i]);
			return;
		}
}

static fasvd_ctx *counting_ctx(test_alloc_state *as, int threads)
{
	fasvd_allocator a = {test_alloc_fn, test_free_fn, as};
	fasvd_ctx *ctx = NULL;
	assert_ok(fasvd_ctx_new(&ctx, &a));
	assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, threads));
	return ctx;
}

/* The unfailing run: its result into ref, its allocation count returned. */
static long baseline(const op *o, int threads, int64_t *n_ref)
{
	test_alloc_state as = {0};
	fasvd_ctx *ctx = counting_ctx(&as, threads);
	long before = as.allocs;
	lapack_reset(-1, 0, 0);
	int rc = o->run(o, ctx, ref, n_ref);
	if (rc)
		fail_msg("%s: the unfailing run failed: %s", o->name, fasvd_last_error());
	long n = as.allocs - before;
	fasvd_ctx_free(ctx);
	assert_int_equal(as.allocs, as.frees);
	return n;
}

/* Fail allocation k (1 .. N, every `stride`-th) of o. */
static void sweep_alloc(const op *o, int threads, long stride)
{
	int64_t n_ref = 0;
	long total = baseline(o, threads, &n_ref);
	long nomem = 0, degraded = 0;
	for (long k = 1; k <= total; k += stride) {
		test_alloc_state as = {0};
		fasvd_ctx *ctx = counting_ctx(&as, threads);
		as.fail_at = as.allocs + k;
		fasvd_clear_error();
		int64_t n_got = 0;
		int rc = o->run(o, ctx, got, &n_got);
		char detail[1024];
		snprintf(detail, sizeof detail, "%s", fasvd_last_error());
		int failed_once = as.allocs >= as.fail_at;
		fasvd_ctx_free(ctx);
		/* The failed allocation is counted in allocs but returned NULL. */
		if (as.frees != as.allocs - failed_once)
			problem("%s: allocation %ld of %ld failed -> %s; %ld allocations, %ld frees",
			        o->name, k, total, rc ? fasvd_strerror(rc) : "success",
			        as.allocs - failed_once, as.frees);
		if (rc == 0) {
			char what[64];
			snprintf(what, sizeof what, "allocation %ld failed", k);
			if (n_ref)
				compare(o, what, n_ref, n_got);
			degraded += failed_once;
			continue;
		}
		if (rc != FASVD_ENOMEM)
			problem("%s: allocation %ld of %ld failed -> %s (%d), expected FASVD_ENOMEM: %s",
			        o->name, k, total, fasvd_strerror(rc), rc, detail);
		else if (!detail[0])
			problem("%s: allocation %ld: FASVD_ENOMEM without a detail message", o->name, k);
		nomem++;
	}
	print_message("# %s (%d thread%s): %ld allocations; failing each gave ENOMEM %ld times, a "
	              "correct degraded result %ld times\n",
	              o->name, threads, threads > 1 ? "s" : "", total, nomem, degraded);
}

#define MAX_K 48 /* calls per routine failed (the first MAX_K, then every 5th) */

/* Fail call k of every LAPACK routine o uses, with info > 0 and info < 0. */
static void sweep_lapack(const op *o)
{
	int64_t n_ref = 0;
	baseline(o, 1, &n_ref);
	long calls[N_ROUTINES];
	memcpy(calls, lf.calls, sizeof calls);
	char used[512] = "";
	long runs = 0, elapack = 0, fallback = 0;
	for (int r = 0; r < N_ROUTINES; r++) {
		if (!calls[r])
			continue;
		snprintf(used + strlen(used), sizeof used - strlen(used), " %s x%ld",
		         routine_names[r], calls[r]);
		for (long k = 1; k <= calls[r]; k += k < MAX_K ? 1 : 5) {
			static const lapack_int infos[] = {1, -4};
			for (int v = 0; v < 2; v++) {
				if (infos[v] > 0 && !positive_info_possible(r))
					continue;
				test_alloc_state as = {0};
				fasvd_ctx *ctx = counting_ctx(&as, 1);
				lapack_reset(r, k, infos[v]);
				fasvd_clear_error();
				int64_t n_got = 0;
				int rc = o->run(o, ctx, got, &n_got);
				char detail[1024];
				snprintf(detail, sizeof detail, "%s", fasvd_last_error());
				fasvd_ctx_free(ctx);
				int injected = lf.injected;
				lapack_reset(-1, 0, 0);
				if (as.allocs != as.frees)
					problem("%s: %s call %ld -> info %d: %ld allocations, %ld frees",
					        o->name, routine_names[r], k, (int)infos[v], as.allocs,
					        as.frees);
				if (!injected)
					continue; /* a query: positive info does not apply */
				runs++;
				if (rc == 0) {
					char what[96];
					snprintf(what, sizeof what, "%s call %ld returned info %d",
					         routine_names[r], k, (int)infos[v]);
					compare(o, what, n_ref, n_got);
					fallback++;
					continue;
				}
				if (rc != FASVD_ELAPACK)
					problem("%s: %s call %ld -> info %d gave %s (%d), expected "
					        "FASVD_ELAPACK: %s",
					        o->name, routine_names[r], k, (int)infos[v],
					        fasvd_strerror(rc), rc, detail);
				else if (!detail[0])
					problem("%s: FASVD_ELAPACK without a detail message", o->name);
				else
					elapack++;
			}
		}
	}
	print_message("# %s: LAPACK calls:%s; %ld failures injected: ELAPACK %ld, correct "
	              "fallback %ld\n",
	              o->name, used[0] ? used : " none", runs, elapack, fallback);
}

/* ================================================================== tests */

static void test_alloc_st_open(void **state)
{
	(void)state;
	problems_reset(__func__);
	op o = {"fasvd_st_open+st_tensor (FP8, sharded)", op_st_open, dir_mla, 0, 0, 0, 0};
	sweep_alloc(&o, 1, 1);
	problems_check();
}

static void test_alloc_model_open(void **state)
{
	(void)state;
	problems_reset(__func__);
	op a = {"fasvd_model_open+layer_open (llama)", op_model_open, dir_llama, 0, 0, 0, 0};
	op b = {"fasvd_model_open+layer_open (deepseek_v3)", op_model_open, dir_mla, 0, 0, 0, 0};
	sweep_alloc(&a, 1, 1);
	sweep_alloc(&b, 1, 1);
	problems_check();
}

static void test_alloc_layer_spectra(void **state)
{
	(void)state;
	problems_reset(__func__);
	op a = {"fasvd_layer_spectra (llama, f32)", op_layer_spectra, dir_llama,
	        FASVD_COMPUTE_F32, 0, 0, 1e-5};
	op b = {"fasvd_layer_spectra (deepseek_v3, f64)", op_layer_spectra, dir_mla,
	        FASVD_COMPUTE_F64, 0, 0, 1e-10};
	sweep_alloc(&a, 1, 1);
	sweep_alloc(&b, 1, 1);
	problems_check();
}

static void test_alloc_analyze(void **state)
{
	(void)state;
	problems_reset(__func__);
	op a = {"fasvd_analyze (llama, f32, FFN glob, json, csv)", op_analyze, dir_llama,
	        FASVD_COMPUTE_F32, 0, 1, 1e-5};
	op b = {"fasvd_analyze (deepseek_v3 FP8, f32)", op_analyze, dir_mla, FASVD_COMPUTE_F32,
	        0, 0, 1e-5};
	sweep_alloc(&a, 1, 1);
	sweep_alloc(&b, 1, 1);
	problems_check();
}

static void test_alloc_threads(void **state)
{
	(void)state;
	problems_reset(__func__);
	op a = {"fasvd_analyze (llama, f64)", op_analyze, dir_llama, FASVD_COMPUTE_F64, 0, 0,
	        1e-10};
	sweep_alloc(&a, 2, 3);
	problems_check();
}

static void test_alloc_svdvals(void **state)
{
	(void)state;
	problems_reset(__func__);
	static const fasvd_backend backends[] = {FASVD_BACKEND_GESDD, FASVD_BACKEND_GESVD,
	                                         FASVD_BACKEND_GESVDX, FASVD_BACKEND_GRAM,
	                                         FASVD_BACKEND_RANDOMIZED};
	for (size_t b = 0; b < sizeof backends / sizeof backends[0]; b++)
		for (int c = 1; c <= 2; c++) {
			char name[96];
			snprintf(name, sizeof name, "fasvd_svdvals (%s, %s)",
			         fasvd_backend_name(backends[b]), c == 1 ? "f32" : "f64");
			op o = {name, op_svdvals, dir_llama, (fasvd_compute)c, backends[b], 0,
			        c == 1 ? 1e-5 : 1e-12};
			sweep_alloc(&o, 1, 1);
		}
	problems_check();
}

static void test_lapack_svdvals(void **state)
{
	(void)state;
	problems_reset(__func__);
	static const fasvd_backend backends[] = {FASVD_BACKEND_GESDD, FASVD_BACKEND_GESVD,
	                                         FASVD_BACKEND_GESVDX, FASVD_BACKEND_GRAM,
	                                         FASVD_BACKEND_RANDOMIZED, FASVD_BACKEND_AUTO};
	for (size_t b = 0; b < sizeof backends / sizeof backends[0]; b++)
		for (int c = 1; c <= 2; c++) {
			char name[96];
			snprintf(name, sizeof name, "fasvd_svdvals (%s, %s)",
			         fasvd_backend_name(backends[b]), c == 1 ? "f32" : "f64");
			op o = {name, op_svdvals, dir_llama, (fasvd_compute)c, backends[b], 0,
			        c == 1 ? 1e-4 : 1e-10};
			sweep_lapack(&o);
		}
	problems_check();
}

static void test_lapack_analyze(void **state)
{
	(void)state;
	problems_reset(__func__);
	op ops[] = {
		{"fasvd_analyze (llama, f32)", op_analyze, dir_llama, FASVD_COMPUTE_F32, 0, 1, 1e-4},
		{"fasvd_analyze (llama, f64)", op_analyze, dir_llama, FASVD_COMPUTE_F64, 0, 1, 1e-10},
		{"fasvd_analyze (deepseek_v3, f32)", op_analyze, dir_mla, FASVD_COMPUTE_F32, 0, 0,
		 1e-4},
		{"fasvd_analyze (deepseek_v3, f64)", op_analyze, dir_mla, FASVD_COMPUTE_F64, 0, 0,
		 1e-10},
	};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		sweep_lapack(&ops[i]);
	problems_check();
}

/* The two-stage band eigensolver of the big stacks: every allocation and
 * every LAPACK call of it failed in turn. */
static void test_band_eigensolver(void **state)
{
	(void)state;
	problems_reset(__func__);
	op o = {"fasvd_layer_spectra (llama, f32, two-stage band eigensolver)", op_layer_band,
	        dir_llama, FASVD_COMPUTE_F32, 0, 0, 1e-4};
	int64_t n_ref = 0;
	baseline(&o, 1, &n_ref);
	if (!lf.calls[R_dsytrd_sy2sb] || !lf.calls[R_dsytrd_sb2st] || !lf.calls[R_dsterf])
		problem("%s: the band path was not used", o.name);
	sweep_alloc(&o, 1, 1);
	sweep_lapack(&o);
	problems_check();
}

/* The documented fallback: gesdd not converging (info > 0) -> gesvd. */
static void test_gesdd_fallback(void **state)
{
	(void)state;
	for (int c = 1; c <= 2; c++) {
		fasvd_st *st = NULL;
		fasvd_tensor *t = NULL;
		char path[1200];
		snprintf(path, sizeof path, "%s/model.safetensors", dir_llama);
		assert_ok(fasvd_st_open(&st, NULL, path));
		assert_ok(fasvd_st_tensor(&t, st, "model.layers.0.self_attn.q_proj.weight", 0));
		fasvd_svd_opts so;
		fasvd_svd_opts_init(&so, sizeof so);
		so.compute = (fasvd_compute)c;
		so.backend = FASVD_BACKEND_GESDD;
		double s0[64], s1[64];
		fasvd_svd_report rep;
		fasvd_svd_report_init(&rep, sizeof rep);
		lapack_reset(-1, 0, 0);
		assert_ok(fasvd_svdvals(s0, 64, NULL, t, &so, &rep));
		assert_int_equal(rep.fallback, 0);
		/* the second sgesdd/dgesdd call is the computation (the first, the query) */
		lapack_reset(c == 1 ? R_sgesdd : R_dgesdd, 2, 7);
		fasvd_svd_report_init(&rep, sizeof rep);
		assert_ok(fasvd_svdvals(s1, 64, NULL, t, &so, &rep));
		assert_true(lf.injected);
		assert_int_equal(rep.fallback, 1);
		assert_true(lf.calls[c == 1 ? R_sgesvd : R_dgesvd] >= 1);
		lapack_reset(-1, 0, 0);
		for (int i = 0; i < 32; i++)
			assert_close(s1[i], s0[i], c == 1 ? 1e-5 : 1e-12, 1e-6 * s0[0]);
		fasvd_tensor_free(t);
		fasvd_st_free(st);
	}
}

/* The identifier at q (letters, digits, '_') into name; its length. */
static size_t ident_at(const char *q, char *name, size_t size)
{
	size_t n = 0;
	while (n + 1 < size && (isalnum((unsigned char)q[n]) || q[n] == '_'))
		n++;
	memcpy(name, q, n);
	name[n] = '\0';
	return n;
}

static void check_wrapped(const char *shown, const char *name, const char *call)
{
	int found = 0;
	for (int r = 0; r < N_ROUTINES; r++)
		found |= !strcmp(routine_names[r], name);
	if (!found)
		fail_msg("%s calls %s, which tests/test-faults.c does not wrap: add %s to "
		         "LAPACK_ROUTINES and to the --wrap list in tests/meson.build",
		         shown, call, name);
}

/* Every LAPACKE_*_work routine in path calls, and every Fortran LAPACK
 * routine it calls through FASVD__FORTRAN(name), is wrapped (else its
 * failures go untested). */
static void check_wrapped_calls(const char *path, const char *shown)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[4096];
	while (fgets(line, sizeof line, f)) {
		char name[64], call[96];
		for (char *p = strstr(line, "LAPACKE_"); p; p = strstr(p + 8, "LAPACKE_")) {
			size_t n = ident_at(p + 8, name, sizeof name);
			if (n < 6 || strcmp(name + n - 5, "_work"))
				continue; /* LAPACK_COL_MAJOR, lapack_int ... */
			name[n - 5] = '\0';
			snprintf(call, sizeof call, "LAPACKE_%s_work", name);
			check_wrapped(shown, name, call);
		}
		if (strstr(line, "#define"))
			continue; /* the macro itself */
		for (char *p = strstr(line, "FASVD__FORTRAN("); p; p = strstr(p + 15, "FASVD__FORTRAN(")) {
			ident_at(p + 15, name, sizeof name);
			snprintf(call, sizeof call, "the Fortran %s_", name);
			check_wrapped(shown, name, call);
		}
	}
	fclose(f);
}

/* Scan the .c files of lib/ and of its layer folders (one level down). */
static int scan_lib_dir(const char *dir, const char *rel, int depth)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	int files = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char path[2048], shown[512];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		snprintf(shown, sizeof shown, "%s%s", rel, e->d_name);
		struct stat sb;
		if (stat(path, &sb) != 0)
			continue;
		size_t len = strlen(e->d_name);
		if (S_ISDIR(sb.st_mode) && depth == 0) {
			char sub[600];
			snprintf(sub, sizeof sub, "%s/", shown);
			files += scan_lib_dir(path, sub, 1);
		} else if (S_ISREG(sb.st_mode) && len >= 3 && !strcmp(e->d_name + len - 2, ".c")) {
			check_wrapped_calls(path, shown);
			files++;
		}
	}
	closedir(d);
	return files;
}

/* Every LAPACKE_*_work routine lib/ calls is wrapped: scan the sources named
 * by FASVD_SOURCE_ROOT. */
static void test_wrap_list_complete(void **state)
{
	(void)state;
	const char *root = getenv("FASVD_SOURCE_ROOT");
	if (!root) {
		print_message("# FASVD_SOURCE_ROOT not set (run through meson test): not checked\n");
		return;
	}
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/lib", root);
	assert_true(scan_lib_dir(dir, "lib/", 0) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_st_open),
		cmocka_unit_test(test_alloc_model_open),
		cmocka_unit_test(test_alloc_layer_spectra),
		cmocka_unit_test(test_alloc_analyze),
		cmocka_unit_test(test_alloc_threads),
		cmocka_unit_test(test_alloc_svdvals),
		cmocka_unit_test(test_lapack_svdvals),
		cmocka_unit_test(test_lapack_analyze),
		cmocka_unit_test(test_band_eigensolver),
		cmocka_unit_test(test_gesdd_fallback),
		cmocka_unit_test(test_wrap_list_complete),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
