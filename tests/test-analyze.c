/* The analysis pipeline end to end: fasvd_analyze on a generated Llama (GQA)
 * fixture and on the real stories260K checkpoint, checked against a float64
 * reference built here from the raw tensors (materialised fused and stacked
 * matrices, LAPACK dgesdd); the schema and metadata of the spectra file;
 * resume after cancellation and after SIGKILL at arbitrary moments giving
 * byte-identical files; failures leaving no file behind; flat peak memory. */
#include "test-helpers.h"
#include "fixture.h"

#include <fcntl.h>
#include <stdbool.h>
#include <lapacke.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[512];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/fasvd-test-analyze-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------- reference */

/* Dense column-major matrix. */
typedef struct {
	int64_t r, c;
	double *a;
} mat;

static mat mat_new(int64_t r, int64_t c)
{
	mat m = {r, c, calloc((size_t)(r * c), sizeof(double))};
	assert_non_null(m.a);
	return m;
}

#define AT(m, i, j) ((m).a[(j) * (m).r + (i)])

/* Load a 2-D tensor of the checkpoint as a dense double matrix. */
static mat load(fasvd_st *st, const char *name)
{
	fasvd_tensor *t = NULL;
	assert_ok(fasvd_st_tensor(&t, st, name, 0));
	mat m = mat_new(fasvd_tensor_rows(t), fasvd_tensor_cols(t));
	assert_ok(fasvd_tensor_to_f64(m.a, m.r, FASVD_LAYOUT_COL_MAJOR, t, 0));
	fasvd_tensor_free(t);
	return m;
}

static double *load_vec(fasvd_st *st, const char *name, int64_t n)
{
	fasvd_st_info inf;
	fasvd_st_info_init(&inf, sizeof inf);
	assert_ok(fasvd_st_info_get(&inf, st, name));
	assert_int_equal(inf.ndim, 1);
	assert_int_equal(inf.shape[0], n);
	fasvd_dtype dt;
	assert_ok(fasvd_dtype_from_name(&dt, inf.dtype));
	const void *p;
	uint64_t nb;
	assert_ok(fasvd_st_raw(&p, &nb, st, name));
	double *v = malloc(sizeof(double) * (size_t)n);
	assert_ok(fasvd_dtype_decode(v, dt, p, (size_t)n));
	return v;
}

static mat rows_of(mat m, int64_t r0, int64_t n)
{
	mat o = mat_new(n, m.c);
	for (int64_t j = 0; j < m.c; j++)
		for (int64_t i = 0; i < n; i++)
			AT(o, i, j) = AT(m, r0 + i, j);
	return o;
}

static mat transpose(mat m)
{
	mat o = mat_new(m.c, m.r);
	for (int64_t j = 0; j < m.c; j++)
		for (int64_t i = 0; i < m.r; i++)
			AT(o, j, i) = AT(m, i, j);
	return o;
}

/* aᵀ·b */
static mat atb(mat a, mat b)
{
	assert_int_equal(a.r, b.r);
	mat o = mat_new(a.c, b.c);
	for (int64_t j = 0; j < b.c; j++)
		for (int64_t i = 0; i < a.c; i++) {
			double s = 0;
			for (int64_t k = 0; k < a.r; k++)
				s += AT(a, k, i) * AT(b, k, j);
			AT(o, i, j) = s;
		}
	return o;
}

static void scale_cols(mat m, const double *g)
{
	for (int64_t j = 0; j < m.c; j++)
		for (int64_t i = 0; i < m.r; i++)
			AT(m, i, j) *= g[j];
}

/* Singular values (min(r, c)), descending, float64 LAPACK. */
static double *svals(mat m)
{
	int64_t k = m.r < m.c ? m.r : m.c;
	double *s = calloc((size_t)k, sizeof(double));
	double *copy = malloc(sizeof(double) * (size_t)(m.r * m.c));
	memcpy(copy, m.a, sizeof(double) * (size_t)(m.r * m.c));
	assert_int_equal(LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (int)m.r, (int)m.c, copy, (int)m.r,
	                                s, NULL, 1, NULL, 1),
	                 0);
	free(copy);
	return s;
}

/* Stack heads (each divided by its own σ₁) along rows and return σ. */
static double *stacked(mat *heads, int64_t n)
{
	mat s = mat_new(heads[0].r * n, heads[0].c);
	for (int64_t h = 0; h < n; h++) {
		double *sv = svals(heads[h]);
		double d = sv[0] > 0 ? sv[0] : 1;
		free(sv);
		for (int64_t j = 0; j < s.c; j++)
			for (int64_t i = 0; i < heads[h].r; i++)
				AT(s, h * heads[h].r + i, j) = AT(heads[h], i, j) / d;
	}
	double *r = svals(s);
	free(s.a);
	return r;
}

/* Compare a spectrum row of the output file with the reference. */
static void check_row(const char *what, const double *got, const double *ref, int64_t n,
                      double tol)
{
	double s1 = ref[0];
	for (int64_t i = 0; i < n; i++)
		if (!(fabs(got[i] - ref[i]) <= tol * s1 + 1e-300))
			fail_msg("%s[%lld] = %.17g, reference %.17g (σ₁ %.6g, tol %.1e·σ₁)", what,
			         (long long)i, got[i], ref[i], s1, tol);
	for (int t = 0; t < 2; t++) {
		double tau = t ? 0.001 : 0.01;
		int64_t a, b;
		assert_ok(fasvd_metric_energy_rank(&a, got, n, tau));
		assert_ok(fasvd_metric_energy_rank(&b, ref, n, tau));
		if (a != b)
			fail_msg("%s: effective rank at tau %g is %lld, reference %lld", what, tau,
			         (long long)a, (long long)b);
	}
}

