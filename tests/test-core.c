#include "test-helpers.h"

#include <pthread.h>

#include "core/file.h"
#include "core/json.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_version(void **state)
{
	(void)state;
	assert_int_equal(fasvd_version_number(), FASVD_VERSION_NUMBER);
	char buf[32];
	snprintf(buf, sizeof buf, "%d.%d.%d", FASVD_VERSION_MAJOR, FASVD_VERSION_MINOR,
	         FASVD_VERSION_PATCH);
	assert_string_equal(fasvd_version_string(), buf);
}

static void test_error_codes_pinned(void **state)
{
	(void)state;
	/* The values are ABI: they must never change. */
	assert_int_equal(FASVD_OK, 0);
	assert_int_equal(FASVD_EINVAL, -1);
	assert_int_equal(FASVD_ENOMEM, -2);
	assert_int_equal(FASVD_EIO, -3);
	assert_int_equal(FASVD_EFORMAT, -4);
	assert_int_equal(FASVD_EDTYPE, -5);
	assert_int_equal(FASVD_ESHAPE, -6);
	assert_int_equal(FASVD_ENONFINITE, -7);
	assert_int_equal(FASVD_ERANGE, -8);
	assert_int_equal(FASVD_ELAPACK, -9);
	assert_int_equal(FASVD_ENOTFOUND, -10);
	assert_int_equal(FASVD_EARCH, -11);
	assert_int_equal(FASVD_ECANCELED, -12);
	assert_int_equal(FASVD_ESTATE, -13);
	assert_int_equal(FASVD_EINTERNAL, -14);
	for (int c = 0; c >= FASVD_EINTERNAL; c--)
		assert_string_not_equal(fasvd_strerror(c), "unknown error");
	assert_string_equal(fasvd_strerror(-999), "unknown error");
	assert_string_equal(fasvd_strerror(5), "unknown error");
}

static void test_last_error(void **state)
{
	(void)state;
	fasvd_clear_error();
	assert_non_null(fasvd_last_error());
	assert_string_equal(fasvd_last_error(), "");
	assert_int_equal(fasvd_ctx_new(NULL, NULL), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "out"));
	fasvd_clear_error();
	assert_string_equal(fasvd_last_error(), "");
}

/* docs/error-model.md, "One prefix per message": context is added once. */
static void test_error_prefix_once(void **state)
{
	(void)state;
	fasvd__error(FASVD_EINVAL, "fasvd_analyze: tau 2 is outside [0, 1]");
	assert_int_equal(fasvd__error_prefix(FASVD_EINVAL, "fasvd_analyze"), FASVD_EINVAL);
	assert_string_equal(fasvd_last_error(), "fasvd_analyze: tau 2 is outside [0, 1]");
	/* A longer prefix keeps its context, not the function's name twice. */
	fasvd__error(FASVD_EIO, "fasvd_fuse_svd: cannot compute");
	fasvd__error_prefix(FASVD_EIO, "fasvd_fuse_svd: fused head %d", 3);
	assert_string_equal(fasvd_last_error(), "fasvd_fuse_svd: fused head 3: cannot compute");
	/* A detail that already starts with the whole prefix stays as it is. */
	fasvd__error(FASVD_EFORMAT, "a.safetensors: tensor 'x': bad shape");
	fasvd__error_prefix(FASVD_EFORMAT, "a.safetensors: tensor '%s'", "x");
	assert_string_equal(fasvd_last_error(), "a.safetensors: tensor 'x': bad shape");
	/* Other context is added in front, once per level. */
	fasvd__error(FASVD_ENONFINITE, "q_proj: NaN at (1, 2)");
	fasvd__error_prefix(FASVD_ENONFINITE, "layer %d", 2);
	fasvd__error_prefix(FASVD_ENONFINITE, "fasvd_analyze");
	assert_string_equal(fasvd_last_error(), "fasvd_analyze: layer 2: q_proj: NaN at (1, 2)");
	/* A name that only begins like the prefix's is not taken for it. */
	fasvd__error(FASVD_EINVAL, "fasvd_analyzer: x");
	fasvd__error_prefix(FASVD_EINVAL, "fasvd_analyze");
	assert_string_equal(fasvd_last_error(), "fasvd_analyze: fasvd_analyzer: x");
	fasvd_clear_error();
	fasvd__error_prefix(FASVD_EIO, "layer 1");
	assert_string_equal(fasvd_last_error(), "layer 1: input/output error");
	fasvd_clear_error();
}

