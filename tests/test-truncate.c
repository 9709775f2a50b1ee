/* Tests of fasvd_truncate (truncate.h): a fixture checkpoint of every
 * architecture truncated, read back with fasvd_st_open, reconstructed and
 * compared with the input; byte identity of the other tensors; the
 * config.json section; cancellation and failures leave no output. */
#include "test-helpers.h"
#include "test-peak-alloc.h"
#include "fixture.h"

#include <dirent.h>
#include <stdbool.h>
#include <jansson.h>
#include <lapacke.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/fasvd-test-truncate-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static void rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char p[1024];
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		struct stat sb;
		if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
			rm_rf(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static int teardown(void **state)
{
	(void)state;
	rm_rf(tmpdir);
	return 0;
}

static bool exists(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0;
}

/* No "<out>.tmp-*" left beside out. */
static int leftovers(const char *out)
{
	const char *base = strrchr(out, '/') + 1;
	char parent[512];
	snprintf(parent, sizeof parent, "%.*s", (int)(base - out - 1), out);
	DIR *d = opendir(parent);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, base, strlen(base)) && strstr(e->d_name, ".tmp-"))
			n++;
	closedir(d);
	return n;
}

/* Decode any checkpoint tensor (1..3-D float) of st to doubles. */
static double *read_f64(fasvd_st *st, const char *name, int64_t *shape, int *ndim)
{
	fasvd_st_info info;
	fasvd_st_info_init(&info, sizeof info);
	assert_ok(fasvd_st_info_get(&info, st, name));
	const void *data;
	uint64_t nb;
	assert_ok(fasvd_st_raw(&data, &nb, st, name));
	fasvd_dtype dt;
	assert_ok(fasvd_dtype_from_name(&dt, info.dtype));
	size_t n = nb / fasvd_dtype_size(dt);
	double *d = malloc(sizeof(double) * (n ? n : 1));
	assert_ok(fasvd_dtype_decode(d, dt, data, n));
	*ndim = info.ndim;
	for (int i = 0; i < info.ndim; i++)
		shape[i] = info.shape[i];
	return d;
}

static double *dequant(fasvd_st *st, const char *name, int64_t *rows, int64_t *cols)
{
	fasvd_tensor *t;
	assert_ok(fasvd_st_tensor(&t, st, name, 0));
	*rows = fasvd_tensor_rows(t);
	*cols = fasvd_tensor_cols(t);
	double *d = malloc(sizeof(double) * (size_t)(*rows * *cols));
	assert_ok(fasvd_tensor_to_f64(d, *cols, FASVD_LAYOUT_ROW_MAJOR, t, 0));
	fasvd_tensor_free(t);
	return d;
}

static double tail_of(const double *w, int64_t m, int64_t n, int64_t r, double *total)
{
	int64_t p = m < n ? m : n;
	double *a = malloc(sizeof(double) * (size_t)(m * n)), *s = malloc(sizeof(double) * (size_t)p);
	double *sup = malloc(sizeof(double) * (size_t)(p + 1));
	memcpy(a, w, sizeof(double) * (size_t)(m * n));
	assert_int_equal(LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'N', 'N', (int)n, (int)m, a, (int)n, s,
	                                NULL, 1, NULL, 1, sup),
	                 0);
	double t = 0, tot = 0;
	for (int64_t i = p - 1; i >= 0; i--) {
		tot += s[i] * s[i];
		if (i >= r)
			t += s[i] * s[i];
	}
	free(a);
	free(s);
	free(sup);
	*total = tot;
	return t;
}

typedef struct count_state {
	int n, stop_at;
	int skipped;
	int64_t max_heads;
} count_state;

static int count_cb(void *arg, const fasvd_truncate_entry *e)
{
	count_state *c = arg;
	c->n++;
	c->skipped += e->skipped;
	if (e->report.heads > c->max_heads)
		c->max_heads = e->report.heads;
	assert_non_null(e->name);
	assert_true(e->size == sizeof *e);
	return c->stop_at && c->n >= c->stop_at;
}

/* Check an output folder against its input: reconstruction of every
 * replaced tensor (per head), byte identity of the others. */