static const double *out_row(fasvd_st *out, const char *name, int64_t head, int64_t n,
                             int64_t want_rows)
{
	fasvd_st_info inf;
	fasvd_st_info_init(&inf, sizeof inf);
	if (fasvd_st_info_get(&inf, out, name))
		fail_msg("output lacks %s: %s", name, fasvd_last_error());
	assert_string_equal(inf.dtype, "F64");
	if (want_rows) {
		assert_int_equal(inf.ndim, 2);
		assert_int_equal(inf.shape[0], want_rows);
		assert_int_equal(inf.shape[1], n);
	} else {
		assert_int_equal(inf.ndim, 1);
		assert_int_equal(inf.shape[0], n);
	}
	const void *p;
	uint64_t nb;
	assert_ok(fasvd_st_raw(&p, &nb, out, name));
	return (const double *)p + head * n;
}

/* Check every spectrum of a separate-q/k/v/o model (Llama layout). */
static void check_llama(const char *model_dir, const char *spectra, int64_t L, int64_t H,
                        int64_t KV, int64_t hd, int64_t hidden, bool fold, double tol)
{
	fasvd_st *st = NULL, *out = NULL;
	assert_ok(fasvd_st_open(&st, NULL, model_dir));
	assert_ok(fasvd_st_open(&out, NULL, spectra));
	for (int64_t l = 0; l < L; l++) {
		char n[256];
		snprintf(n, sizeof n, "model.layers.%lld.self_attn.q_proj.weight", (long long)l);
		mat wq = load(st, n);
		snprintf(n, sizeof n, "model.layers.%lld.self_attn.k_proj.weight", (long long)l);
		mat wk = load(st, n);
		snprintf(n, sizeof n, "model.layers.%lld.self_attn.v_proj.weight", (long long)l);
		mat wv = load(st, n);
		snprintf(n, sizeof n, "model.layers.%lld.self_attn.o_proj.weight", (long long)l);
		mat wo = load(st, n);
		if (fold) {
			snprintf(n, sizeof n, "model.layers.%lld.input_layernorm.weight", (long long)l);
			double *g = load_vec(st, n, hidden);
			scale_cols(wq, g);
			scale_cols(wk, g);
			scale_cols(wv, g);
			free(g);
		}
		mat wot = transpose(wo);
		mat Q[64], K[64], V[64], O[64], QK[64], KQ[64], VO[64];
		for (int64_t g = 0; g < KV; g++) {
			K[g] = rows_of(wk, g * hd, hd);
			V[g] = rows_of(wv, g * hd, hd);
		}
		for (int64_t i = 0; i < H; i++) {
			int64_t g = i / (H / KV);
			Q[i] = rows_of(wq, i * hd, hd);
			O[i] = rows_of(wot, i * hd, hd);
			QK[i] = atb(Q[i], K[g]);
			KQ[i] = atb(K[g], Q[i]);
			VO[i] = atb(V[g], O[i]);
		}
		struct {
			const char *name;
			mat *m;
			int64_t n;
		} kinds[] = {{"Q", Q, H},   {"K", K, KV},   {"V", V, KV},  {"O", O, H},
		             {"QK", QK, H}, {"KQ", KQ, H}, {"VO", VO, H}};
		for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
			int64_t cnt = kinds[k].n;
			mat *m = kinds[k].m;
			int64_t w = m[0].r < m[0].c ? m[0].r : m[0].c;
			char name[128], what[160];
			snprintf(name, sizeof name, "L%lld.head.%s", (long long)l, kinds[k].name);
			for (int64_t h = 0; h < cnt; h++) {
				double *ref = svals(m[h]);
				snprintf(what, sizeof what, "%s[%lld]", name, (long long)h);
				check_row(what, out_row(out, name, h, w, cnt), ref, w, tol);
				free(ref);
			}
			double *ref = stacked(m, cnt);
			int64_t ws = m[0].r * cnt < m[0].c ? m[0].r * cnt : m[0].c;
			snprintf(name, sizeof name, "L%lld.stack.%s", (long long)l, kinds[k].name);
			check_row(name, out_row(out, name, 0, ws, 0), ref, ws, tol);
			free(ref);
		}
		for (int64_t g = 0; g < KV; g++) {
			free(K[g].a);
			free(V[g].a);
		}
		for (int64_t i = 0; i < H; i++) {
			free(Q[i].a);
			free(O[i].a);
			free(QK[i].a);
			free(KQ[i].a);
			free(VO[i].a);
		}
		free(wq.a);
		free(wk.a);
		free(wv.a);
		free(wo.a);
		free(wot.a);
	}
	fasvd_st_free(out);
	fasvd_st_free(st);
}

static void write_llama(const char *dir, int64_t layers, int64_t hidden, int64_t heads,
                        int64_t head_dim)
{
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.n_layers = layers;
	fo.hidden = hidden;
	fo.n_heads = heads;
	fo.n_kv_heads = heads / 2;
	fo.head_dim = head_dim;
	assert_ok(fasvd_fixture_write(NULL, dir, "llama", &fo));
}

static void test_llama_fixture_vs_reference(void **state)
{
	(void)state;
	char model[600], out[600];
	snprintf(model, sizeof model, "%s/llama", tmpdir);
	snprintf(out, sizeof out, "%s/llama.safetensors", tmpdir);
	write_llama(model, 2, 64, 4, 16);
	for (int compute = 0; compute < 2; compute++) {
		for (int fold = 0; fold < 2; fold++) {
			fasvd_analyze_opts o;
			fasvd_analyze_opts_init(&o, sizeof o);
			o.compute = compute ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
			o.fold_norms = fold;
			o.force = 1; /* replaces the previous iteration's file */
			assert_ok(fasvd_analyze(NULL, model, out, &o));
			check_llama(model, out, 2, 4, 2, 16, 64, fold, compute ? 1e-10 : 1e-4);
		}
	}
}