static void *thread_error(void *p)
{
	(void)p;
	fasvd__error(FASVD_EIO, "in the other thread");
	return (void *)(strcmp(fasvd_last_error(), "in the other thread") == 0 ? p : NULL);
}

static void test_last_error_thread_local(void **state)
{
	(void)state;
	fasvd__error(FASVD_EINVAL, "in the main thread");
	pthread_t t;
	int token;
	void *res = NULL;
	assert_int_equal(pthread_create(&t, NULL, thread_error, &token), 0);
	pthread_join(t, &res);
	assert_ptr_equal(res, &token);
	assert_string_equal(fasvd_last_error(), "in the main thread");
}

static void test_ctx_params(void **state)
{
	(void)state;
	fasvd_ctx *ctx = NULL;
	assert_ok(fasvd_ctx_new(&ctx, NULL));
	int64_t v = -1;
	assert_ok(fasvd_ctx_get_param(&v, ctx, FASVD_CTX_THREADS));
	assert_true(v >= 1);
	assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, 3));
	assert_ok(fasvd_ctx_get_param(&v, ctx, FASVD_CTX_THREADS));
	assert_int_equal(v, 3);
	fasvd_bounds b = fasvd_ctx_param_bounds(FASVD_CTX_THREADS);
	assert_int_equal(b.error, 0);
	assert_fasvd(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, b.upper + 1), FASVD_EINVAL);
	assert_non_null(strstr(fasvd_last_error(), "FASVD_CTX_THREADS"));
	assert_fasvd(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, -1), FASVD_EINVAL);
	assert_fasvd(fasvd_ctx_set_param(ctx, (fasvd_ctx_param)99, 1), FASVD_EINVAL);
	assert_int_equal(fasvd_ctx_param_bounds((fasvd_ctx_param)99).error, FASVD_EINVAL);
	assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_COMPUTE, FASVD_COMPUTE_F64));
	assert_ok(fasvd_ctx_get_param(&v, ctx, FASVD_CTX_COMPUTE));
	assert_int_equal(v, FASVD_COMPUTE_F64);
	assert_fasvd(fasvd_ctx_set_param(ctx, FASVD_CTX_COMPUTE, 7), FASVD_EINVAL);
	assert_fasvd(fasvd_ctx_set_param(NULL, FASVD_CTX_THREADS, 1), FASVD_EINVAL);
	fasvd_ctx_free(ctx);
	fasvd_ctx_free(NULL);
}

static void test_ctx_allocator(void **state)
{
	(void)state;
	test_alloc_state st = {0};
	fasvd_allocator a = {test_alloc_fn, test_free_fn, &st};
	fasvd_ctx *ctx = NULL;
	assert_ok(fasvd_ctx_new(&ctx, &a));
	void *p = fasvd__alloc(ctx, 100, "test");
	assert_non_null(p);
	fasvd__free(ctx, p);
	fasvd_ctx_free(ctx);
	assert_int_equal(st.allocs, st.frees);
	assert_true(st.allocs >= 2);

	/* allocation failure of the context itself */
	st = (test_alloc_state){.fail_at = 1};
	ctx = (fasvd_ctx *)&st; /* must be reset to NULL */
	assert_fasvd(fasvd_ctx_new(&ctx, &a), FASVD_ENOMEM);
	assert_null(ctx);

	fasvd_allocator bad = {test_alloc_fn, NULL, &st};
	assert_fasvd(fasvd_ctx_new(&ctx, &bad), FASVD_EINVAL);
	assert_null(ctx);
}

static void test_calloc_overflow(void **state)
{
	(void)state;
	assert_null(fasvd__calloc(NULL, SIZE_MAX / 2, 4, "huge"));
	assert_non_null(strstr(fasvd_last_error(), "huge"));
}

struct pf_arg {
	int64_t hits[100];
	int64_t fail_at;
};

static int pf_task(void *arg, int64_t i, int worker)
{
	struct pf_arg *a = arg;
	(void)worker;
	if (i == a->fail_at)
		return fasvd__error(FASVD_ESHAPE, "task %lld failed", (long long)i);
	__atomic_add_fetch(&a->hits[i], 1, __ATOMIC_SEQ_CST);
	return 0;
}