static void check_round_trip(const char *in, const char *out, double tol, int64_t *n_replaced)
{
	fasvd_st *si, *so;
	assert_ok(fasvd_st_open(&si, NULL, in));
	assert_ok(fasvd_st_open(&so, NULL, out));
	/* the block size of FP8 checkpoints */
	char cfgp[512];
	snprintf(cfgp, sizeof cfgp, "%s/config.json", out);
	json_error_t je;
	json_t *cfg = json_load_file(cfgp, 0, &je);
	assert_non_null(cfg);
	json_t *sec = json_object_get(cfg, "fasvd_lowrank");
	assert_non_null(sec);
	assert_string_equal(json_string_value(json_object_get(sec, "format")), "fasvd.lowrank");
	json_t *tens = json_object_get(sec, "tensors");
	assert_true(json_is_object(tens));
	*n_replaced = (int64_t)json_object_size(tens);
	const char *wname;
	json_t *e;
	json_object_foreach(tens, wname, e) {
		const char *an = json_string_value(json_object_get(e, "A"));
		const char *bn = json_string_value(json_object_get(e, "B"));
		int64_t h = json_integer_value(json_object_get(e, "heads"));
		int64_t r = json_integer_value(json_object_get(e, "rank"));
		int64_t inner = json_integer_value(json_object_get(e, "inner"));
		double lost = json_real_value(json_object_get(e, "energy_lost"));
		assert_int_equal(inner, r > 0 ? r : 1);
		/* the weight and its scale are gone */
		assert_fasvd(fasvd_st_find(NULL, so, wname), FASVD_ENOTFOUND);
		char sc[600];
		snprintf(sc, sizeof sc, "%s_scale_inv", wname);
		assert_fasvd(fasvd_st_find(NULL, so, sc), FASVD_ENOTFOUND);
		int64_t m, n, sa[8], sb[8];
		int na, nb;
		double *w = dequant(si, wname, &m, &n);
		double *a = read_f64(so, an, sa, &na), *b = read_f64(so, bn, sb, &nb);
		if (h > 1) {
			assert_int_equal(na, 3);
			assert_int_equal(sa[0], h);
			assert_int_equal(sa[1], m / h);
			assert_int_equal(sa[2], inner);
			assert_int_equal(sb[0], h);
			assert_int_equal(sb[1], inner);
			assert_int_equal(sb[2], n);
		} else {
			assert_int_equal(na, 2);
			assert_int_equal(sa[0], m);
			assert_int_equal(sa[1], inner);
			assert_int_equal(sb[1], n);
		}
		int64_t rh = m / h;
		double err = 0, tot = 0, tail = 0;
		for (int64_t k = 0; k < h; k++) {
			double t1;
			tail += tail_of(w + k * rh * n, rh, n, r, &t1);
			for (int64_t i = 0; i < rh; i++)
				for (int64_t j = 0; j < n; j++) {
					double acc = 0;
					for (int64_t q = 0; q < inner; q++)
						acc += a[(k * rh + i) * inner + q] * b[(k * inner + q) * n + j];
					double x = w[(k * rh + i) * n + j];
					err += (x - acc) * (x - acc);
					tot += x * x;
				}
		}
		/* the identity: ‖W − AB‖² / ‖W‖² = Σ_{i>r} σ² / Σ σ² */
		assert_close(err / tot, tail / tot, 0, tol);
		assert_close(lost, tail / tot, 0, tol);
		free(w);
		free(a);
		free(b);
	}
	/* every other tensor: same bytes */
	for (int64_t i = 0; i < fasvd_st_count(si); i++) {
		const char *name = fasvd_st_name(si, i);
		char sc[600];
		bool replaced = json_object_get(tens, name) != NULL;
		if (!replaced && strlen(name) > 10 &&
		    !strcmp(name + strlen(name) - 10, "_scale_inv")) {
			snprintf(sc, sizeof sc, "%.*s", (int)(strlen(name) - 10), name);
			replaced = json_object_get(tens, sc) != NULL;
		}
		if (replaced)
			continue;
		const void *d1, *d2;
		uint64_t n1, n2;
		assert_ok(fasvd_st_raw(&d1, &n1, si, name));
		assert_ok(fasvd_st_raw(&d2, &n2, so, name));
		assert_int_equal(n1, n2);
		assert_memory_equal(d1, d2, n1);
		fasvd_st_info i1, i2;
		fasvd_st_info_init(&i1, sizeof i1);
		fasvd_st_info_init(&i2, sizeof i2);
		assert_ok(fasvd_st_info_get(&i1, si, name));
		assert_ok(fasvd_st_info_get(&i2, so, name));
		assert_string_equal(i1.dtype, i2.dtype);
		assert_int_equal(i1.ndim, i2.ndim);
		assert_string_equal(strrchr(i1.file, '/'), strrchr(i2.file, '/'));
	}
	assert_int_equal(fasvd_st_shard_count(si), fasvd_st_shard_count(so));
	json_decref(cfg);
	fasvd_st_free(si);
	fasvd_st_free(so);
}