static void test_stories260k_vs_reference(void **state)
{
	(void)state;
	char model[600], out[600];
	test_data_path("stories260K", model, sizeof model);
	snprintf(out, sizeof out, "%s/stories.safetensors", tmpdir);
	for (int compute = 0; compute < 2; compute++) {
		fasvd_analyze_opts o;
		fasvd_analyze_opts_init(&o, sizeof o);
		o.compute = compute ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
		o.force = 1;
		assert_ok(fasvd_analyze(NULL, model, out, &o));
		check_llama(model, out, 5, 8, 4, 8, 64, true, compute ? 1e-10 : 1e-4);
	}
	/* Structural rank bounds (8 heads, 4 KV heads, head_dim 8, hidden 64):
	 * a fused head has at most head_dim, the stacked QK at most
	 * n_kv·head_dim (its rows lie in the span of the 4 key heads), the
	 * stacked VO and KQ the full 64. */
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, out));
	const char *mr = test_st_meta(st, "max_ranks");
	assert_non_null(mr);
	const char *want[] = {"\"L0.head.VO\":8,", "\"L4.head.QK\":8,", "\"L0.head.KQ\":8,",
	                      "\"L0.stack.QK\":32,", "\"L4.stack.QK\":32,", "\"L0.stack.VO\":64",
	                      "\"L0.stack.KQ\":64,", "\"L0.head.Q\":8,", "\"L0.stack.K\":32,"};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
		if (!strstr(mr, want[i]))
			fail_msg("max_ranks lacks %s: %s", want[i], mr);
	assert_string_equal(test_st_meta(st, "model_name"), "stories260K");
	fasvd_st_free(st);
}

static void test_schema_and_metadata(void **state)
{
	(void)state;
	char model[600], out[600], json[600], csv[600];
	snprintf(model, sizeof model, "%s/schema", tmpdir);
	snprintf(out, sizeof out, "%s/schema.safetensors", tmpdir);
	snprintf(json, sizeof json, "%s/schema.json", tmpdir);
	snprintf(csv, sizeof csv, "%s/schema.csv", tmpdir);
	write_llama(model, 3, 64, 4, 16);
	fasvd_analyze_opts o;
	fasvd_analyze_opts_init(&o, sizeof o);
	o.layer_first = 1;
	o.layer_last = 2;
	const char *globs[] = {"*.mlp.down_proj.weight"};
	o.tensor_globs = globs;
	o.n_tensor_globs = 1;
	o.json_path = json;
	o.csv_path = csv;
	assert_ok(fasvd_analyze(NULL, model, out, &o));
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, out));
	assert_string_equal(test_st_meta(st, "format"), "fasvd.spectra");
	assert_string_equal(test_st_meta(st, "schema_version"), "1");
	assert_string_equal(test_st_meta(st, "model_type"), "llama");
	assert_string_equal(test_st_meta(st, "fold_norms"), "true");
	assert_string_equal(test_st_meta(st, "stack_normalisation"), "sigma1");
	assert_string_equal(test_st_meta(st, "compute_dtype"), "f32");
	assert_string_equal(test_st_meta(st, "library_version"), fasvd_version_string());
	assert_string_equal(test_st_meta(st, "complete"), "true");
	assert_string_equal(test_st_meta(st, "layers_done"), "1,2");
	assert_non_null(strstr(test_st_meta(st, "config"), "\"llama\""));
	int64_t idx;
	assert_fasvd(fasvd_st_find(&idx, st, "L0.head.Q"), FASVD_ENOTFOUND);
	assert_ok(fasvd_st_find(&idx, st, "L2.stack.VO"));
	/* T.* for the three layers' down_proj (the glob ignores --layers) */
	int64_t nt = 0;
	for (int64_t i = 0; i < fasvd_st_count(st); i++) {
		const char *nm = fasvd_st_name(st, i);
		if (strncmp(nm, "T.", 2) == 0) {
			nt++;
			assert_non_null(strstr(nm, "mlp.down_proj.weight"));
		} else {
			assert_true(nm[0] == 'L' && (nm[1] == '1' || nm[1] == '2'));
		}
	}
	assert_int_equal(nt, 3);
	/* per-head VO is [heads, min(hidden, hidden)] with zeros past rank hd */
	fasvd_st_info inf;
	fasvd_st_info_init(&inf, sizeof inf);
	assert_ok(fasvd_st_info_get(&inf, st, "L1.head.VO"));
	assert_int_equal(inf.ndim, 2);
	assert_int_equal(inf.shape[0], 4);
	assert_int_equal(inf.shape[1], 64);
	const void *p;
	uint64_t nb;
	assert_ok(fasvd_st_raw(&p, &nb, st, "L1.head.VO"));
	const double *vo = p;
	assert_true(vo[0] > 0);
	for (int64_t j = 16; j < 64; j++)
		assert_true(fabs(vo[j]) <= 1e-5 * vo[0]);
	/* ... and says so: bound 16 = head_dim, where min(rows, cols) is 64 */
	assert_non_null(strstr(test_st_meta(st, "max_ranks"), "\"L1.head.VO\":16,"));
	fasvd_st_free(st);
	/* summaries exist and say what tau is */
	char buf[1 << 16];
	FILE *f = fopen(json, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	assert_non_null(strstr(buf, "squared Frobenius"));
	assert_non_null(strstr(buf, "\"effective_rank\""));
	f = fopen(csv, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof buf, f));
	assert_non_null(strstr(buf, "layer,kind,name,head,rows,cols,max_rank,sigma1"));
	assert_non_null(strstr(buf, "er@0.01"));
	int lines = 0;
	while (fgets(buf, sizeof buf, f))
		lines++;
	fclose(f);
	/* per layer: heads Q,O,QK,KQ,VO (4 each) + K,V (2 each) + 7 stacks = 31;
	 * two layers, plus 3 T rows */
	assert_int_equal(lines, 2 * 31 + 3);
}

