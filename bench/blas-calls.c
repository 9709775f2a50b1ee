/* blas-calls — times the BLAS and LAPACK calls that dominate libfasvd's
 * analysis of a DeepSeek-V3 layer, on whatever BLAS the process loads
 * (bench/blas_compare.sh runs it on each; bench/README.md, "Choosing the
 * BLAS").
 *
 * It links only the generic libblas.so.3 / liblapack.so.3 (the Fortran
 * interfaces, never libfasvd nor OpenBLAS's own symbols), so that the library
 * path or the distribution's alternatives choose the implementation at run
 * time: OpenBLAS, BLIS under the reference LAPACK, FlexiBLAS, the reference
 * BLAS. The calls, in double precision as the engine makes them:
 *   syrk      dsyrk, lower, no transpose: the Gram matrix (order min(N, K))
 *             of an N x K stack (the engine's 16384 x 7168 stack.O / stack.VO
 *             at 128 heads);
 *   syevd     dsyevd, values only, lower, of that Gram matrix;
 *   syevd2    dsyevd_2stage, values only, lower, of the same matrix;
 *   heads     HEADS heads, each: the Gram matrix of a 128 x K block (dsyrk),
 *             its eigenvectors (dsyevd, 128) — the head's factor — the product
 *             of two heads' factors (dgemm, 128) and its singular values
 *             (dgesdd, values only, 128 x 128);
 *   heads-qr  the same with the factor from a Householder QR of the K x 128
 *             block (dgeqrf) instead of the Gram matrix (f64 compute).
 * Each call runs with the BLAS's threads set to --threads (heads one after
 * the other). Output: one "blas: ..." line describing the BLAS that runs,
 * then one "time <call> <seconds>" line per call (best of --reps).
 *
 * Usage: blas-calls [--n N] [--k K] [--heads H] [--threads T] [--reps R]
 *                   [--calls syrk,syevd,syevd2,heads,heads-qr]
 */
#include <dlfcn.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { HEAD_DIM = 128 };

/* Fortran BLAS / LAPACK (32-bit integers, hidden string lengths last). */
void dsyrk_(const char *uplo, const char *trans, const int *n, const int *k, const double *alpha,
            const double *a, const int *lda, const double *beta, double *c, const int *ldc,
            size_t, size_t);
void dgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k,
            const double *alpha, const double *a, const int *lda, const double *b, const int *ldb,
            const double *beta, double *c, const int *ldc, size_t, size_t);
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
             double *w, double *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t, size_t);
void dsyevd_2stage_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t, size_t);
void dgeqrf_(const int *m, const int *n, double *a, const int *lda, double *tau, double *work,
             const int *lwork, int *info);
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work,
             const int *lwork, int *iwork, int *info, size_t);

typedef void (*eig_fn)(const char *, const char *, const int *, double *, const int *, double *,
                       double *, const int *, int *, const int *, int *, size_t, size_t);

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "blas-calls: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

static void fill(double *x, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t z = (seed += 0x9E3779B97F4A7C15ULL);
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
		x[i] = (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0 - 0.5;
	}
}

/* ------------------------------------------------------- which BLAS */

/* The file that defines `sym`, or "?". */
static const char *file_of(const char *sym)
{
	Dl_info di;
	void *p = dlsym(RTLD_DEFAULT, sym);
	if (!p || !dladdr(p, &di) || !di.dli_fname)
		return "?";
	static char buf[4][4096];
	static int next;
	char *b = buf[next++ % 4];
	return realpath(di.dli_fname, b) ? b : di.dli_fname;
}

/* Set the BLAS's threads through whichever control it exports (the script
 * also sets OPENBLAS_NUM_THREADS, BLIS_NUM_THREADS and OMP_NUM_THREADS). */
static void set_threads(int n)
{
	static const char *const setters[] = {"flexiblas_set_num_threads",
	                                      "openblas_set_num_threads",
	                                      "bli_thread_set_num_threads"};
	for (size_t i = 0; i < sizeof setters / sizeof setters[0]; i++) {
		void (*set)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, setters[i]);
		if (set)
			set(n);
	}
}

/* BLIS's version and the kernel configuration it chooses on this CPU, from
 * the full libblis (the libblas.so.3 BLIS builds exports BLAS symbols only). */