static void test_parallel_for(void **state)
{
	(void)state;
	fasvd_ctx *ctx = NULL;
	assert_ok(fasvd_ctx_new(&ctx, NULL));
	for (int threads = 1; threads <= 4; threads++) {
		assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, threads));
		struct pf_arg a = {.fail_at = -1};
		assert_ok(fasvd__parallel_for(ctx, 100, pf_task, &a));
		for (int i = 0; i < 100; i++)
			assert_int_equal(a.hits[i], 1);
		struct pf_arg b = {.fail_at = 37};
		fasvd_clear_error();
		assert_fasvd(fasvd__parallel_for(ctx, 100, pf_task, &b), FASVD_ESHAPE);
		assert_string_equal(fasvd_last_error(), "task 37 failed");
	}
	fasvd_ctx_free(ctx);
}

/* Two parallel regions overlapping in two threads: BLAS stays
 * single-threaded until the last one ends (no oversubscription while the
 * other's workers run), then gets back the count from before the first (a
 * per-region save / restore left it at 1 for good). */
struct gate {
	pthread_mutex_t m;
	pthread_cond_t c;
	int started, open;
};

static int gate_task(void *arg, int64_t i, int worker)
{
	(void)i, (void)worker;
	struct gate *g = arg;
	pthread_mutex_lock(&g->m);
	g->started++;
	pthread_cond_broadcast(&g->c);
	while (!g->open)
		pthread_cond_wait(&g->c, &g->m);
	pthread_mutex_unlock(&g->m);
	return 0;
}

struct region_job {
	fasvd_ctx *ctx;
	struct gate *g;
	int rc;
};

static void *region_thread(void *p)
{
	struct region_job *j = p;
	j->rc = fasvd__parallel_for(j->ctx, 2, gate_task, j->g);
	return NULL;
}

static void gate_wait_started(struct gate *g, int n)
{
	pthread_mutex_lock(&g->m);
	while (g->started < n)
		pthread_cond_wait(&g->c, &g->m);
	pthread_mutex_unlock(&g->m);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->m);
	g->open = 1;
	pthread_cond_broadcast(&g->c);
	pthread_mutex_unlock(&g->m);
}

/* A strong reference, so that this test links OpenBLAS (the library's
 * references to the thread functions are weak). */
extern int openblas_get_num_threads(void);

static void test_blas_threads_overlapping_regions(void **state)
{
	(void)state;
	int before = openblas_get_num_threads();
	assert_int_equal(fasvd__blas_get_threads(), before);
	fasvd__blas_set_threads(2);
	if (fasvd__blas_get_threads() != 2) {
		test_skip("BLAS thread count cannot be set here\n");
	}
	fasvd_ctx *ctx = NULL;
	assert_ok(fasvd_ctx_new(&ctx, NULL));
	assert_ok(fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, 2));
	struct gate g1 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	struct gate g2 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	struct region_job j1 = {ctx, &g1, -1}, j2 = {ctx, &g2, -1};
	pthread_t t1, t2;
	assert_int_equal(pthread_create(&t1, NULL, region_thread, &j1), 0);
	gate_wait_started(&g1, 2);
	assert_int_equal(fasvd__blas_get_threads(), 1);
	assert_int_equal(pthread_create(&t2, NULL, region_thread, &j2), 0);
	gate_wait_started(&g2, 2);
	/* a request for threaded BLAS while regions run is not granted */
	fasvd__blas_set_threads(2);
	assert_int_equal(fasvd__blas_get_threads(), 1);
	gate_open(&g1);
	pthread_join(t1, NULL);
	assert_int_equal(j1.rc, 0);
	assert_int_equal(fasvd__blas_get_threads(), 1); /* region 2 still runs */
	gate_open(&g2);
	pthread_join(t2, NULL);
	assert_int_equal(j2.rc, 0);
	assert_int_equal(fasvd__blas_get_threads(), 2);
	fasvd__blas_set_threads(before);
	fasvd_ctx_free(ctx);
}

/* ---------------------------------------------------- the file layer */

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *b = calloc(1, 4096);
	*n = fread(b, 1, 4095, f);
	fclose(f);
	return b;
}