static int cancel_after(void *user, const fasvd_progress *p)
{
	int *n = user;
	if (strcmp(p->stage, "layer") == 0 && --*n == 0)
		return 1;
	return 0;
}

static void read_file(const char *path, char **data, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	*data = malloc((size_t)len + 1);
	assert_int_equal(fread(*data, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	*n = (size_t)len;
}

static void assert_same_file(const char *a, const char *b)
{
	char *da, *db;
	size_t na, nb;
	read_file(a, &da, &na);
	read_file(b, &db, &nb);
	assert_int_equal(na, nb);
	assert_memory_equal(da, db, na);
	free(da);
	free(db);
}

static void test_resume_after_cancel(void **state)
{
	(void)state;
	char model[600], full[600], part[600];
	snprintf(model, sizeof model, "%s/resume", tmpdir);
	snprintf(full, sizeof full, "%s/full.safetensors", tmpdir);
	snprintf(part, sizeof part, "%s/part.safetensors", tmpdir);
	write_llama(model, 4, 64, 4, 16);
	assert_ok(fasvd_analyze(NULL, model, full, NULL));
	for (int stop = 1; stop <= 3; stop++) {
		unlink(part);
		int n = stop;
		fasvd_analyze_opts o;
		fasvd_analyze_opts_init(&o, sizeof o);
		o.progress = cancel_after;
		o.progress_user = &n;
		assert_fasvd(fasvd_analyze(NULL, model, part, &o), FASVD_ECANCELED);
		fasvd_st *st = NULL;
		assert_ok(fasvd_st_open(&st, NULL, part)); /* complete and readable */
		assert_string_equal(test_st_meta(st, "complete"), "false");
		fasvd_st_free(st);
		fasvd_analyze_opts_init(&o, sizeof o);
		o.resume = 1;
		assert_ok(fasvd_analyze(NULL, model, part, &o));
		assert_same_file(full, part);
	}
	/* resuming with other options is refused, the file is kept */
	fasvd_analyze_opts o;
	fasvd_analyze_opts_init(&o, sizeof o);
	o.resume = 1;
	o.fold_norms = 0;
	assert_fasvd(fasvd_analyze(NULL, model, part, &o), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "fold_norms"));
	assert_same_file(full, part);
}

/* Analyse model into a new file out; the microseconds it took. */
static double timed_analyze(const char *model, const char *out)
{
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_ok(fasvd_analyze(NULL, model, out, NULL));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
}

/* Run the analysis (resume, force as given) in a child and SIGKILL it
 * after `us` microseconds; whether it was killed before it ended. */
static bool kill_analyze(const char *model, const char *out, int resume, int force, double us)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fasvd_analyze_opts o;
		fasvd_analyze_opts_init(&o, sizeof o);
		o.resume = resume;
		o.force = force;
		_exit(fasvd_analyze(NULL, model, out, &o) == 0 ? 0 : 1);
	}
	usleep((useconds_t)us);
	kill(pid, SIGKILL);
	int status;
	waitpid(pid, &status, 0);
	return WIFSIGNALED(status);
}

/* Kill a child running the analysis at arbitrary moments with SIGKILL; the
 * output is always absent or a readable spectra file, and --resume yields
 * the uninterrupted file byte for byte. */
static void test_resume_after_sigkill(void **state)
{
	(void)state;
	char model[600], full[600], part[600];
	snprintf(model, sizeof model, "%s/kill", tmpdir);
	snprintf(full, sizeof full, "%s/kfull.safetensors", tmpdir);
	snprintf(part, sizeof part, "%s/kpart.safetensors", tmpdir);
	write_llama(model, 6, 96, 6, 16);
	double run_us = timed_analyze(model, full);
	int killed_midway = 0;
	/* under valgrind a few kills are enough (each run is 50x slower) */
	int trials = getenv("FASVD_TEST_VALGRIND") ? 2 : 8;
	for (int trial = 0; trial < trials; trial++) {
		unlink(part);
		if (kill_analyze(model, part, 1, 0, run_us * (trial + 0.5) / trials))
			killed_midway++;
		if (access(part, F_OK) == 0) {
			fasvd_st *st = NULL;
			assert_ok(fasvd_st_open(&st, NULL, part));
			assert_string_equal(test_st_meta(st, "format"), "fasvd.spectra");
			fasvd_st_free(st);
		}
		fasvd_analyze_opts o;
		fasvd_analyze_opts_init(&o, sizeof o);
		o.resume = 1;
		assert_ok(fasvd_analyze(NULL, model, part, &o));
		assert_same_file(full, part);
	}
	print_message("# %d of %d runs were killed mid-way\n", killed_midway, trials);
}

