/* Tests of the struct-versioning rule of docs/abi.md ("Versioned structs"):
 * every public function that takes a struct starting with `size_t size` is
 * called, for each such struct argument, with
 *   (a) the struct's first published size, the bytes after it garbage (an
 *       older caller's struct ends there): accepted;
 *   (b) a newer caller's larger size with a zero tail: accepted, same result;
 *   (c) a larger size with a non-zero tail: an input is refused with
 *       FASVD_EINVAL naming the function and the struct; an output is
 *       filled up to this library's size and its tail left alone;
 *   (d) a size below the first published one (and 0): refused, naming the
 *       function and the struct.
 * Output structs are written only up to the caller's size. In each case the
 * struct is set up as such a caller does, by its *_init(p, size) in the
 * caller's memory: a size of the struct gets the defaults, zero beyond what
 * the library knows; a size below the first published one is refused naming
 * the init and the struct, only `size` written; nothing past `size` is ever
 * touched. */
#include "test-helpers.h"
#include "fixture.h"

#include <stdalign.h>
#include <stdbool.h>
#include <unistd.h>

/* Bytes a "newer caller" appends to a struct. */
#define TAIL 64
#define BUF 1024
/* What an older caller's memory holds after its (shorter) struct. */
#define JUNK 0xa5

typedef struct vstruct {
	const char *name;
	size_t first;  /* first published size: end of its last member in the first release */
	size_t size;   /* sizeof in these headers */
	size_t end;    /* end of its last member in these headers */
	bool output;   /* filled by the library */
	int (*init)(void *, size_t);
	const char *init_name;
} vstruct;

#define INIT_FN(type) \
	static int init_##type(void *p, size_t size) { return type##_init(p, size); }
#define END_OF(type, m) (offsetof(type, m) + sizeof(((type *)0)->m))
#define VSTRUCT(type, last, out)                                                     \
	static const vstruct v_##type = {#type, END_OF(type, last), sizeof(type),       \
	                                 END_OF(type, last), out, init_##type, #type "_init"}

INIT_FN(fasvd_svd_opts)
INIT_FN(fasvd_svd_report)
INIT_FN(fasvd_metric_summary)
INIT_FN(fasvd_rfactors_opts)
INIT_FN(fasvd_stack_opts)
INIT_FN(fasvd_stack_report)
INIT_FN(fasvd_subspace_opts)
INIT_FN(fasvd_attnmap_opts)
INIT_FN(fasvd_layer_desc)
INIT_FN(fasvd_layer_opts)
INIT_FN(fasvd_factor_opts)
INIT_FN(fasvd_factor_report)
INIT_FN(fasvd_factor_shared_opts)
INIT_FN(fasvd_onload_input)
INIT_FN(fasvd_truncate_opts)
INIT_FN(fasvd_analyze_opts)
INIT_FN(fasvd_merge_opts)
INIT_FN(fasvd_survey_opts)
INIT_FN(fasvd_model_info)
INIT_FN(fasvd_model_input)
INIT_FN(fasvd_model_layer_opts)
INIT_FN(fasvd_st_info)
INIT_FN(fasvd_blas_info)

/* The first published sizes, written independently of the library's. */
VSTRUCT(fasvd_svd_opts, seed, false);
VSTRUCT(fasvd_svd_report, error_estimate, true);
VSTRUCT(fasvd_metric_summary, entropy_rank, true);
VSTRUCT(fasvd_rfactors_opts, keep_q, false);
VSTRUCT(fasvd_stack_opts, head_norms, false);
VSTRUCT(fasvd_stack_report, error_bound, true);
VSTRUCT(fasvd_subspace_opts, weight, false);
VSTRUCT(fasvd_attnmap_opts, scale, false);
VSTRUCT(fasvd_layer_desc, kva_pe_col_scale, false);
VSTRUCT(fasvd_layer_opts, groups, false);
VSTRUCT(fasvd_factor_opts, whiten, false);
VSTRUCT(fasvd_factor_report, calibration_shift, true);
VSTRUCT(fasvd_factor_shared_opts, weight, false);
VSTRUCT(fasvd_onload_input, calibration_cholesky, false);
VSTRUCT(fasvd_truncate_opts, calibration, false);
VSTRUCT(fasvd_analyze_opts, n_rope_offsets, false);
VSTRUCT(fasvd_merge_opts, force, false);
VSTRUCT(fasvd_survey_opts, progress_user, false);
VSTRUCT(fasvd_model_info, bytes_needed, true);
VSTRUCT(fasvd_model_input, factor_heads, true);
VSTRUCT(fasvd_model_layer_opts, fold_norms, false);
VSTRUCT(fasvd_st_info, file, true);
VSTRUCT(fasvd_blas_info, cpu_features, true);