static void print_blis(void)
{
	void *h = dlopen("libblis.so.4", RTLD_LAZY | RTLD_LOCAL);
	if (!h)
		return;
	const char *(*ver)(void) = (const char *(*)(void))dlsym(h, "bli_info_get_version_str");
	int (*arch)(void) = (int (*)(void))dlsym(h, "bli_arch_query_id");
	const char *(*name)(int) = (const char *(*)(int))dlsym(h, "bli_arch_string");
	printf(" BLIS %s arch %s", ver ? ver() : "?", arch && name ? name(arch()) : "?");
}

static void print_blas(int threads)
{
	char *(*core)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
	char *(*config)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_config");
	int (*backend)(char *, size_t) =
	        (int (*)(char *, size_t))dlsym(RTLD_DEFAULT, "flexiblas_current_backend");
	printf("blas: dsyrk from %s, dsyevd from %s, %d thread%s;", file_of("dsyrk_"),
	       file_of("dsyevd_"), threads, threads == 1 ? "" : "s");
	if (backend) {
		char name[128] = "";
		backend(name, sizeof name);
		printf(" FlexiBLAS backend %s", name);
	}
	if (config && core)
		printf(" %s, core %s", config(), core());
	if (strstr(file_of("dsyrk_"), "blis"))
		print_blis();
	printf("\n");
}

/* ------------------------------------------------------------ calls */

/* Workspace-queried values-only eigensolve of the order-m matrix g. */
static void eig(eig_fn fn, const char *jobz, int m, double *g, double *w)
{
	int lwork = -1, liwork = -1, iw, info = 0;
	double q;
	fn(jobz, "L", &m, g, &m, w, &q, &lwork, &iw, &liwork, &info, 1, 1);
	lwork = (int)q + 1;
	liwork = iw;
	double *work = xmalloc((size_t)lwork * 8);
	int *iwork = xmalloc((size_t)liwork * sizeof(int));
	fn(jobz, "L", &m, g, &m, w, work, &lwork, iwork, &liwork, &info, 1, 1);
	if (info) {
		fprintf(stderr, "blas-calls: eigensolver info %d\n", info);
		exit(1);
	}
	free(work);
	free(iwork);
}

static void svdvals(int m, double *a, double *s)
{
	int lwork = -1, info = 0, one = 1;
	double q;
	int *iwork = xmalloc((size_t)(8 * m) * sizeof(int));
	dgesdd_("N", &m, &m, a, &m, s, NULL, &one, NULL, &one, &q, &lwork, iwork, &info, 1);
	lwork = (int)q + 1;
	double *work = xmalloc((size_t)lwork * 8);
	dgesdd_("N", &m, &m, a, &m, s, NULL, &one, NULL, &one, work, &lwork, iwork, &info, 1);
	if (info) {
		fprintf(stderr, "blas-calls: dgesdd info %d\n", info);
		exit(1);
	}
	free(work);
	free(iwork);
}

/* Upper triangle of the QR of the k x 128 block b (destroyed) into r. */
static void qr_factor(int k, double *b, double *r)
{
	int n = HEAD_DIM, lwork = -1, info = 0;
	double q, tau[HEAD_DIM];
	dgeqrf_(&k, &n, b, &k, tau, &q, &lwork, &info);
	lwork = (int)q + 1;
	double *work = xmalloc((size_t)lwork * 8);
	dgeqrf_(&k, &n, b, &k, tau, work, &lwork, &info);
	free(work);
	for (int j = 0; j < n; j++)
		for (int i = 0; i < n; i++)
			r[(size_t)j * n + i] = i <= j ? b[(size_t)j * k + i] : 0;
}

/* The per-head work of `heads` heads of width k: each head's factor (from
 * its Gram matrix, or from a QR when `qr`), then the singular values of the
 * product of this head's factor with the previous one's. */
static void heads_work(int heads, int k, bool qr)
{
	const int n = HEAD_DIM;
	const double one = 1, zero = 0;
	double *block = xmalloc((size_t)n * (size_t)k * 8), *f[2], *p = xmalloc(n * n * 8);
	double w[HEAD_DIM];
	f[0] = xmalloc(n * n * 8);
	f[1] = xmalloc(n * n * 8);
	fill(f[1], (size_t)n * n, 7);
	for (int h = 0; h < heads; h++) {
		double *cur = f[h & 1], *prev = f[!(h & 1)];
		fill(block, (size_t)n * (size_t)k, 100 + (uint64_t)h);
		if (qr) {
			qr_factor(k, block, cur);
		} else {
			dsyrk_("L", "N", &n, &k, &one, block, &n, &zero, cur, &n, 1, 1);
			eig(dsyevd_, "V", n, cur, w);
		}
		dgemm_("N", "T", &n, &n, &n, &one, cur, &n, prev, &n, &zero, p, &n, 1, 1);
		svdvals(n, p, w);
	}
	free(block);
	free(p);
	free(f[0]);
	free(f[1]);
}