static void test_failure_leaves_nothing(void **state)
{
	(void)state;
	char model[600], out[600];
	snprintf(model, sizeof model, "%s/fail", tmpdir);
	snprintf(out, sizeof out, "%s/fail.safetensors", tmpdir);
	write_llama(model, 2, 64, 4, 16);
	fasvd_analyze_opts o;
	fasvd_analyze_opts_init(&o, sizeof o);
	const char *globs[] = {"no.such.tensor.*"};
	o.tensor_globs = globs;
	o.n_tensor_globs = 1;
	assert_fasvd(fasvd_analyze(NULL, model, out, &o), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "no.such.tensor"));
	assert_int_equal(access(out, F_OK), -1);
	fasvd_analyze_opts_init(&o, sizeof o);
	o.layer_first = 1;
	o.layer_last = 5;
	assert_fasvd(fasvd_analyze(NULL, model, out, &o), FASVD_EINVAL);
	assert_int_equal(access(out, F_OK), -1);
	/* an output folder that does not exist */
	char bad[700];
	snprintf(bad, sizeof bad, "%s/missing/dir/out.safetensors", tmpdir);
	assert_fasvd(fasvd_analyze(NULL, model, bad, NULL), FASVD_EIO);
	/* a writable --json with an unwritable --csv: neither summary (nor the
	 * spectra file) is left */
	char json[700], csv[700], plain[700];
	snprintf(json, sizeof json, "%s/fail-summary.json", tmpdir);
	snprintf(plain, sizeof plain, "%s/plain-file", tmpdir);
	snprintf(csv, sizeof csv, "%s/plain-file/s.csv", tmpdir);
	FILE *pf = fopen(plain, "w");
	assert_non_null(pf);
	fclose(pf);
	fasvd_analyze_opts_init(&o, sizeof o);
	o.json_path = json;
	o.csv_path = csv;
	assert_fasvd(fasvd_analyze(NULL, model, out, &o), FASVD_EIO);
	assert_non_null(strstr(fasvd_last_error(), "s.csv"));
	assert_int_equal(access(json, F_OK), -1);
	assert_int_equal(access(out, F_OK), -1);
}

/* A copy of the llama fixture at dir; *off is the file offset of the
 * third float of its last layer's o_proj (the victim for a NaN). */
static void write_victim(const char *dir, char *file, size_t nfile, long *off)
{
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.dtype = FASVD_DTYPE_F32;
	assert_ok(fasvd_fixture_write(NULL, dir, "llama", &fo));
	fasvd_st *st = NULL;
	snprintf(file, nfile, "%s/model.safetensors", dir);
	assert_ok(fasvd_st_open(&st, NULL, file));
	const char *victim = "model.layers.1.self_attn.o_proj.weight";
	const void *p;
	uint64_t nb;
	assert_ok(fasvd_st_raw(&p, &nb, st, victim));
	char *whole;
	size_t len;
	read_file(file, &whole, &len);
	char *hit = memmem(whole, len, p, (size_t)nb);
	assert_non_null(hit);
	*off = (long)(hit - whole) + 8;
	free(whole);
	fasvd_st_free(st);
}

/* Write the float v at offset off of file; the old value in *old. */
static void poke(const char *file, long off, float v, float *old)
{
	int fd = open(file, O_RDWR);
	assert_true(fd >= 0);
	if (old)
		assert_true(pread(fd, old, 4, off) == 4);
	assert_true(pwrite(fd, &v, 4, off) == 4);
	close(fd);
}

/* A NaN in the last layer of a new output: the completed layer is kept
 * (incomplete, resumable) and the message says where. */
static void test_nan_keeps_completed_layers(void **state)
{
	(void)state;
	char model[600], out[600], file[700];
	long off;
	snprintf(model, sizeof model, "%s/nan", tmpdir);
	snprintf(out, sizeof out, "%s/nan.safetensors", tmpdir);
	write_victim(model, file, sizeof file, &off);
	float old;
	poke(file, off, NAN, &old);
	assert_fasvd(fasvd_analyze(NULL, model, out, NULL), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), "o_proj"));
	assert_non_null(strstr(fasvd_last_error(), "resume"));
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, out));
	assert_string_equal(test_st_meta(st, "complete"), "false");
	assert_string_equal(test_st_meta(st, "layers_done"), "0");
	fasvd_st_free(st);
	/* the weight mended, --resume finishes the file */
	poke(file, off, old, NULL);
	fasvd_analyze_opts o;
	fasvd_analyze_opts_init(&o, sizeof o);
	o.resume = 1;
	assert_ok(fasvd_analyze(NULL, model, out, &o));
}

/* Every failure over an earlier spectra file leaves it byte-identical: a
 * bad --json folder (refused before any work), a NaN in the last layer
 * (the run's layers go to OUT.partial, which --resume continues), replacing
 * a complete file without force. */
static void test_failures_keep_earlier_file(void **state)
{
	(void)state;
	char model[600], keep[600], ref[600], partial[700], file[700], bad[700];
	long off;
	snprintf(model, sizeof model, "%s/keepm", tmpdir);
	snprintf(keep, sizeof keep, "%s/keep.safetensors", tmpdir);
	snprintf(ref, sizeof ref, "%s/keep-ref.safetensors", tmpdir);
	snprintf(partial, sizeof partial, "%s.partial", keep);
	snprintf(bad, sizeof bad, "%s/nonexistent_dir/s.json", tmpdir);
	write_victim(model, file, sizeof file, &off);
	assert_ok(fasvd_analyze(NULL, model, keep, NULL));
	assert_ok(fasvd_analyze(NULL, model, ref, NULL));
	fasvd_analyze_opts o;
	fasvd_analyze_opts_init(&o, sizeof o);
	/* a complete file is not replaced without force */
	assert_fasvd(fasvd_analyze(NULL, model, keep, &o), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "force"));
	assert_same_file(ref, keep);
	/* a --json (or --csv) folder that does not exist: refused before work */
	o.force = 1;
	o.json_path = bad;
	assert_fasvd(fasvd_analyze(NULL, model, keep, &o), FASVD_EIO);
	assert_non_null(strstr(fasvd_last_error(), "nonexistent_dir"));
	o.json_path = NULL;
	o.csv_path = bad;
	assert_fasvd(fasvd_analyze(NULL, model, keep, &o), FASVD_EIO);
	assert_same_file(ref, keep);
	assert_int_equal(access(partial, F_OK), -1);
	/* NaN in the last layer: keep untouched, layer 0 in keep.partial */
	float old;
	poke(file, off, NAN, &old);
	fasvd_analyze_opts_init(&o, sizeof o);
	o.force = 1;
	assert_fasvd(fasvd_analyze(NULL, model, keep, &o), FASVD_ENONFINITE);
	assert_non_null(strstr(fasvd_last_error(), ".partial"));
	assert_same_file(ref, keep);
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, partial));
	assert_string_equal(test_st_meta(st, "layers_done"), "0");
	fasvd_st_free(st);
	/* the partial file is neither replaced nor resumed silently */
	fasvd_analyze_opts_init(&o, sizeof o);
	assert_fasvd(fasvd_analyze(NULL, model, keep, &o), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), ".partial"));
	/* mended, --resume continues the partial file and puts it in place */
	poke(file, off, old, NULL);
	o.resume = 1;
	assert_ok(fasvd_analyze(NULL, model, keep, &o));
	assert_int_equal(access(partial, F_OK), -1);
	assert_same_file(ref, keep);
}