static void test_every_architecture(void **state)
{
	(void)state;
	for (int64_t ai = 0; ai < fasvd_arch_count(); ai++) {
		const char *arch = fasvd_arch_name(ai);
		char in[512], out[512];
		snprintf(in, sizeof in, "%s/%s", tmpdir, arch);
		fasvd_fixture_opts fx;
		fasvd_fixture_opts_init(&fx, sizeof fx);
		fx.n_layers = 1;
		assert_ok(fasvd_fixture_write(NULL, in, arch, &fx));
		for (int per_head = 0; per_head <= 1; per_head++) {
			snprintf(out, sizeof out, "%s/%s-out%d", tmpdir, arch, per_head);
			fasvd_truncate_opts o;
			fasvd_truncate_opts_init(&o, sizeof o);
			fasvd_factor_opts fo;
			fasvd_factor_opts_init(&fo, sizeof fo);
			o.factor = &fo;
			fo.tau = 0.05;
			o.dtype = FASVD_DTYPE_F64;
			fo.compute = FASVD_COMPUTE_F64;
			o.per_head = per_head;
			count_state cs = {0, 0, 0, 0};
			int rc = fasvd_truncate(NULL, in, out, &o, count_cb, &cs);
			if (rc)
				fail_msg("%s: %s", arch, fasvd_last_error());
			int64_t n;
			check_round_trip(in, out, 1e-10, &n);
			assert_int_equal(n, cs.n);
			assert_true(n >= 2); /* gpt2, phi3, gpt_neox: fused qkv + o */
			/* per head: every layout has some weight with row heads */
			assert_true(per_head ? cs.max_heads > 1 : cs.max_heads == 1);
		}
	}
}

static void test_fp8_sharded_bf16(void **state)
{
	(void)state;
	char in[512], out[512];
	snprintf(in, sizeof in, "%s/dsv3", tmpdir);
	fasvd_fixture_opts fx;
	fasvd_fixture_opts_init(&fx, sizeof fx);
	fx.n_layers = 2;
	assert_ok(fasvd_fixture_write(NULL, in, "deepseek_v3", &fx));
	/* default dtype for FP8 weights: BF16 */
	snprintf(out, sizeof out, "%s/dsv3-bf16", tmpdir);
	fasvd_truncate_opts o;
	fasvd_truncate_opts_init(&o, sizeof o);
	fasvd_factor_opts fo;
	fasvd_factor_opts_init(&fo, sizeof fo);
	o.factor = &fo;
	fo.rank = 6;
	assert_ok(fasvd_truncate(NULL, in, out, &o, NULL, NULL));
	fasvd_st *so;
	assert_ok(fasvd_st_open(&so, NULL, out));
	fasvd_st_info info;
	fasvd_st_info_init(&info, sizeof info);
	assert_ok(fasvd_st_info_get(&info, so, "model.layers.1.self_attn.kv_b_proj.weight.A"));
	assert_string_equal(info.dtype, "BF16");
	assert_int_equal(info.shape[1], 6);
	fasvd_st_free(so);
	int64_t n;
	check_round_trip(in, out, 2e-2, &n); /* BF16 factors: their rounding */
	assert_int_equal(n, 10);
}

static int cancel_flag(void *arg)
{
	return __atomic_load_n((int *)arg, __ATOMIC_SEQ_CST);
}