static void assert_content(const char *path, const char *want)
{
	size_t n = 0;
	char *b = slurp(path, &n);
	assert_non_null(b);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(b, want, n);
	free(b);
}

/* Files in dir whose name holds ".tmp-". */
static int count_temporaries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int k = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		k += strstr(e->d_name, ".tmp-") != NULL;
	closedir(d);
	return k;
}

/* Atomic replacement: the new content with the new-file mode, nothing left
 * beside it; on any failure the temporary is gone and the old target is as
 * it was. */
static void test_file_replace(void **state)
{
	(void)state;
	char dir[] = "/tmp/fasvd-test-file-XXXXXX", path[256], sub[256], inner[256], cp[256];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/out.json", dir);
	mode_t old_mask = umask(027);
	assert_int_equal(fasvd__new_file_mode(), 0640);
	assert_int_equal(fasvd__new_dir_mode(), 0750);
	assert_ok(fasvd__replace_file(NULL, path, "first", 5));
	assert_content(path, "first");
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0640);
	assert_ok(fasvd__replace_file(NULL, path, "second\n", 7));
	assert_content(path, "second\n");
	assert_int_equal(count_temporaries(dir), 0);

	/* finished but discarded: the old target stays */
	fasvd__tmp_file f;
	assert_ok(fasvd__tmp_create(&f, NULL, path));
	assert_ok(fasvd__tmp_write(&f, "third", 5));
	assert_ok(fasvd__tmp_finish(&f));
	assert_int_equal(count_temporaries(dir), 1);
	fasvd__tmp_discard(&f);
	assert_int_equal(count_temporaries(dir), 0);
	assert_content(path, "second\n");

	/* no folder for the temporary */
	snprintf(sub, sizeof sub, "%s/missing/x.json", dir);
	assert_fasvd(fasvd__replace_file(NULL, sub, "x", 1), FASVD_EIO);
	assert_non_null(strstr(fasvd_last_error(), "does not exist"));
	/* a folder as the target: refused before a temporary is made, folder
	 * and its file untouched */
	snprintf(sub, sizeof sub, "%s/d", dir);
	snprintf(inner, sizeof inner, "%s/d/keep", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_ok(fasvd__write_file(inner, "kept", 4));
	assert_fasvd(fasvd__replace_file(NULL, sub, "x", 1), FASVD_EIO);
	assert_non_null(strstr(fasvd_last_error(), "is a folder"));
	assert_int_equal(count_temporaries(dir), 0);
	assert_content(inner, "kept");

	/* a symbolic link: its target is replaced, the link stays */
	char link[256];
	snprintf(link, sizeof link, "%s/link.json", dir);
	assert_int_equal(symlink("out.json", link), 0);
	assert_ok(fasvd__replace_file(NULL, link, "via link", 8));
	assert_int_equal(lstat(link, &sb), 0);
	assert_true(S_ISLNK(sb.st_mode));
	assert_content(path, "via link");
	assert_int_equal(count_temporaries(dir), 0);
	unlink(link);
	/* streams only where asked for */
	assert_fasvd(fasvd__replace_file(NULL, "/dev/null", "x", 1), FASVD_EINVAL);
	assert_fasvd(fasvd__replace_file(NULL, "-", "x", 1), FASVD_EINVAL);
	assert_ok(fasvd__tmp_open(&f, NULL, "/dev/null", FASVD__OUT_STREAMS));
	assert_ok(fasvd__tmp_write(&f, "x", 1));
	assert_ok(fasvd__tmp_finish(&f));
	assert_ok(fasvd__tmp_commit(&f));
	fasvd__tmp_discard(&f);
	assert_int_equal(stat("/dev/null", &sb), 0);
	assert_true(S_ISCHR(sb.st_mode));

	/* plain writes and copies inside a folder */
	snprintf(cp, sizeof cp, "%s/copy", dir);
	assert_ok(fasvd__copy_file(inner, cp));
	assert_content(cp, "kept");
	assert_int_equal(stat(cp, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0640);
	assert_fasvd(fasvd__copy_file(sub, cp), FASVD_EIO); /* reading a folder */
	assert_fasvd(fasvd__write_file(sub, "x", 1), FASVD_EIO);
	fasvd__sync_dir(dir);
	fasvd__sync_dir_of(path);
	umask(old_mask);

	unlink(cp);
	unlink(inner);
	rmdir(sub);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

/* The JSON helpers: loading a file with the shared error mapping, writing
 * one with a final newline, integer pairs, the size cap of a read. */
static void test_json_helpers(void **state)
{
	(void)state;
	char dir[] = "/tmp/fasvd-test-json-XXXXXX", path[256];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/c.json", dir);
	json_t *j = NULL;
	const char *dup = "{\"a.rather.long.key.name.that.jansson.does.not.quote\": 1,\n"
	                  " \"a.rather.long.key.name.that.jansson.does.not.quote\": 2}";
	assert_ok(fasvd__write_file(path, dup, strlen(dup)));
	assert_fasvd(fasvd__json_load_file(NULL, path, JSON_REJECT_DUPLICATES, "config.json", &j),
	             FASVD_EFORMAT);
	assert_non_null(strstr(fasvd_last_error(),
	                       "config.json has a duplicate name 'a.rather.long.key.name"));
	assert_null(j);
	assert_ok(fasvd__json_load_file(NULL, path, 0, "config.json", &j)); /* last one wins */
	assert_int_equal(json_integer_value(json_object_get(
	                         j, "a.rather.long.key.name.that.jansson.does.not.quote")),
	                 2);
	json_decref(j);
	assert_ok(fasvd__write_file(path, "[1, 2]", 6));
	assert_fasvd(fasvd__json_load_file(NULL, path, 0, "index", &j), FASVD_EFORMAT);
	assert_non_null(strstr(fasvd_last_error(), "index is not a JSON object"));
	assert_ok(fasvd__write_file(path, "{\"a\": ", 6));
	assert_fasvd(fasvd__json_load_file(NULL, path, 0, "index", &j), FASVD_EFORMAT);
	assert_non_null(strstr(fasvd_last_error(), "not valid JSON"));
	char missing[300];
	snprintf(missing, sizeof missing, "%s/none.json", dir);
	assert_fasvd(fasvd__json_load_file(NULL, missing, 0, "index", &j), FASVD_EIO);

	json_t *o = json_pack("{s:[ii]}", "block", 128, 64);
	assert_ok(fasvd__json_write_file(path, o, JSON_COMPACT));
	assert_content(path, "{\"block\":[128,64]}\n");
	int64_t a = 0, b = 0;
	assert_true(fasvd__json_int_pair(json_object_get(o, "block"), &a, &b));
	assert_true(a == 128 && b == 64);
	json_decref(o);
	o = json_pack("{s:[i],s:[i,s],s:[i,i,i]}", "one", 1, "str", 1, "x", "three", 1, 2, 3);
	assert_false(fasvd__json_int_pair(json_object_get(o, "one"), &a, &b));
	assert_false(fasvd__json_int_pair(json_object_get(o, "str"), &a, &b));
	assert_false(fasvd__json_int_pair(json_object_get(o, "three"), &a, &b));
	assert_false(fasvd__json_int_pair(NULL, &a, &b));
	json_decref(o);

	/* the cap of a read */
	char big[20000];
	memset(big, ' ', sizeof big);
	assert_ok(fasvd__write_file(path, big, sizeof big));
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	assert_fasvd(fasvd__read_all(NULL, f, path, "config.json", 16384, &buf, &len),
	             FASVD_EFORMAT);
	assert_non_null(strstr(fasvd_last_error(), "not a config.json"));
	fasvd__free(NULL, buf);
	rewind(f);
	assert_ok(fasvd__read_all(NULL, f, path, "config.json", 32768, &buf, &len));
	assert_int_equal(len, sizeof big);
	fasvd__free(NULL, buf);
	fclose(f);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_error_codes_pinned),
		cmocka_unit_test(test_last_error),
		cmocka_unit_test(test_error_prefix_once),
		cmocka_unit_test(test_last_error_thread_local),
		cmocka_unit_test(test_ctx_params),
		cmocka_unit_test(test_ctx_allocator),
		cmocka_unit_test(test_calloc_overflow),
		cmocka_unit_test(test_parallel_for),
		cmocka_unit_test(test_blas_threads_overlapping_regions),
		cmocka_unit_test(test_file_replace),
		cmocka_unit_test(test_json_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