/* SIGKILL at arbitrary moments of a run replacing a complete file (force):
 * the file is byte-identical whenever the run is killed, and --resume
 * finishes the partial file. */
static void test_sigkill_keeps_earlier_file(void **state)
{
	(void)state;
	char model[600], ref[600], keep[600], partial[700];
	snprintf(model, sizeof model, "%s/kill2", tmpdir);
	snprintf(ref, sizeof ref, "%s/k2ref.safetensors", tmpdir);
	snprintf(keep, sizeof keep, "%s/k2keep.safetensors", tmpdir);
	snprintf(partial, sizeof partial, "%s.partial", keep);
	write_llama(model, 6, 96, 6, 16);
	double run_us = timed_analyze(model, ref);
	assert_ok(fasvd_analyze(NULL, model, keep, NULL));
	int trials = getenv("FASVD_TEST_VALGRIND") ? 2 : 6;
	for (int trial = 0; trial < trials; trial++) {
		kill_analyze(model, keep, 0, 1, run_us * (trial + 0.5) / trials);
		assert_same_file(ref, keep);
		fasvd_analyze_opts o;
		fasvd_analyze_opts_init(&o, sizeof o);
		o.resume = 1;
		assert_ok(fasvd_analyze(NULL, model, keep, &o));
		assert_int_equal(access(partial, F_OK), -1);
		assert_same_file(ref, keep);
	}
}

static bool is_link(const char *path)
{
	struct stat sb;
	return lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode);
}

/* Outputs through a symbolic link write the link's target (the link stays);
 * a FIFO or a character device takes a summary as a stream (and stays);
 * the spectra file itself must be a regular file. */
static void test_links_fifos_devices(void **state)
{
	(void)state;
	char model[600], real[600], link[600], jreal[600], jlink[600], fifo[600], ref[600];
	snprintf(model, sizeof model, "%s/links", tmpdir);
	snprintf(real, sizeof real, "%s/real.safetensors", tmpdir);
	snprintf(link, sizeof link, "%s/link.safetensors", tmpdir);
	snprintf(jreal, sizeof jreal, "%s/real.json", tmpdir);
	snprintf(jlink, sizeof jlink, "%s/link.json", tmpdir);
	snprintf(fifo, sizeof fifo, "%s/fifo.json", tmpdir);
	snprintf(ref, sizeof ref, "%s/links-ref.json", tmpdir);
	write_llama(model, 2, 64, 4, 16);
	/* dangling links: the spectra file and the summary are created */
	assert_int_equal(symlink("real.safetensors", link), 0);
	assert_int_equal(symlink(jreal, jlink), 0);
	fasvd_analyze_opts o;
	fasvd_analyze_opts_init(&o, sizeof o);
	o.json_path = jlink;
	assert_ok(fasvd_analyze(NULL, model, link, &o));
	assert_true(is_link(link) && is_link(jlink));
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, real));
	assert_string_equal(test_st_meta(st, "complete"), "true");
	fasvd_st_free(st);
	/* again over the existing targets (force): still links */
	o.force = 1;
	assert_ok(fasvd_analyze(NULL, model, link, &o));
	assert_true(is_link(link) && is_link(jlink));
	assert_int_equal(access(jreal, F_OK), 0);
	o.json_path = ref;
	assert_ok(fasvd_analyze(NULL, model, link, &o));
	assert_same_file(ref, jreal);
	/* a FIFO: its reader gets the whole summary, the FIFO stays */
	assert_int_equal(mkfifo(fifo, 0600), 0);
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(fifo, O_RDONLY);
		size_t n = 0;
		char buf[4096];
		ssize_t k;
		while ((k = read(fd, buf, sizeof buf)) > 0)
			n += (size_t)k;
		_exit(write(pfd[1], &n, sizeof n) == sizeof n ? 0 : 1);
	}
	close(pfd[1]);
	o.json_path = fifo;
	assert_ok(fasvd_analyze(NULL, model, link, &o));
	size_t got = 0;
	assert_true(read(pfd[0], &got, sizeof got) == sizeof got);
	close(pfd[0]);
	waitpid(pid, NULL, 0);
	char *want;
	size_t nwant;
	read_file(ref, &want, &nwant);
	free(want);
	assert_int_equal(got, nwant);
	struct stat sb;
	assert_int_equal(lstat(fifo, &sb), 0);
	assert_true(S_ISFIFO(sb.st_mode));
	/* a character device: written in place, left a device */
	o.json_path = "/dev/null";
	o.csv_path = "/dev/null";
	assert_ok(fasvd_analyze(NULL, model, link, &o));
	assert_int_equal(stat("/dev/null", &sb), 0);
	assert_true(S_ISCHR(sb.st_mode));
	/* the spectra file cannot be a stream */
	fasvd_analyze_opts_init(&o, sizeof o);
	assert_fasvd(fasvd_analyze(NULL, model, fifo, &o), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "regular file"));
	assert_fasvd(fasvd_analyze(NULL, model, "/dev/null", &o), FASVD_EINVAL);
	assert_fasvd(fasvd_analyze(NULL, model, "-", &o), FASVD_EINVAL);
	assert_int_equal(lstat(fifo, &sb), 0);
	assert_true(S_ISFIFO(sb.st_mode));
	/* a summary over the spectra file or over the other summary */
	fasvd_analyze_opts_init(&o, sizeof o);
	o.force = 1;
	o.json_path = real;
	assert_fasvd(fasvd_analyze(NULL, model, link, &o), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "spectra file"));
	o.json_path = jlink;
	o.csv_path = jreal;
	assert_fasvd(fasvd_analyze(NULL, model, link, &o), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "same file"));
	o.csv_path = NULL;
	/* a folder where a file is expected */
	o.json_path = tmpdir;
	o.force = 1;
	assert_fasvd(fasvd_analyze(NULL, model, link, &o), FASVD_EIO);
	assert_non_null(strstr(fasvd_last_error(), "folder"));
}