static void test_cancel_and_failures(void **state)
{
	(void)state;
	char in[512], out[512];
	snprintf(in, sizeof in, "%s/llama-c", tmpdir);
	assert_ok(fasvd_fixture_write(NULL, in, "llama", NULL));
	snprintf(out, sizeof out, "%s/llama-c-out", tmpdir);
	fasvd_truncate_opts o;
	fasvd_truncate_opts_init(&o, sizeof o);
	fasvd_factor_opts fo;
	fasvd_factor_opts_init(&fo, sizeof fo);
	o.factor = &fo;
	fo.rank = 3;
	/* the callback stops it after the 3rd tensor */
	count_state cs = {0, 3, 0, 0};
	assert_fasvd(fasvd_truncate(NULL, in, out, &o, count_cb, &cs), FASVD_ECANCELED);
	assert_int_equal(cs.n, 3);
	assert_false(exists(out));
	assert_int_equal(leftovers(out), 0);
	/* the factor options' cancel hook */
	int flag = 1;
	fo.cancel = cancel_flag;
	fo.cancel_arg = &flag;
	assert_fasvd(fasvd_truncate(NULL, in, out, &o, NULL, NULL), FASVD_ECANCELED);
	assert_false(exists(out));
	assert_int_equal(leftovers(out), 0);
	flag = 0;
	assert_ok(fasvd_truncate(NULL, in, out, &o, NULL, NULL));
	/* out exists and is not empty now; in == out; NULLs */
	assert_fasvd(fasvd_truncate(NULL, in, out, &o, NULL, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "not empty"));
	assert_fasvd(fasvd_truncate(NULL, in, in, &o, NULL, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "input"));
	assert_fasvd(fasvd_truncate(NULL, NULL, out, &o, NULL, NULL), FASVD_EINVAL);
	char missing[512];
	snprintf(missing, sizeof missing, "%s/nope", tmpdir);
	snprintf(out, sizeof out, "%s/llama-c-out2", tmpdir);
	assert_fasvd(fasvd_truncate(NULL, missing, out, &o, NULL, NULL), FASVD_ENOTFOUND);
	/* truncating a truncated model: no attention weight left */
	char twice[512];
	snprintf(twice, sizeof twice, "%s/llama-c-out", tmpdir);
	assert_fasvd(fasvd_truncate(NULL, twice, out, &o, NULL, NULL), FASVD_ENOTFOUND);
	assert_false(exists(out));
	/* a factor name that already exists; a folder without config.json
	 * (no architecture: patterns name the tensors, config.json is created) */
	char odd[512], oddst[600];
	snprintf(odd, sizeof odd, "%s/odd", tmpdir);
	assert_int_equal(mkdir(odd, 0777), 0);
	snprintf(oddst, sizeof oddst, "%s/model.safetensors", odd);
	float buf[16];
	for (int i = 0; i < 16; i++)
		buf[i] = (float)(i % 5) - 1.5f;
	fasvd_st_writer *w;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	assert_ok(fasvd_st_writer_add(w, "w", "F32", 2, (int64_t[]){4, 4}, buf, 64, FASVD_ST_COPY));
	assert_ok(fasvd_st_writer_add(w, "v.A", "F32", 2, (int64_t[]){4, 4}, buf, 64, FASVD_ST_COPY));
	assert_ok(fasvd_st_writer_add(w, "v", "F32", 2, (int64_t[]){4, 4}, buf, 64, FASVD_ST_COPY));
	assert_ok(fasvd_st_writer_write(w, oddst));
	fasvd_st_writer_free(w);
	o.patterns = (const char *const[]){"v"};
	o.n_patterns = 1;
	assert_fasvd(fasvd_truncate(NULL, odd, out, &o, NULL, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "already has"));
	assert_false(exists(out));
	o.patterns = (const char *const[]){"w"};
	fo.rank = 2;
	o.dtype = FASVD_DTYPE_F64;
	o.only_if_smaller = 0; /* 2·(4 + 4) >= 4·4: not smaller, written as asked */
	fo.compute = FASVD_COMPUTE_F64;
	assert_ok(fasvd_truncate(NULL, odd, out, &o, NULL, NULL));
	int64_t nrep;
	check_round_trip(odd, out, 1e-12, &nrep);
	assert_int_equal(nrep, 1);
	/* per_head without an architecture */
	o.per_head = 1;
	snprintf(out, sizeof out, "%s/odd-out2", tmpdir);
	assert_true(fasvd_truncate(NULL, odd, out, &o, NULL, NULL) < 0);
	assert_false(exists(out));
	/* per_head needs heads the architecture knows; unknown opts size */
	o.n_patterns = 0;
	o.size = 3;
	assert_fasvd(fasvd_truncate(NULL, in, out, &o, NULL, NULL), FASVD_EINVAL);
	fasvd_truncate_opts_init(&o, sizeof o);
	o.dtype = FASVD_DTYPE_F8_E4M3;
	assert_fasvd(fasvd_truncate(NULL, in, out, &o, NULL, NULL), FASVD_EINVAL);
	assert_false(exists(out));
}

/* The whole file at path, NUL-terminated (free it); its length in *n. */
static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *buf = malloc(1 << 20);
	assert_non_null(buf);
	*n = fread(buf, 1, (1 << 20) - 1, f);
	buf[*n] = '\0';
	fclose(f);
	return buf;
}