/* ---------------------------------------------------------- the operands */

static struct {
	char dir[256];       /* temporary folder */
	char model[300];     /* a small fixture checkpoint */
	fasvd_tensor *a;     /* 12 x 8 F64 */
	double adata[12 * 8];
	fasvd_tensor *ht, *q, *k; /* heads tensor 24 x 8; activations 5 x 4, 6 x 4 */
	fasvd_heads *h;      /* 4 heads of 6 x 8 (rows) */
	fasvd_rfactors *ra, *rb;
	fasvd_model *m;
	fasvd_model_layer *layer;
	fasvd_onload *plan;
} G;

static void random_tensor(fasvd_tensor **t, int64_t rows, int64_t cols, uint64_t seed)
{
	test_rng r = {seed};
	assert_ok(fasvd_tensor_new(t, NULL, FASVD_DTYPE_F64, rows, cols));
	double *d = fasvd_tensor_data_mut(*t);
	for (int64_t i = 0; i < rows * cols; i++)
		d[i] = test_rng_normal(&r);
}

static int setup(void **state)
{
	(void)state;
	snprintf(G.dir, sizeof G.dir, "/tmp/fasvd-test-versioning-XXXXXX");
	if (!mkdtemp(G.dir))
		return -1;
	snprintf(G.model, sizeof G.model, "%s/llama", G.dir);
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.n_layers = 1;
	if (fasvd_fixture_write(NULL, G.model, "llama", &fo) ||
	    fasvd_model_open(&G.m, NULL, G.model, 0) ||
	    fasvd_model_layer_open(&G.layer, G.m, 0, NULL))
		return -1;
	random_tensor(&G.a, 12, 8, 1);
	memcpy(G.adata, fasvd_tensor_data(G.a), sizeof G.adata);
	random_tensor(&G.ht, 24, 8, 2);
	random_tensor(&G.q, 5, 4, 3);
	random_tensor(&G.k, 6, 4, 4);
	if (fasvd_heads_new(&G.h, NULL, G.ht, FASVD_AXIS_ROWS, 4, 6, 0, 0) ||
	    fasvd_rfactors_new(&G.ra, NULL, G.h, NULL) || fasvd_rfactors_new(&G.rb, NULL, G.h, NULL) ||
	    fasvd_onload_new(&G.plan, NULL, NULL))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fasvd_onload_free(G.plan);
	fasvd_rfactors_free(G.ra);
	fasvd_rfactors_free(G.rb);
	fasvd_heads_free(G.h);
	fasvd_tensor_free(G.a);
	fasvd_tensor_free(G.ht);
	fasvd_tensor_free(G.q);
	fasvd_tensor_free(G.k);
	fasvd_model_layer_free(G.layer);
	fasvd_model_free(G.m);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", G.dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------- digests */

/* A call's result, compared between the accepted sizes. */
typedef struct digest {
	double v[64];
	int n;
} digest;

static void put(digest *d, double x)
{
	if (d->n < (int)(sizeof d->v / sizeof d->v[0]))
		d->v[d->n++] = x;
}

static void put_values(digest *d, const double *s, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		put(d, s[i]);
}

/* Weighted sum of the elements (frees t). */
static void put_tensor(digest *d, fasvd_tensor *t)
{
	double sum = 0;
	for (int64_t i = 0; t && i < fasvd_tensor_rows(t); i++)
		for (int64_t j = 0; j < fasvd_tensor_cols(t); j++) {
			double x;
			assert_ok(fasvd_tensor_get(&x, t, i, j));
			sum += (double)(1 + i * 31 + j) * x;
		}
	put(d, sum);
	fasvd_tensor_free(t);
}

static void put_spectra(digest *d, fasvd_spectra *sp)
{
	for (int64_t i = 0; sp && i < fasvd_spectra_count(sp); i++) {
		int64_t r, c;
		assert_ok(fasvd_spectra_shape(&r, &c, NULL, NULL, sp, i));
		double sum = 0;
		const double *x = fasvd_spectra_data(sp, i);
		for (int64_t j = 0; j < r * c; j++)
			sum += x[j];
		put(d, sum);
	}
	fasvd_spectra_free(sp);
}

/* Every matrix of a safetensors file. */
static void put_file(digest *d, const char *path)
{
	fasvd_st *st;
	assert_ok(fasvd_st_open(&st, NULL, path));
	for (int64_t i = 0; i < fasvd_st_count(st); i++) {
		fasvd_st_info info;
		fasvd_st_info_init(&info, sizeof info);
		assert_ok(fasvd_st_info_get(&info, st, fasvd_st_name(st, i)));
		if (info.ndim != 2)
			continue;
		fasvd_tensor *t;
		assert_ok(fasvd_st_tensor(&t, st, info.name, 0));
		put_tensor(d, t);
	}
	fasvd_st_free(st);
}

/* ---------------------------------------------------------------- calls */

/* Calls function `fn` with its versioned structs args[] (already set up);
 * returns its result code and fills *d. */
typedef int (*call_fn)(void *const *args, digest *d);

typedef struct vcall {
	const char *fn;
	call_fn call;
	const vstruct *args[3]; /* its versioned struct arguments, in order */
} vcall;

static int c_svdvals(void *const *a, digest *d)
{
	double s[8];
	int rc = fasvd_svdvals(s, 8, NULL, G.a, a[0], a[1]);
	put_values(d, s, 8);
	return rc;
}

static int c_svd(void *const *a, digest *d)
{
	double s[8];
	fasvd_tensor *u = NULL, *vt = NULL;
	int rc = fasvd_svd(&u, s, 8, &vt, NULL, G.a, a[0], a[1]);
	put_values(d, s, 8);
	fasvd_tensor_free(u);
	fasvd_tensor_free(vt);
	return rc;
}

static int c_metric_summarize(void *const *a, digest *d)
{
	double s[4] = {4, 3, 2, 1}, taus[2] = {0.1, 0.01};
	int64_t ranks[2] = {0, 0};
	int rc = fasvd_metric_summarize(a[0], ranks, s, 4, taus, 2);
	put(d, (double)ranks[0]);
	put(d, (double)ranks[1]);
	return rc;
}

static int c_rfactors_new(void *const *a, digest *d)
{
	fasvd_rfactors *r = NULL;
	int rc = fasvd_rfactors_new(&r, NULL, G.h, a[0]);
	if (r) {
		double s[8];
		assert_ok(fasvd_stack_fused_svdvals(s, 8, NULL, r, r, NULL, NULL));
		put_values(d, s, 8);
	}
	fasvd_rfactors_free(r);
	return rc;
}

static int c_stack_svdvals(void *const *a, digest *d)
{
	double s[8];
	int rc = fasvd_stack_svdvals(s, 8, NULL, G.h, a[0], a[1]);
	put_values(d, s, 8);
	return rc;
}

static int c_stack_fused_svdvals(void *const *a, digest *d)
{
	double s[8];
	int rc = fasvd_stack_fused_svdvals(s, 8, NULL, G.ra, G.rb, a[0], a[1]);
	put_values(d, s, 8);
	return rc;
}

static int c_subspace_new(void *const *a, digest *d)
{
	fasvd_subspace *sp = NULL;
	int rc = fasvd_subspace_new(&sp, NULL, G.h, a[0]);
	put(d, sp ? (double)fasvd_subspace_rank(sp) : -1);
	fasvd_subspace_free(sp);
	return rc;
}

static int c_attnmap(void *const *a, digest *d)
{
	fasvd_tensor *t = NULL;
	int rc = fasvd_attnmap(&t, NULL, G.q, G.k, a[0]);
	put_tensor(d, t);
	return rc;
}

static int c_attnmap_svdvals(void *const *a, digest *d)
{
	double s[5];
	int rc = fasvd_attnmap_svdvals(s, 5, NULL, G.q, G.k, a[0]);
	put_values(d, s, 5);
	return rc;
}

static int c_layer_spectra(void *const *a, digest *d)
{
	/* The model's description of layer 0, in the caller's struct. */
	const fasvd_layer_desc *src = fasvd_model_layer_desc(G.layer);
	memcpy((char *)a[0] + sizeof(size_t), (const char *)src + sizeof(size_t),
	       v_fasvd_layer_desc.first - sizeof(size_t));
	fasvd_spectra *sp = NULL;
	int rc = fasvd_layer_spectra(&sp, NULL, a[0], a[1]);
	put_spectra(d, sp);
	return rc;
}

static int c_factor(void *const *a, digest *d)
{
	fasvd_tensor *x = NULL, *y = NULL;
	int rc = fasvd_factor(&x, &y, NULL, G.a, a[0], a[1]);
	put_tensor(d, x);
	put_tensor(d, y);
	return rc;
}

static int c_factor_into(void *const *a, digest *d)
{
	float x[12 * 8], y[8 * 8];
	memset(x, 0, sizeof x);
	memset(y, 0, sizeof y);
	int rc = fasvd_factor_into(x, y, 8, NULL, G.a, a[0], a[1]);
	for (int i = 0; i < 12 * 8; i++)
		put(d, x[i]);
	return rc;
}

static int c_factor_rank(void *const *a, digest *d)
{
	int64_t r = -1;
	int rc = fasvd_factor_rank(&r, NULL, G.a, a[0], a[1]);
	put(d, (double)r);
	return rc;
}

static int c_factor_workspace(void *const *a, digest *d)
{
	uint64_t bytes = 0;
	int rc = fasvd_factor_workspace(&bytes, 300, 200, a[0], 2);
	put(d, (double)bytes);
	return rc;
}

static int c_factor_fused(void *const *a, digest *d)
{
	fasvd_tensor *x = NULL, *y = NULL;
	int rc = fasvd_factor_fused(&x, &y, NULL, G.h, G.h, a[0], a[1]);
	put_tensor(d, x);
	put_tensor(d, y);
	return rc;
}

static int c_factor_shared(void *const *a, digest *d)
{
	const fasvd_heads *g[1] = {G.h};
	fasvd_tensor *basis = NULL, *factors = NULL, *mean = NULL;
	fasvd_factor_shared_opts *so = a[1];
	so->center = 1;
	int rc = fasvd_factor_shared(&basis, &factors, &mean, NULL, g, 1, a[0], so, a[2]);
	put_tensor(d, basis);
	put_tensor(d, factors);
	put_tensor(d, mean);
	return rc;
}

static int c_onload_new(void *const *a, digest *d)
{
	fasvd_onload *plan = NULL;
	int rc = fasvd_onload_new(&plan, NULL, a[0]);
	int64_t inner = -1;
	if (plan)
		assert_ok(fasvd_onload_max_inner(&inner, plan, 12, 8, 0));
	put(d, (double)inner);
	fasvd_onload_free(plan);
	return rc;
}

static void onload_input(fasvd_onload_input *in)
{
	in->name = "w";
	in->dtype = FASVD_DTYPE_F64;
	in->data = G.adata;
	in->rows = 12;
	in->cols = 8;
}

static int c_onload_factor(void *const *a, digest *d)
{
	fasvd_tensor *x = NULL, *y = NULL;
	onload_input(a[0]);
	int rc = fasvd_onload_factor(&x, &y, G.plan, a[0], a[1]);
	put_tensor(d, x);
	put_tensor(d, y);
	return rc;
}

static int c_onload_factor_into(void *const *a, digest *d)
{
	float x[12 * 8], y[8 * 8];
	memset(x, 0, sizeof x);
	onload_input(a[0]);
	int rc = fasvd_onload_factor_into(x, y, 8, G.plan, a[0], a[1]);
	for (int i = 0; i < 12 * 8; i++)
		put(d, x[i]);
	return rc;
}

static int truncate_cb(void *arg, const fasvd_truncate_entry *e)
{
	put(arg, (double)e->report.rank);
	return 0;
}

static int c_truncate(void *const *a, digest *d)
{
	char out[320], file[360];
	snprintf(out, sizeof out, "%s/truncated", G.dir);
	snprintf(file, sizeof file, "%s/model.safetensors", out);
	int rc = fasvd_truncate(NULL, G.model, out, a[0], truncate_cb, d);
	if (rc == 0)
		put_file(d, file);
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
	assert_int_equal(system(cmd), 0);
	return rc;
}

static int c_analyze(void *const *a, digest *d)
{
	char out[320];
	snprintf(out, sizeof out, "%s/spectra.safetensors", G.dir);
	int rc = fasvd_analyze(NULL, G.model, out, a[0]);
	if (rc == 0)
		put_file(d, out);
	unlink(out);
	return rc;
}

/* Merge the one shard of a run split in one (written afresh each time). */
static int c_merge(void *const *a, digest *d)
{
	char part[320], out[320];
	snprintf(part, sizeof part, "%s/part.safetensors", G.dir);
	snprintf(out, sizeof out, "%s/merged.safetensors", G.dir);
	fasvd_analyze_opts ao;
	fasvd_analyze_opts_init(&ao, sizeof ao);
	ao.shard_count = 1;
	ao.force = 1;
	assert_int_equal(fasvd_analyze(NULL, G.model, part, &ao), 0);
	const char *parts[] = {part};
	int rc = fasvd_merge(NULL, parts, 1, out, a[0]);
	if (rc == 0)
		put_file(d, out);
	unlink(out);
	unlink(part);
	return rc;
}

/* A survey of the one fixture model (its folder written afresh each time). */
static int c_survey(void *const *a, digest *d)
{
	char dir[320], file[360], cmd[400];
	snprintf(dir, sizeof dir, "%s/survey", G.dir);
	snprintf(file, sizeof file, "%s/llama.spectra.safetensors", dir);
	const char *models[] = {G.model};
	int rc = fasvd_survey(NULL, models, 1, dir, a[0]);
	if (rc == 0)
		put_file(d, file);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return rc;
}

/* Output structs: the digest is the fields, compared by the caller. */
static int c_model_info_get(void *const *a, digest *d)
{
	(void)d;
	return fasvd_model_info_get(a[0], G.m);
}

static int c_model_input_get(void *const *a, digest *d)
{
	(void)d;
	return fasvd_model_input_get(a[0], G.m, 0);
}

static int c_model_layer_open(void *const *a, digest *d)
{
	fasvd_model_layer *l = NULL;
	int rc = fasvd_model_layer_open(&l, G.m, 0, a[0]);
	if (l)
		put(d, fasvd_heads_col_scale(fasvd_model_layer_desc(l)->q) ? 1 : 0);
	fasvd_model_layer_free(l);
	return rc;
}

static int c_st_info_get(void *const *a, digest *d)
{
	(void)d;
	const fasvd_st *st = fasvd_model_checkpoint(G.m);
	return fasvd_st_info_get(a[0], st, fasvd_st_name(st, 0));
}

static int c_blas_info_get(void *const *a, digest *d)
{
	(void)d;
	return fasvd_blas_info_get(a[0]);
}

static const vcall calls[] = {
	{"fasvd_svdvals", c_svdvals, {&v_fasvd_svd_opts, &v_fasvd_svd_report}},
	{"fasvd_svd", c_svd, {&v_fasvd_svd_opts, &v_fasvd_svd_report}},
	{"fasvd_metric_summarize", c_metric_summarize, {&v_fasvd_metric_summary}},
	{"fasvd_rfactors_new", c_rfactors_new, {&v_fasvd_rfactors_opts}},
	{"fasvd_stack_svdvals", c_stack_svdvals, {&v_fasvd_stack_opts, &v_fasvd_stack_report}},
	{"fasvd_stack_fused_svdvals", c_stack_fused_svdvals,
	 {&v_fasvd_stack_opts, &v_fasvd_stack_report}},
	{"fasvd_subspace_new", c_subspace_new, {&v_fasvd_subspace_opts}},
	{"fasvd_attnmap", c_attnmap, {&v_fasvd_attnmap_opts}},
	{"fasvd_attnmap_svdvals", c_attnmap_svdvals, {&v_fasvd_attnmap_opts}},
	{"fasvd_layer_spectra", c_layer_spectra, {&v_fasvd_layer_desc, &v_fasvd_layer_opts}},
	{"fasvd_factor", c_factor, {&v_fasvd_factor_opts, &v_fasvd_factor_report}},
	{"fasvd_factor_into", c_factor_into, {&v_fasvd_factor_opts, &v_fasvd_factor_report}},
	{"fasvd_factor_rank", c_factor_rank, {&v_fasvd_factor_opts, &v_fasvd_factor_report}},
	{"fasvd_factor_workspace", c_factor_workspace, {&v_fasvd_factor_opts}},
	{"fasvd_factor_fused", c_factor_fused, {&v_fasvd_factor_opts, &v_fasvd_factor_report}},
	{"fasvd_factor_shared", c_factor_shared,
	 {&v_fasvd_factor_opts, &v_fasvd_factor_shared_opts, &v_fasvd_factor_report}},
	{"fasvd_onload_new", c_onload_new, {&v_fasvd_factor_opts}},
	{"fasvd_onload_factor", c_onload_factor, {&v_fasvd_onload_input, &v_fasvd_factor_report}},
	{"fasvd_onload_factor_into", c_onload_factor_into,
	 {&v_fasvd_onload_input, &v_fasvd_factor_report}},
	{"fasvd_truncate", c_truncate, {&v_fasvd_truncate_opts}},
	{"fasvd_analyze", c_analyze, {&v_fasvd_analyze_opts}},
	{"fasvd_merge", c_merge, {&v_fasvd_merge_opts}},
	{"fasvd_survey", c_survey, {&v_fasvd_survey_opts}},
	{"fasvd_model_info_get", c_model_info_get, {&v_fasvd_model_info}},
	{"fasvd_model_input_get", c_model_input_get, {&v_fasvd_model_input}},
	{"fasvd_model_layer_open", c_model_layer_open, {&v_fasvd_model_layer_opts}},
	{"fasvd_st_info_get", c_st_info_get, {&v_fasvd_st_info}},
	{"fasvd_blas_info_get", c_blas_info_get, {&v_fasvd_blas_info}},
};
#define N_CALLS (sizeof calls / sizeof calls[0])

/* ---------------------------------------------------------------- cases */

/* The caller's memory of each struct argument. */
typedef struct bufs {
	alignas(16) unsigned char b[3][BUF];
} bufs;

static int n_args(const vcall *c)
{
	int n = 0;
	while (n < 3 && c->args[n])
		n++;
	return n;
}

/* v's *_init(b, size) on a caller's memory b holding JUNK: a size of the
 * struct gets the defaults (as an init of the library's own size writes
 * them), zero beyond what the library knows; another size is refused naming
 * the init and the struct, with only `size` written (when it fits). No byte
 * past `size` is touched. */
static void check_init(const vstruct *v, unsigned char *b, size_t size)
{
	unsigned char ref[BUF];
	assert_int_equal(v->init(ref, v->size), 0);
	fasvd_clear_error();
	int rc = v->init(b, size);
	bool valid = size >= v->first && size <= 4096;
	size_t known = size < v->size ? size : v->size;
	if (!valid && (rc != FASVD_EINVAL || !strstr(fasvd_last_error(), v->init_name) ||
	               !strstr(fasvd_last_error(), v->name)))
		fail_msg("%s(p, %zu): rc %d, detail '%s' (want FASVD_EINVAL naming it and %s)",
		         v->init_name, size, rc, fasvd_last_error(), v->name);
	if (valid && rc)
		fail_msg("%s(p, %zu): rc %d (%s)", v->init_name, size, rc, fasvd_last_error());
	for (size_t i = sizeof(size_t); i < BUF; i++) {
		unsigned char want = JUNK;
		if (valid && i < known)
			want = ref[i];
		else if (valid && i < size)
			want = 0;
		if (b[i] != want)
			fail_msg("%s(p, %zu): byte %zu is %#x, not %#x", v->init_name, size, i, b[i],
			         want);
	}
	size_t got;
	memcpy(&got, b, sizeof got);
	if (size >= sizeof(size_t))
		assert_int_equal(got, size);
	else
		for (size_t i = 0; i < sizeof(size_t); i++)
			assert_int_equal(b[i], JUNK);
}

/* Call c with argument `arg` set up by a caller whose struct has `size`
 * bytes (check_init), a newer caller's tail then holding `tail_byte` at its
 * last byte; a `size` too small to hold the size member is written as the
 * caller's (zeroed) struct. The other arguments as their *_init leaves them. */
static int run(const vcall *c, int arg, size_t size, unsigned char tail_byte, bufs *B, digest *d)
{
	const vstruct *v = c->args[arg];
	void *p[3] = {NULL, NULL, NULL};
	for (int i = 0; i < n_args(c); i++) {
		memset(B->b[i], 0, BUF);
		assert_int_equal(c->args[i]->init(B->b[i], c->args[i]->size), 0);
		p[i] = B->b[i];
	}
	unsigned char *b = B->b[arg];
	memset(b, JUNK, BUF);
	check_init(v, b, size);
	if (size < sizeof size)
		memcpy(b, &size, sizeof size);
	if (size > v->size)
		b[size - 1] = tail_byte;
	memset(d, 0, sizeof *d);
	fasvd_clear_error();
	return c->call(p, d);
}

static void assert_refused(const vcall *c, const vstruct *v, int rc, const char *what)
{
	const char *e = fasvd_last_error();
	if (rc != FASVD_EINVAL || !strstr(e, c->fn) || !strstr(e, v->name))
		fail_msg("%s with %s %s: rc %d, detail '%s' (want FASVD_EINVAL naming both)", c->fn,
		         v->name, what, rc, e);
}

static void assert_same(const vcall *c, const vstruct *v, const digest *x, const digest *y,
                        const char *what)
{
	if (x->n != y->n || memcmp(x->v, y->v, (size_t)x->n * sizeof x->v[0]))
		fail_msg("%s with %s %s: result differs from the first published size", c->fn,
		         v->name, what);
}

static void check_arg(const vcall *c, int arg)
{
	const vstruct *v = c->args[arg];
	bufs *A = calloc(1, sizeof *A), *B = calloc(1, sizeof *B);
	assert_non_null(A);
	assert_non_null(B);
	digest da, db;
	size_t big = v->size + TAIL;

	/* (a) an older caller's struct: its first published size. */
	int rc = run(c, arg, v->first, 0, A, &da);
	if (rc)
		fail_msg("%s with %s of its first size %zu: rc %d (%s)", c->fn, v->name, v->first, rc,
		         fasvd_last_error());
	for (size_t i = v->first; i < BUF; i++)
		if (A->b[arg][i] != JUNK)
			fail_msg("%s wrote byte %zu of a %zu-byte %s", c->fn, i, v->first, v->name);

	/* (b) a newer caller's struct with a zero tail. */
	rc = run(c, arg, big, 0, B, &db);
	if (rc)
		fail_msg("%s with %s of %zu bytes, zero tail: rc %d (%s)", c->fn, v->name, big, rc,
		         fasvd_last_error());
	assert_same(c, v, &da, &db, "with a zero tail");
	if (v->output &&
	    memcmp(A->b[arg] + sizeof(size_t), B->b[arg] + sizeof(size_t), v->first - sizeof(size_t)))
		fail_msg("%s: %s differs between sizes %zu and %zu", c->fn, v->name, v->first, big);

	/* (c) a newer caller's struct with a non-zero member unknown here. */
	rc = run(c, arg, big, 1, B, &db);
	if (v->output) {
		if (rc)
			fail_msg("%s with output %s and a set tail: rc %d (%s)", c->fn, v->name, rc,
			         fasvd_last_error());
		assert_same(c, v, &da, &db, "with a set tail");
		assert_int_equal(B->b[arg][big - 1], 1);
		size_t got;
		memcpy(&got, B->b[arg], sizeof got);
		assert_int_equal(got, big);
	} else {
		assert_refused(c, v, rc, "with a non-zero unknown tail");
	}

	/* (d) sizes below the first published one. */
	assert_refused(c, v, run(c, arg, v->first - 1, 0, B, &db), "one byte too short");
	assert_refused(c, v, run(c, arg, 0, 0, B, &db), "of size 0");
	free(A);
	free(B);
}

static void test_every_function(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_CALLS; i++)
		for (int arg = 0; arg < n_args(&calls[i]); arg++)
			check_arg(&calls[i], arg);
}