static bool running_under_sanitizer(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
	return true;
#else
	return false;
#endif
#else
	return false;
#endif
}

/* Peak resident memory of a child analysing `model`, in KiB. */
static long child_peak_kib(const char *model, const char *out)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fasvd_ctx *ctx = NULL;
		if (fasvd_ctx_new(&ctx, NULL) || fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, 1))
			_exit(2);
		fasvd_analyze_opts o;
		fasvd_analyze_opts_init(&o, sizeof o);
		o.force = 1;
		_exit(fasvd_analyze(ctx, model, out, &o) == 0 ? 0 : 1);
	}
	int status;
	struct rusage ru;
	assert_true(wait4(pid, &status, 0, &ru) == pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return ru.ru_maxrss;
}

static void test_peak_memory_flat_in_layers(void **state)
{
	(void)state;
	if (getenv("FASVD_TEST_VALGRIND") || running_under_sanitizer()) {
		/* memcheck's and ASan's own memory (shadow, quarantine of freed
		 * blocks) make RSS meaningless */
		test_skip("peak RSS is not measured under valgrind or a sanitizer\n");
	}
	char m1[600], m8[600], out[600];
	snprintf(m1, sizeof m1, "%s/mem1", tmpdir);
	snprintf(m8, sizeof m8, "%s/mem8", tmpdir);
	snprintf(out, sizeof out, "%s/mem.safetensors", tmpdir);
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.hidden = 512;
	fo.n_heads = 8;
	fo.n_kv_heads = 8;
	fo.head_dim = 64;
	fo.dtype = FASVD_DTYPE_F32;
	fo.intermediate = -1;
	fo.n_layers = 1;
	assert_ok(fasvd_fixture_write(NULL, m1, "llama", &fo));
	fo.n_layers = 8;
	assert_ok(fasvd_fixture_write(NULL, m8, "llama", &fo));
	long p1 = child_peak_kib(m1, out);
	long p8 = child_peak_kib(m8, out);
	/* one layer's attention weights: 4 matrices of 512 x 512 F32 = 4 MiB; keeping
	 * the 7 extra layers resident would add 28 MiB */
	long layer_kib = 4 * 512 * 512 * 4 / 1024;
	print_message("# peak RSS: 1 layer %ld KiB, 8 layers %ld KiB (one layer's weights %ld "
	              "KiB)\n",
	              p1, p8, layer_kib);
	assert_true(p8 - p1 < layer_kib * 7 / 4);
}

/* Rewrite the single-file fixture in `model` with extra 2-D F32 tensors
 * (6 x 5, full rank) of the given names. */
static void add_tensors(const char *model, const char *const *names, int n)
{
	char file[700];
	snprintf(file, sizeof file, "%s/model.safetensors", model);
	fasvd_st *st = NULL;
	fasvd_st_writer *w = NULL;
	assert_ok(fasvd_st_open(&st, NULL, file));
	assert_ok(fasvd_st_writer_new(&w, NULL));
	for (int64_t i = 0; i < fasvd_st_count(st); i++) {
		const char *nm = fasvd_st_name(st, i);
		fasvd_st_info inf;
		fasvd_st_info_init(&inf, sizeof inf);
		const void *p;
		uint64_t nb;
		assert_ok(fasvd_st_info_get(&inf, st, nm));
		assert_ok(fasvd_st_raw(&p, &nb, st, nm));
		assert_ok(fasvd_st_writer_add(w, nm, inf.dtype, inf.ndim, inf.shape, p, nb, 0));
	}
	for (int k = 0; k < n; k++) {
		float v[30];
		for (int i = 0; i < 30; i++)
			v[i] = (float)sin(0.37 * i + k) + (i % 6 == i / 5 ? 2.0f : 0.0f);
		int64_t shape[2] = {6, 5};
		assert_ok(fasvd_st_writer_add(w, names[k], "F32", 2, shape, v, sizeof v, 0));
	}
	assert_ok(fasvd_st_writer_write(w, file));
	fasvd_st_writer_free(w);
	fasvd_st_free(st);
}

static int cancel_at_tensor(void *user, const fasvd_progress *p)
{
	int *n = user;
	if (strcmp(p->stage, "tensor") == 0 && --*n == 0)
		return 1;
	return 0;
}

/* Extra tensors are named T.{full name}, however long; the JSON and CSV
 * summaries are created with the mode of any new file (0666 minus the
 * umask), not mkstemp's 0600. */