static void copy_into(const char *src, const char *dir, const char *name)
{
	char dst[1024];
	snprintf(dst, sizeof dst, "%s/%s", dir, name);
	size_t n;
	char *data = slurp(src, &n);
	FILE *f = fopen(dst, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	fclose(f);
	free(data);
}

/* A sentence-transformers-style folder (stories260K with 1_Pooling/ and a
 * nested folder): subfolders are copied, config.json keeps every byte of
 * the input (1e-05 stays 1e-05) before its new last member (dense format;
 * factors replace model_type and architectures in place); an output
 * folder whose parent does not exist is refused before any work. */
static void test_subfolders_and_config_text(void **state)
{
	(void)state;
	char data[512], in[512], out[512], p[1024], cfg_in[600];
	test_data_path("stories260K", data, sizeof data);
	snprintf(in, sizeof in, "%s/st", tmpdir);
	snprintf(out, sizeof out, "%s/st-out", tmpdir);
	assert_int_equal(mkdir(in, 0777), 0);
	snprintf(cfg_in, sizeof cfg_in, "%s/config.json", data);
	copy_into(cfg_in, in, "config.json");
	snprintf(p, sizeof p, "%s/model.safetensors", data);
	copy_into(p, in, "model.safetensors");
	snprintf(p, sizeof p, "%s/1_Pooling", in);
	assert_int_equal(mkdir(p, 0777), 0);
	copy_into(cfg_in, p, "config.json");
	snprintf(p, sizeof p, "%s/1_Pooling/deeper", in);
	assert_int_equal(mkdir(p, 0777), 0);
	copy_into(cfg_in, p, "x.txt");
	fasvd_truncate_opts o;
	fasvd_truncate_opts_init(&o, sizeof o);
	fasvd_factor_opts fo;
	fasvd_factor_opts_init(&fo, sizeof fo);
	o.factor = &fo;
	fo.rank = 4;
	char bad[600];
	snprintf(bad, sizeof bad, "%s/no/such/out", tmpdir);
	count_state cs = {0, 0, 0, 0};
	assert_fasvd(fasvd_truncate(NULL, in, bad, &o, count_cb, &cs), FASVD_EIO);
	assert_non_null(strstr(fasvd_last_error(), "does not exist"));
	assert_int_equal(cs.n, 0);
	assert_ok(fasvd_truncate(NULL, in, out, &o, NULL, NULL));
	size_t n_in, n_out, n_sub;
	char *text_in = slurp(cfg_in, &n_in);
	snprintf(p, sizeof p, "%s/config.json", out);
	char *text_out = slurp(p, &n_out);
	snprintf(p, sizeof p, "%s/1_Pooling/config.json", out);
	char *sub = slurp(p, &n_sub);
	assert_string_equal(sub, text_in);
	snprintf(p, sizeof p, "%s/1_Pooling/deeper/x.txt", out);
	assert_true(exists(p));
	/* factors of a transformers model: model_type and architectures
	 * replaced in place (the loader's), numbers as written */
	assert_non_null(strstr(text_in, "\"rms_norm_eps\": 1e-05"));
	assert_non_null(strstr(text_out, "\"rms_norm_eps\": 1e-05"));
	assert_non_null(strstr(text_out, "\"model_type\": \"fasvd_lowrank\""));
	assert_non_null(strstr(text_out, "\"base_model_type\": \"llama\""));
	snprintf(p, sizeof p, "%s/fasvd_lowrank.py", out);
	assert_true(exists(p));
	free(text_out);
	/* dense: the input's text up to its closing brace, then the new section */
	snprintf(out, sizeof out, "%s/st-dense", tmpdir);
	o.format = FASVD_TRUNCATE_FORMAT_DENSE;
	assert_ok(fasvd_truncate(NULL, in, out, &o, NULL, NULL));
	snprintf(p, sizeof p, "%s/config.json", out);
	text_out = slurp(p, &n_out);
	snprintf(p, sizeof p, "%s/fasvd_lowrank.py", out);
	assert_false(exists(p));
	const char *close = strrchr(text_in, '}');
	size_t keep = (size_t)(close - text_in);
	while (keep && (text_in[keep - 1] == '\n' || text_in[keep - 1] == ' '))
		keep--;
	assert_memory_equal(text_out, text_in, keep);
	static const char member[] = ",\n  \"fasvd_lowrank\": {";
	assert_true(!strncmp(text_out + keep, member, strlen(member)));
	json_error_t err;
	json_t *j = json_loads(text_out, 0, &err);
	assert_non_null(j);
	assert_true(json_is_object(json_object_get(j, "fasvd_lowrank")));
	json_decref(j);
	free(text_in);
	free(text_out);
	free(sub);
}

/* Options for rank `rank`, every selected weight replaced. */
static void rank_opts(fasvd_truncate_opts *o, fasvd_factor_opts *fo, int64_t rank)
{
	fasvd_truncate_opts_init(o, sizeof *o);
	fasvd_factor_opts_init(fo, sizeof *fo);
	o->factor = fo;
	fo->rank = rank;
	o->only_if_smaller = 0;
}

static bool is_link(const char *p)
{
	struct stat sb;
	return lstat(p, &sb) == 0 && S_ISLNK(sb.st_mode);
}

/* An output folder given as a symbolic link (to an empty folder, or
 * dangling) stays a link: the folder it names is written, with no
 * temporary left; a link to a folder that is not empty is refused. */
static void test_output_links(void **state)
{
	(void)state;
	char data[512], real[512], lnk[512], dang[512], made[512], p[1024];
	test_data_path("stories260K", data, sizeof data);
	snprintf(real, sizeof real, "%s/real", tmpdir);
	snprintf(lnk, sizeof lnk, "%s/lnk", tmpdir);
	snprintf(dang, sizeof dang, "%s/dang", tmpdir);
	snprintf(made, sizeof made, "%s/made", tmpdir);
	assert_int_equal(mkdir(real, 0777), 0);
	assert_int_equal(symlink("real", lnk), 0);
	assert_int_equal(symlink("made", dang), 0);
	fasvd_truncate_opts o;
	fasvd_factor_opts fo;
	rank_opts(&o, &fo, 2);
	snprintf(p, sizeof p, "%s/", lnk);
	assert_ok(fasvd_truncate(NULL, data, p, &o, NULL, NULL));
	assert_true(is_link(lnk));
	snprintf(p, sizeof p, "%s/model.safetensors", real);
	assert_true(exists(p));
	assert_int_equal(leftovers(real), 0);
	assert_int_equal(leftovers(lnk), 0);
	assert_ok(fasvd_truncate(NULL, data, dang, &o, NULL, NULL));
	assert_true(is_link(dang));
	snprintf(p, sizeof p, "%s/model.safetensors", made);
	assert_true(exists(p));
	assert_int_equal(leftovers(made), 0);
	assert_fasvd(fasvd_truncate(NULL, data, lnk, &o, NULL, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "not empty"));
	assert_true(is_link(lnk));
}

/* A truncated model truncated again: the input's config.json text is kept
 * byte for byte outside the value of its "fasvd_lowrank" section (a member
 * after it included), and the section keeps the entries of the factors
 * copied from the input beside this run's. */
static void test_truncate_twice(void **state)
{
	(void)state;
	char data[512], once[512], twice[512], p[1024];
	test_data_path("stories260K", data, sizeof data);
	snprintf(once, sizeof once, "%s/once", tmpdir);
	snprintf(twice, sizeof twice, "%s/twice", tmpdir);
	fasvd_truncate_opts o;
	fasvd_factor_opts fo;
	rank_opts(&o, &fo, 2);
	assert_ok(fasvd_truncate(NULL, data, once, &o, NULL, NULL));
	/* a member after the section, written as jansson would not */
	size_t n;
	snprintf(p, sizeof p, "%s/config.json", once);
	char *text = slurp(p, &n);
	char *close = strrchr(text, '}');
	*close = '\0';
	while (close > text && (close[-1] == '\n' || close[-1] == ' '))
		*--close = '\0';
	static const char tail[] = ",\n  \"after\": 1e-05 }\n";
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	fprintf(f, "%s%s", text, tail);
	fclose(f);
	free(text);
	text = slurp(p, &n);
	static const char key[] = "\"fasvd_lowrank\": ";
	size_t head = (size_t)(strstr(text, key) - text) + strlen(key);
	o.patterns = (const char *const[]){"*.mlp.up_proj.weight"};
	o.n_patterns = 1;
	fo.rank = 1;
	assert_ok(fasvd_truncate(NULL, once, twice, &o, NULL, NULL));
	size_t m;
	snprintf(p, sizeof p, "%s/config.json", twice);
	char *out = slurp(p, &m);
	assert_memory_equal(out, text, head);
	assert_true(m > strlen(tail));
	assert_string_equal(out + m - strlen(tail), tail);
	json_error_t err;
	json_t *j = json_loads(out, 0, &err);
	assert_non_null(j);
	json_t *tens = json_object_get(json_object_get(j, "fasvd_lowrank"), "tensors");
	json_t *q = json_object_get(tens, "model.layers.0.self_attn.q_proj.weight");
	json_t *u = json_object_get(tens, "model.layers.4.mlp.up_proj.weight");
	assert_int_equal(json_integer_value(json_object_get(q, "rank")), 2);
	assert_int_equal(json_integer_value(json_object_get(u, "rank")), 1);
	assert_int_equal(json_object_size(tens), 25);
	json_decref(j);
	free(out);
	free(text);
}

static void test_only_if_smaller(void **state)
{
	(void)state;
	char in[512], out[512];
	snprintf(in, sizeof in, "%s/dsv3-s", tmpdir);
	fasvd_fixture_opts fx;
	fasvd_fixture_opts_init(&fx, sizeof fx);
	fx.n_layers = 1;
	assert_ok(fasvd_fixture_write(NULL, in, "deepseek_v3", &fx));
	snprintf(out, sizeof out, "%s/dsv3-s-out", tmpdir);
	fasvd_truncate_opts o;
	fasvd_truncate_opts_init(&o, sizeof o);
	fasvd_factor_opts fo;
	fasvd_factor_opts_init(&fo, sizeof fo);
	o.factor = &fo;
	/* rank 103: kv_b_proj [352, 144] would grow (103·496 >= 352·144), kv_a_proj
	 * [176, 288] shrinks (103·464 < 176·288); a fixed rank decides without
	 * an SVD */
	fo.rank = 103;
	assert_int_equal(o.only_if_smaller, 1); /* the default */
	count_state cs = {0, 0, 0, 0};
	assert_ok(fasvd_truncate(NULL, in, out, &o, count_cb, &cs));
	assert_true(cs.skipped > 0);
	fasvd_st *so;
	assert_ok(fasvd_st_open(&so, NULL, out));
	/* kept weights keep their FP8 scale */
	assert_ok(fasvd_st_find(NULL, so, "model.layers.0.self_attn.kv_b_proj.weight"));
	assert_ok(fasvd_st_find(NULL, so, "model.layers.0.self_attn.kv_b_proj.weight_scale_inv"));
	assert_fasvd(fasvd_st_find(NULL, so, "model.layers.0.self_attn.kv_b_proj.weight.A"),
	             FASVD_ENOTFOUND);
	assert_ok(fasvd_st_find(NULL, so, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight.A"));
	assert_fasvd(fasvd_st_find(NULL, so,
	                           "model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv"),
	             FASVD_ENOTFOUND);
	fasvd_st_free(so);
	int64_t n;
	check_round_trip(in, out, 2e-2, &n);
	assert_int_equal(n, cs.n - cs.skipped);
	/* no selected tensor would be smaller: nothing written, each reported
	 * as kept, and an error that says why */
	snprintf(out, sizeof out, "%s/dsv3-s-none", tmpdir);
	o.patterns = (const char *const[]){"*.kv_b_proj.weight"};
	o.n_patterns = 1;
	count_state none = {0, 0, 0, 0};
	assert_fasvd(fasvd_truncate(NULL, in, out, &o, count_cb, &none), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "nothing to truncate"));
	assert_false(exists(out));
	assert_true(none.n > 0 && none.skipped == none.n);
	/* only_if_smaller = 0 writes the larger factors as asked */
	o.only_if_smaller = 0;
	count_state all = {0, 0, 0, 0};
	assert_ok(fasvd_truncate(NULL, in, out, &o, count_cb, &all));
	assert_int_equal(all.skipped, 0);
	assert_ok(fasvd_st_open(&so, NULL, out));
	assert_ok(fasvd_st_find(NULL, so, "model.layers.0.self_attn.kv_b_proj.weight.A"));
	fasvd_st_free(so);
}

/* Peak bytes live while layer 0 of `dir` is opened and analysed (every
 * spectrum, f32 and f64 compute) through a tracking context; its head.Q
 * and stack.O spectra in q and o (n_q and n_o values, f64 compute). */
static long long layer_peak(const char *dir, double *q, int64_t n_q, double *o, int64_t n_o)
{
	peak_state ps = {0, 0};
	fasvd_allocator al = {peak_alloc, peak_free, &ps};
	fasvd_ctx *ctx = NULL;
	fasvd_model *m = NULL;
	assert_ok(fasvd_ctx_new(&ctx, &al));
	assert_ok(fasvd_model_open(&m, ctx, dir, 0));
	long long base = ps.live;
	ps.peak = base;
	for (int c = 0; c < 2; c++) {
		fasvd_model_layer *l = NULL;
		fasvd_spectra *sp = NULL;
		fasvd_layer_opts lo;
		fasvd_layer_opts_init(&lo, sizeof lo);
		lo.compute = c ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
		assert_ok(fasvd_model_layer_open(&l, m, 0, NULL));
		assert_ok(fasvd_layer_spectra(&sp, ctx, fasvd_model_layer_desc(l), &lo));
		int64_t iq, io, nr, nc;
		assert_ok(fasvd_spectra_find(&iq, sp, "head.Q"));
		assert_ok(fasvd_spectra_find(&io, sp, "stack.O"));
		assert_ok(fasvd_spectra_shape(&nr, &nc, NULL, NULL, sp, iq));
		assert_int_equal(nr * nc, n_q);
		memcpy(q, fasvd_spectra_data(sp, iq), (size_t)n_q * sizeof *q);
		assert_ok(fasvd_spectra_shape(&nr, &nc, NULL, NULL, sp, io));
		assert_int_equal(nr * nc, n_o);
		memcpy(o, fasvd_spectra_data(sp, io), (size_t)n_o * sizeof *o);
		fasvd_spectra_free(sp);
		fasvd_model_layer_free(l);
	}
	fasvd_model_free(m);
	fasvd_ctx_free(ctx);
	assert_int_equal(ps.live, 0);
	return ps.peak - base;
}

/* A llama fixture of one layer (fx's other fields) at tmpdir/<base>,
 * truncated at rank `rank` (factors in F64) into <base>-f as factors and
 * <base>-d as a dense checkpoint; their paths in fac and den (512 bytes). */
static void truncated_pair(const char *base, fasvd_fixture_opts *fx, int64_t rank,
                           int per_head, char *fac, char *den)
{
	char in[512];
	snprintf(in, sizeof in, "%s/%s", tmpdir, base);
	snprintf(fac, 512, "%s/%s-f", tmpdir, base);
	snprintf(den, 512, "%s/%s-d", tmpdir, base);
	fx->n_layers = 1;
	assert_ok(fasvd_fixture_write(NULL, in, "llama", fx));
	fasvd_truncate_opts o;
	fasvd_factor_opts fo;
	rank_opts(&o, &fo, rank);
	o.dtype = FASVD_DTYPE_F64;
	o.per_head = per_head;
	assert_ok(fasvd_truncate(NULL, in, fac, &o, NULL, NULL));
	o.format = FASVD_TRUNCATE_FORMAT_DENSE;
	assert_ok(fasvd_truncate(NULL, in, den, &o, NULL, NULL));
}

/* A factor output is analysed from its factors (docs/design.md "Factored
 * weights"): no m x n product is ever live — the layer's whole peak stays
 * below one dense q_proj in double, where the same truncation written
 * dense needs more — and the spectra are the dense route's. */
static void test_factored_analysis_memory(void **state)
{
	(void)state;
	char fac[512], den[512];
	fasvd_fixture_opts fx;
	fasvd_fixture_opts_init(&fx, sizeof fx);
	fx.hidden = 512;
	fx.head_dim = 128;
	fx.intermediate = -1;
	fx.dtype = FASVD_DTYPE_F32;
	truncated_pair("big-llama", &fx, 4, 0, fac, den);
	enum { NQ = 4 * 128, NO = 512 };
	double qf[NQ], of[NO], qd[NQ], od[NO];
	long long pf = layer_peak(fac, qf, NQ, of, NO), pd = layer_peak(den, qd, NQ, od, NO);
	long long dense_q = 512LL * 512 * (long long)sizeof(double);
	print_message("# layer peak: factored %lld bytes, dense %lld bytes (one q_proj in "
	              "double: %lld)\n", pf, pd, dense_q);
	assert_true(pf < dense_q);
	assert_true(pd > 4 * pf);
	for (int i = 0; i < NQ; i++)
		assert_true(fabs(qf[i] - qd[i]) <= 1e-6 * qd[(i / 128) * 128]);
	for (int i = 0; i < NO; i++)
		assert_true(fabs(of[i] - od[i]) <= 1e-6 * od[0]);
	assert_true(qf[4] <= 1e-10 * qf[0] && of[4] <= 1e-10 * of[0]); /* rank 4 */
}

/* The heads of a factored weight, held reduced, still decode to the exact
 * heads of W = A·B (f64 and f32, either layout), as the same truncation
 * written dense does; they cannot be viewed or rescaled. */
static void test_factored_heads_decode(void **state)
{
	(void)state;
	char fac[512], den[512];
	fasvd_fixture_opts fx;
	fasvd_fixture_opts_init(&fx, sizeof fx);
	fx.dtype = FASVD_DTYPE_F64;
	truncated_pair("dec-llama", &fx, 3, 1, fac, den);
	fasvd_model *mf = NULL, *md = NULL;
	fasvd_model_layer *lf = NULL, *ld = NULL;
	assert_ok(fasvd_model_open(&mf, NULL, fac, 0));
	assert_ok(fasvd_model_open(&md, NULL, den, 0));
	assert_ok(fasvd_model_layer_open(&lf, mf, 0, NULL));
	assert_ok(fasvd_model_layer_open(&ld, md, 0, NULL));
	const fasvd_layer_desc *df = fasvd_model_layer_desc(lf), *dd = fasvd_model_layer_desc(ld);
	const fasvd_heads *hf[4] = {df->q, df->k, df->v, df->o}, *hd[4] = {dd->q, dd->k, dd->v, dd->o};
	for (int p = 0; p < 4; p++) {
		int64_t k = fasvd_heads_rows(hf[p]), n = fasvd_heads_cols(hf[p]);
		assert_int_equal(k, fasvd_heads_rows(hd[p]));
		assert_int_equal(n, fasvd_heads_cols(hd[p]));
		double *a = calloc((size_t)(k * n), sizeof *a), *b = calloc((size_t)(k * n), sizeof *b);
		float *f = calloc((size_t)(k * n), sizeof *f);
		assert_non_null(a);
		assert_non_null(b);
		assert_non_null(f);
		for (int64_t i = 0; i < fasvd_heads_count(hf[p]); i++) {
			assert_ok(fasvd_heads_decode_f64(b, n, FASVD_LAYOUT_ROW_MAJOR, hd[p], i));
			assert_ok(fasvd_heads_decode_f64(a, n, FASVD_LAYOUT_ROW_MAJOR, hf[p], i));
			assert_ok(fasvd_heads_decode_f32(f, k, FASVD_LAYOUT_COL_MAJOR, hf[p], i));
			double big = 0;
			for (int64_t x = 0; x < k * n; x++)
				big = fmax(big, fabs(b[x]));
			for (int64_t r = 0; r < k; r++)
				for (int64_t c = 0; c < n; c++) {
					assert_true(fabs(a[r * n + c] - b[r * n + c]) <= 1e-12 * big);
					assert_true(fabs(f[c * k + r] - b[r * n + c]) <= 1e-6 * big);
				}
		}
		free(a);
		free(b);
		free(f);
		fasvd_tensor *v = NULL;
		assert_fasvd(fasvd_heads_view(&v, hf[p], 0), FASVD_EINVAL);
		assert_null(v);
		double one[1] = {1.0};
		assert_fasvd(fasvd_heads_set_col_scale((fasvd_heads *)hf[p], one, 1), FASVD_EINVAL);
	}
	fasvd_model_layer_free(lf);
	fasvd_model_layer_free(ld);
	fasvd_model_free(mf);
	fasvd_model_free(md);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_architecture),
		cmocka_unit_test(test_fp8_sharded_bf16),
		cmocka_unit_test(test_cancel_and_failures),
		cmocka_unit_test(test_only_if_smaller),
		cmocka_unit_test(test_subfolders_and_config_text),
		cmocka_unit_test(test_output_links),
		cmocka_unit_test(test_truncate_twice),
		cmocka_unit_test(test_factored_analysis_memory),
		cmocka_unit_test(test_factored_heads_decode),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