/* The first published sizes lie within the structs of today, and each
 * struct ends with the member named as its last (only padding after it):
 * a member appended later must be named with VSTRUCT_GROWN. */
static void test_first_sizes(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_CALLS; i++)
		for (int arg = 0; arg < n_args(&calls[i]); arg++) {
			const vstruct *v = calls[i].args[arg];
			assert_true(v->first <= v->end && v->end <= v->size);
			assert_true(v->size - v->end < sizeof(void *));
		}
}

/* Each *_init: NULL and a size above the largest are refused naming it, the
 * latter with only `size` written; the library's own size and the first
 * published one are set up. */
static void test_init(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_CALLS; i++)
		for (int arg = 0; arg < n_args(&calls[i]); arg++) {
			const vstruct *v = calls[i].args[arg];
			fasvd_clear_error();
			assert_int_equal(v->init(NULL, v->size), FASVD_EINVAL);
			assert_non_null(strstr(fasvd_last_error(), v->init_name));
			unsigned char b[BUF + 8];
			size_t sizes[] = {v->size, v->first, v->size + TAIL, 4096 + 1, v->first - 1,
			                  sizeof(size_t), sizeof(size_t) - 1, 0};
			for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
				memset(b, JUNK, sizeof b);
				check_init(v, b, sizes[k]);
			}
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_sizes),
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_every_function),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