static void test_long_names_and_summary_mode(void **state)
{
	(void)state;
	char model[600], out[600], json[600], csv[600];
	snprintf(model, sizeof model, "%s/longname", tmpdir);
	snprintf(out, sizeof out, "%s/longname.safetensors", tmpdir);
	snprintf(json, sizeof json, "%s/longname.json", tmpdir);
	snprintf(csv, sizeof csv, "%s/longname.csv", tmpdir);
	write_llama(model, 1, 64, 4, 16);
	char longname[701];
	memset(longname, 'w', 700);
	memcpy(longname, "extra.", 6);
	longname[700] = '\0';
	const char *names[] = {longname};
	add_tensors(model, names, 1);
	fasvd_analyze_opts o;
	fasvd_analyze_opts_init(&o, sizeof o);
	const char *globs[] = {"extra.*"};
	o.tensor_globs = globs;
	o.n_tensor_globs = 1;
	o.json_path = json;
	o.csv_path = csv;
	mode_t old = umask(022);
	int rc = fasvd_analyze(NULL, model, out, &o);
	umask(old);
	assert_ok(rc);
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, out));
	char full[710];
	snprintf(full, sizeof full, "T.%s", longname);
	assert_ok(fasvd_st_find(NULL, st, full));
	fasvd_st_free(st);
	struct stat sb;
	assert_int_equal(stat(out, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0644);
	assert_int_equal(stat(json, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0644);
	assert_int_equal(stat(csv, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0644);
}

/* Resume with extra tensors: names holding commas ("a,x" must not read as
 * "a" and "x" done), and a narrower --tensors selection than the file's
 * (its other spectra are dropped even when nothing is left to compute). */
static void test_resume_extra_tensors(void **state)
{
	(void)state;
	char model[600], full[600], part[600], only_x[600];
	snprintf(model, sizeof model, "%s/rextra", tmpdir);
	snprintf(full, sizeof full, "%s/rextra-full.safetensors", tmpdir);
	snprintf(part, sizeof part, "%s/rextra-part.safetensors", tmpdir);
	snprintf(only_x, sizeof only_x, "%s/rextra-x.safetensors", tmpdir);
	write_llama(model, 1, 64, 4, 16);
	const char *names[] = {"a,x", "x"};
	add_tensors(model, names, 2);
	const char *globs[] = {"a,x", "x"};
	fasvd_analyze_opts o;
	fasvd_analyze_opts_init(&o, sizeof o);
	o.tensor_globs = globs;
	o.n_tensor_globs = 2;
	assert_ok(fasvd_analyze(NULL, model, full, &o));
	/* stopped after the first extra tensor ("a,x": sorted first) */
	int n = 1;
	o.progress = cancel_at_tensor;
	o.progress_user = &n;
	assert_fasvd(fasvd_analyze(NULL, model, part, &o), FASVD_ECANCELED);
	o.progress = NULL;
	o.resume = 1;
	assert_ok(fasvd_analyze(NULL, model, part, &o));
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, part));
	assert_ok(fasvd_st_find(NULL, st, "T.x"));
	assert_ok(fasvd_st_find(NULL, st, "T.a,x"));
	fasvd_st_free(st);
	assert_same_file(full, part);
	/* the complete file resumed with only "x" equals a fresh "x" run */
	fasvd_analyze_opts_init(&o, sizeof o);
	o.tensor_globs = globs + 1;
	o.n_tensor_globs = 1;
	assert_ok(fasvd_analyze(NULL, model, only_x, &o));
	o.resume = 1;
	assert_ok(fasvd_analyze(NULL, model, part, &o));
	assert_same_file(only_x, part);
}

/* --tensors over an FP8 checkpoint selects the weights (dequantised with their
 * scales), never the `_scale_inv` grids themselves. */
static void test_tensors_skip_scales(void **state)
{
	(void)state;
	char model[600], out[600];
	snprintf(model, sizeof model, "%s/fp8", tmpdir);
	snprintf(out, sizeof out, "%s/fp8.safetensors", tmpdir);
	assert_ok(fasvd_fixture_write(NULL, model, "deepseek_v3", NULL));
	fasvd_analyze_opts o;
	fasvd_analyze_opts_init(&o, sizeof o);
	const char *globs[] = {"*kv_b_proj*"};
	o.tensor_globs = globs;
	o.n_tensor_globs = 1;
	assert_ok(fasvd_analyze(NULL, model, out, &o));
	fasvd_st *st = NULL;
	assert_ok(fasvd_st_open(&st, NULL, out));
	int64_t nt = 0;
	for (int64_t i = 0; i < fasvd_st_count(st); i++) {
		const char *nm = fasvd_st_name(st, i);
		if (strncmp(nm, "T.", 2) != 0)
			continue;
		nt++;
		assert_null(strstr(nm, "_scale_inv"));
	}
	assert_int_equal(nt, 2); /* one kv_b_proj weight per layer of the fixture */
	fasvd_st_free(st);
	/* a pattern matching only scales matches nothing */
	const char *only[] = {"*_scale_inv"};
	o.tensor_globs = only;
	assert_fasvd(fasvd_analyze(NULL, model, out, &o), FASVD_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_llama_fixture_vs_reference),
		cmocka_unit_test(test_stories260k_vs_reference),
		cmocka_unit_test(test_schema_and_metadata),
		cmocka_unit_test(test_resume_after_cancel),
		cmocka_unit_test(test_resume_after_sigkill),
		cmocka_unit_test(test_failure_leaves_nothing),
		cmocka_unit_test(test_peak_memory_flat_in_layers),
		cmocka_unit_test(test_tensors_skip_scales),
		cmocka_unit_test(test_long_names_and_summary_mode),
		cmocka_unit_test(test_resume_extra_tensors),
		cmocka_unit_test(test_nan_keeps_completed_layers),
		cmocka_unit_test(test_failures_keep_earlier_file),
		cmocka_unit_test(test_sigkill_keeps_earlier_file),
		cmocka_unit_test(test_links_fifos_devices),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