/* --------------------------------------------------------------- main */

typedef struct {
	int n, k, heads, threads, reps;
	const char *calls;
} opts;

static bool wanted(const opts *o, const char *call)
{
	size_t len = strlen(call);
	for (const char *p = o->calls; (p = strstr(p, call)); p += len)
		if ((p == o->calls || p[-1] == ',') && (p[len] == ',' || p[len] == '\0'))
			return true;
	return false;
}

static void report(const char *call, double best)
{
	printf("time %-8s %10.4f\n", call, best);
	fflush(stdout);
}

/* The big problem: Gram matrix of the N x K stack, then both eigensolvers
 * on copies of it. */
static void big_calls(const opts *o)
{
	int m = o->n < o->k ? o->n : o->k, k = o->n < o->k ? o->k : o->n;
	const double one = 1, zero = 0;
	double *x = xmalloc((size_t)m * (size_t)k * 8), *g = xmalloc((size_t)m * (size_t)m * 8);
	double *a = xmalloc((size_t)m * (size_t)m * 8), *w = xmalloc((size_t)m * 8);
	fill(x, (size_t)m * (size_t)k, 1);
	double best = INFINITY;
	for (int r = 0; r < o->reps; r++) {
		double t0 = now();
		dsyrk_("L", "N", &m, &k, &one, x, &m, &zero, g, &m, 1, 1);
		best = fmin(best, now() - t0);
	}
	if (wanted(o, "syrk"))
		report("syrk", best);
	free(x);
	static const struct { const char *name; eig_fn fn; } solvers[] = {
		{"syevd", dsyevd_}, {"syevd2", dsyevd_2stage_}};
	for (size_t i = 0; i < 2; i++) {
		if (!wanted(o, solvers[i].name))
			continue;
		best = INFINITY;
		for (int r = 0; r < o->reps; r++) {
			memcpy(a, g, (size_t)m * (size_t)m * 8);
			double t0 = now();
			eig(solvers[i].fn, "N", m, a, w);
			best = fmin(best, now() - t0);
		}
		report(solvers[i].name, best);
	}
	free(g);
	free(a);
	free(w);
}

static int parse(opts *o, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int *dst = !strcmp(a, "--n")         ? &o->n
		           : !strcmp(a, "--k")       ? &o->k
		           : !strcmp(a, "--heads")   ? &o->heads
		           : !strcmp(a, "--threads") ? &o->threads
		           : !strcmp(a, "--reps")    ? &o->reps
		                                     : NULL;
		if (!v || (!dst && strcmp(a, "--calls")))
			return -1;
		if (dst && (*dst = atoi(v)) < 1)
			return -1;
		if (!dst)
			o->calls = v;
		i++;
	}
	return 0;
}

int main(int argc, char **argv)
{
	opts o = {16384, 7168, 128, 1, 1, "syrk,syevd,syevd2,heads,heads-qr"};
	if (parse(&o, argc, argv)) {
		fprintf(stderr, "usage: blas-calls [--n N] [--k K] [--heads H] [--threads T] "
		                "[--reps R] [--calls syrk,syevd,syevd2,heads,heads-qr]\n");
		return 2;
	}
	set_threads(o.threads);
	print_blas(o.threads);
	if (wanted(&o, "syrk") || wanted(&o, "syevd") || wanted(&o, "syevd2"))
		big_calls(&o);
	static const char *const head_calls[] = {"heads", "heads-qr"};
	for (int q = 0; q < 2; q++) {
		if (!wanted(&o, head_calls[q]))
			continue;
		double best = INFINITY;
		for (int r = 0; r < o.reps; r++) {
			double t0 = now();
			heads_work(o.heads, o.k, q);
			best = fmin(best, now() - t0);
		}
		report(head_calls[q], best);
	}
	return 0;
}
