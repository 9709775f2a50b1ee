/* The hostile-input catalogue through the C API
 * (docs/hostile-inputs.md).
 *
 *   test-hostile-api MANIFEST
 *
 * MANIFEST is written by tests/hostile/gen-hostile.py. For every case and
 * every command it names, one CMocka test runs what that command runs:
 *   svdvals  fasvd_st_open + fasvd_st_tensor + fasvd_svdvals
 *   info     fasvd_model_open + fasvd_model_info_get
 *   analyze  fasvd_analyze into a fresh scratch folder
 *   gguf     fasvd_gguf_open + fasvd_gguf_tensor + fasvd_svdvals (GGUF cases)
 * and checks the outcome the manifest asks for: the call fails with one of
 * the listed codes, every *out is NULL, the detail message is one line that
 * contains every listed name (file, tensor, key); or it succeeds ("ok"); or
 * either ("any": it must still not crash and return a documented code).
 * Every check runs in a forked child (so that a crash, a hang — killed after
 * CHECK_TIMEOUT seconds — or a sanitizer error fails that check only), on
 * its own context with a counting allocator: everything allocated is freed
 * (allocs == frees). analyze must leave the scratch output folder exactly as
 * it found it when it fails. Checks listed as XFAIL in gen-hostile.py (known
 * library bugs) must fail; one that passes fails the test.
 */
#include "../test-helpers.h"
#include "scratch.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *root; /* folder the manifest's relative paths start from */

typedef struct {
	json_t *c;        /* the case */
	const char *cmd;  /* "svdvals", "info", "analyze", "gguf" */
	char name[160];
} hcase;

static const struct {
	int code;
	const char *name;
} code_names[] = {
	{FASVD_EINVAL, "EINVAL"}, {FASVD_ENOMEM, "ENOMEM"}, {FASVD_EIO, "EIO"},
	{FASVD_EFORMAT, "EFORMAT"}, {FASVD_EDTYPE, "EDTYPE"}, {FASVD_ESHAPE, "ESHAPE"},
	{FASVD_ENONFINITE, "ENONFINITE"}, {FASVD_ERANGE, "ERANGE"}, {FASVD_ELAPACK, "ELAPACK"},
	{FASVD_ENOTFOUND, "ENOTFOUND"}, {FASVD_EARCH, "EARCH"}, {FASVD_ECANCELED, "ECANCELED"},
	{FASVD_ESTATE, "ESTATE"}, {FASVD_EINTERNAL, "EINTERNAL"},
};

static const char *code_name(int rc)
{
	if (rc == 0)
		return "OK";
	for (size_t i = 0; i < sizeof code_names / sizeof code_names[0]; i++)
		if (code_names[i].code == rc)
			return code_names[i].name;
	return "not a fasvd_error";
}

/* ------------------------------------------------------------ scratch dir */

typedef struct {
	char dir[512];
	char file[600], sub[600], ro[600];
} scratch;

static void scratch_new(scratch *s)
{
	snprintf(s->dir, sizeof s->dir, "%s/fasvd-hostile-XXXXXX", scratch_base());
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->file, sizeof s->file, "%s/file", s->dir);
	snprintf(s->sub, sizeof s->sub, "%s/dir", s->dir);
	snprintf(s->ro, sizeof s->ro, "%s/ro", s->dir);
	FILE *f = fopen(s->file, "w");
	assert_non_null(f);
	fputs("a regular file\n", f);
	fclose(f);
	assert_int_equal(mkdir(s->sub, 0755), 0);
	assert_int_equal(mkdir(s->ro, 0555), 0);
}


/* Every path under dir (relative, sorted, '\n'-separated) into buf. */
static void listing_rec(const char *dir, const char *rel, char *buf, size_t n)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	char *names[256];
	int count = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && count < 256)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			names[count++] = strdup(e->d_name);
	closedir(d);
	for (int i = 0; i < count; i++)
		for (int j = i + 1; j < count; j++)
			if (strcmp(names[i], names[j]) > 0) {
				char *t = names[i];
				names[i] = names[j];
				names[j] = t;
			}
	for (int i = 0; i < count; i++) {
		char path[1200], r[1200];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		snprintf(r, sizeof r, "%s%s", rel, names[i]);
		size_t used = strlen(buf);
		snprintf(buf + used, n - used, "%s\n", r);
		struct stat sb;
		if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
			strncat(r, "/", sizeof r - strlen(r) - 1);
			listing_rec(path, r, buf, n);
		}
		free(names[i]);
	}
}

static void listing(const char *dir, char *buf, size_t n)
{
	buf[0] = '\0';
	listing_rec(dir, "", buf, n);
}

/* "@file" / "@dir" / "@readonly" placeholders and relative names → paths in
 * the scratch folder. */
static void resolve(const scratch *s, const char *in, char *out, size_t n)
{
	if (!strncmp(in, "@file", 5))
		snprintf(out, n, "%s%s", s->file, in + 5);
	else if (!strncmp(in, "@dir", 4))
		snprintf(out, n, "%s%s", s->sub, in + 4);
	else if (!strncmp(in, "@readonly", 9))
		snprintf(out, n, "%s%s", s->ro, in + 9);
	else if (in[0] == '/')
		snprintf(out, n, "%s", in);
	else
		snprintf(out, n, "%s/%s", s->dir, in);
}

/* ---------------------------------------------------------------- checks */

/* The case's expectation for this command: "<cmd>_api" where the C API is
 * expected to behave differently from the command line, else "<cmd>". */
static json_t *expectation(const hcase *hc)
{
	char key[64];
	snprintf(key, sizeof key, "%s_api", hc->cmd);
	json_t *e = json_object_get(hc->c, key);
	return e ? e : json_object_get(hc->c, hc->cmd);
}

/* NULL when the outcome is what the manifest asks for, else why not. */
static const char *evaluate(const hcase *hc, const scratch *s, int rc, const char *detail)
{
	static char why[8192];
	json_t *exp = expectation(hc);
	const char *expect = json_string_value(json_object_get(exp, "expect"));
	if (!expect)
		return "the manifest has no expectation";
	if (rc != 0) {
		/* Whatever was expected, a failure must be clean. */
		if (rc < FASVD_EINTERNAL || rc > 0 || rc == FASVD_EINTERNAL) {
			snprintf(why, sizeof why, "returned %d (%s): %s", rc, code_name(rc), detail);
			return why;
		}
		if (!detail[0]) {
			snprintf(why, sizeof why, "failed with %s and an empty detail message",
			         code_name(rc));
			return why;
		}
		if (strchr(detail, '\n')) {
			snprintf(why, sizeof why, "detail message is not one line: %s", detail);
			return why;
		}
	}
	if (!strcmp(expect, "any"))
		return NULL;
	if (!strcmp(expect, "ok")) {
		if (!rc)
			return NULL;
		snprintf(why, sizeof why, "expected success, got %s: %s", code_name(rc), detail);
		return why;
	}
	json_t *codes = json_object_get(exp, "codes");
	if (rc == 0) {
		snprintf(why, sizeof why, "accepted; expected %s",
		         json_string_value(json_array_get(codes, 0)));
		return why;
	}
	size_t i;
	json_t *v;
	int match = 0;
	json_array_foreach(codes, i, v)
		match |= !strcmp(json_string_value(v), code_name(rc));
	if (!match) {
		snprintf(why, sizeof why, "returned %s, expected %s%s: %s", code_name(rc),
		         json_string_value(json_array_get(codes, 0)),
		         json_array_size(codes) > 1 ? " (or another listed code)" : "", detail);
		return why;
	}
	json_array_foreach(json_object_get(exp, "names"), i, v) {
		char want[1200];
		const char *w = json_string_value(v);
		if (w[0] == '@') {
			resolve(s, w, want, sizeof want);
			w = want;
		}
		if (!strstr(detail, w)) {
			snprintf(why, sizeof why, "message does not name '%s': %s", w, detail);
			return why;
		}
	}
	return NULL;
}

/* Set when a call succeeded with a result that cannot be right. */
static char bad_result[4096];

static void path_of(const char *rel, char *out, size_t n)
{
	if (rel[0] == '/')
		snprintf(out, n, "%s", rel);
	else
		snprintf(out, n, "%s/%s", root, rel);
}

/* The singular values of t must be finite and non-negative. */
static int svdvals_of(fasvd_tensor *t, fasvd_ctx *ctx);

static int run_svdvals(const hcase *hc, fasvd_ctx *ctx)
{
	char path[1200];
	path_of(json_string_value(json_object_get(hc->c, "checkpoint")), path, sizeof path);
	const char *tensor = json_string_value(json_object_get(hc->c, "tensor"));
	fasvd_st *st = (fasvd_st *)1;
	fasvd_tensor *t = (fasvd_tensor *)1;
	int rc = fasvd_st_open(&st, ctx, path);
	if (rc) {
		assert_null(st);
		return rc;
	}
	rc = fasvd_st_tensor(&t, st, tensor, 0);
	if (rc) {
		assert_null(t);
		fasvd_st_free(st);
		return rc;
	}
	rc = svdvals_of(t, ctx);
	fasvd_st_free(st);
	return rc;
}

static int run_gguf(const hcase *hc, fasvd_ctx *ctx)
{
	char path[1200];
	path_of(json_string_value(json_object_get(hc->c, "checkpoint")), path, sizeof path);
	const char *tensor = json_string_value(json_object_get(hc->c, "tensor"));
	fasvd_gguf *g = (fasvd_gguf *)1;
	fasvd_tensor *t = (fasvd_tensor *)1;
	int rc = fasvd_gguf_open(&g, ctx, path);
	if (rc) {
		assert_null(g);
		return rc;
	}
	rc = fasvd_gguf_tensor(&t, g, tensor);
	if (rc) {
		assert_null(t);
		fasvd_gguf_free(g);
		return rc;
	}
	rc = svdvals_of(t, ctx);
	fasvd_gguf_free(g);
	return rc;
}

static int svdvals_of(fasvd_tensor *t, fasvd_ctx *ctx)
{
	int rc;
	int64_t m = fasvd_tensor_rows(t), n = fasvd_tensor_cols(t), k = m < n ? m : n;
	double *s = malloc((size_t)k * sizeof *s);
	assert_non_null(s);
	rc = fasvd_svdvals(s, k, ctx, t, NULL, NULL);
	for (int64_t i = 0; !rc && i < k && !bad_result[0]; i++)
		if (!(s[i] >= 0 && isfinite(s[i])))
			snprintf(bad_result, sizeof bad_result,
			         "succeeded, but singular value %lld of %lld is %g", (long long)i,
			         (long long)k, s[i]);
	free(s);
	fasvd_tensor_free(t);
	return rc;
}

static int run_info(const hcase *hc, fasvd_ctx *ctx)
{
	char path[1200];
	path_of(json_string_value(json_object_get(hc->c, "dir")), path, sizeof path);
	fasvd_model *m = (fasvd_model *)1;
	int rc = fasvd_model_open(&m, ctx, path, 0);
	if (rc) {
		assert_null(m);
		return rc;
	}
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	fasvd_model_free(m);
	return 0;
}

static int run_analyze(const hcase *hc, fasvd_ctx *ctx, const scratch *s)
{
	char path[1200], out[1200], json[1200], csv[1200];
	path_of(json_string_value(json_object_get(hc->c, "dir")), path, sizeof path);
	json_t *args = json_object_get(hc->c, "analyze_args");
	const char *o = json_string_value(json_object_get(args, "out"));
	const char *j = json_string_value(json_object_get(args, "json"));
	const char *c = json_string_value(json_object_get(args, "csv"));
	resolve(s, o ? o : "spectra.safetensors", out, sizeof out);
	fasvd_analyze_opts opts;
	fasvd_analyze_opts_init(&opts, sizeof opts);
	if (j) {
		resolve(s, j, json, sizeof json);
		opts.json_path = json;
	}
	if (c) {
		resolve(s, c, csv, sizeof csv);
		opts.csv_path = csv;
	}
	int rc = fasvd_analyze(ctx, path, out, &opts);
	if (rc)
		return rc;
	/* Success: the spectra file must hold finite, non-negative values. */
	fasvd_st *st = NULL;
	if (fasvd_st_open(&st, ctx, out)) {
		snprintf(bad_result, sizeof bad_result, "succeeded, but %s is unreadable: %s", out,
		         fasvd_last_error());
		return 0;
	}
	for (int64_t i = 0; i < fasvd_st_count(st) && !bad_result[0]; i++) {
		const char *name = fasvd_st_name(st, i);
		fasvd_st_info info;
		fasvd_st_info_init(&info, sizeof info);
		const void *raw = NULL;
		uint64_t nb = 0;
		if (fasvd_st_info_get(&info, st, name) || fasvd_st_raw(&raw, &nb, st, name) ||
		    strcmp(info.dtype, "F64")) {
			snprintf(bad_result, sizeof bad_result, "succeeded, but %s: '%s' is not F64", out,
			         name);
			break;
		}
		for (uint64_t k = 0; k < nb / 8; k++) {
			double x;
			memcpy(&x, (const char *)raw + 8 * k, 8);
			if (!(x >= 0 && isfinite(x))) {
				snprintf(bad_result, sizeof bad_result,
				         "succeeded, but %s: '%s'[%llu] = %g", out, name,
				         (unsigned long long)k, x);
				break;
			}
		}
	}
	fasvd_st_free(st);
	return 0;
}

/* Like test_alloc_fn, but an allocation that malloc itself refuses (a
 * hostile size) is not counted: only memory handed out must be freed. */
static void *counting_alloc(void *opaque, size_t size)
{
	test_alloc_state *st = opaque;
	void *p = malloc(size);
	if (p)
		__atomic_add_fetch(&st->allocs, 1, __ATOMIC_SEQ_CST);
	return p;
}

/* A failed analysis may leave one new file: the spectra of the steps it
 * completed, incomplete and resumable, named in the message ("X keeps the
 * N steps done so far"). Is the change from before to after (listings of
 * dir) exactly that? */
static bool kept_partial(const char *dir, const char *before, const char *after,
                         const char *detail)
{
	char added[1200] = "", rest[65536] = "";
	for (const char *p = after; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
		char line[1200];
		snprintf(line, sizeof line, "%.*s", (int)n, p);
		if (strstr(before, line) || added[0])
			strncat(rest, line, sizeof rest - strlen(rest) - 1);
		else
			snprintf(added, sizeof added, "%.*s", (int)n - 1, p);
		p += n;
	}
	char path[2400], named[2500];
	snprintf(path, sizeof path, "%s/%s", dir, added);
	snprintf(named, sizeof named, "%s keeps the", path);
	if (!added[0] || strcmp(rest, before) || !strstr(detail, named))
		return false;
	fasvd_st *st = NULL;
	if (fasvd_st_open(&st, NULL, path))
		return false;
	const char *complete = NULL;
	fasvd_st_metadata(&complete, st, "complete");
	bool ok = complete && !strcmp(complete, "false");
	fasvd_st_free(st);
	return ok;
}

/* What one check found, passed from the child that ran it. */
typedef struct {
	int rc;
	char line[4400]; /* "name: CODE: detail" for the log */
	char bad[16384]; /* "" when the outcome is the expected one */
} verdict;

/* Run the check in this process (the forked child) and judge it, with the
 * scratch output folder s (made and removed by the parent, so that a killed
 * child leaves nothing behind). */
static void judge(const hcase *hc, const scratch *sp, verdict *v)
{
	test_alloc_state as = {0};
	fasvd_allocator a = {counting_alloc, test_free_fn, &as};
	fasvd_ctx *ctx = NULL;
	if (fasvd_ctx_new(&ctx, &a) || fasvd_ctx_set_param(ctx, FASVD_CTX_THREADS, 1)) {
		snprintf(v->bad, sizeof v->bad, "cannot create a context: %s", fasvd_last_error());
		return;
	}
	scratch s = *sp;
	static char before[65536], after[65536];
	listing(s.dir, before, sizeof before);
	fasvd_clear_error();
	bad_result[0] = '\0';
	int rc;
	if (!strcmp(hc->cmd, "svdvals"))
		rc = run_svdvals(hc, ctx);
	else if (!strcmp(hc->cmd, "info"))
		rc = run_info(hc, ctx);
	else if (!strcmp(hc->cmd, "gguf"))
		rc = run_gguf(hc, ctx);
	else
		rc = run_analyze(hc, ctx, &s);
	char detail[4096];
	snprintf(detail, sizeof detail, "%s", fasvd_last_error());
	listing(s.dir, after, sizeof after);
	fasvd_ctx_free(ctx);
	v->rc = rc;
	snprintf(v->line, sizeof v->line, "%s: %s%s%s", hc->name, code_name(rc), rc ? ": " : "",
	         rc ? detail : "");
	const char *bad = NULL;
	if (as.allocs != as.frees) {
		snprintf(v->bad, sizeof v->bad, "%ld allocations but %ld frees (%s)", as.allocs,
		         as.frees, code_name(rc));
	} else if (rc && strcmp(before, after) && !kept_partial(s.dir, before, after, detail)) {
		for (char *c = before; *c; c++)
			*c = *c == '\n' ? ' ' : *c;
		for (char *c = after; *c; c++)
			*c = *c == '\n' ? ' ' : *c;
		snprintf(v->bad, sizeof v->bad,
		         "failed (%s) but changed the output folder: before [%s] after [%s]",
		         code_name(rc), before, after);
	} else if (bad_result[0]) {
		snprintf(v->bad, sizeof v->bad, "%s", bad_result);
	} else if ((bad = evaluate(hc, &s, rc, detail)) != NULL) {
		snprintf(v->bad, sizeof v->bad, "%s", bad);
	}
}

/* Seconds a check may take (tiny fixtures: well under a second natively). */
#define CHECK_TIMEOUT 60

/* Fork, judge in the child, wait at most CHECK_TIMEOUT seconds: a hang, a
 * signal or a sanitizer / valgrind error exit in the child is a failed
 * check of this case only. */
static void run_isolated(const hcase *hc, verdict *v)
{
	json_t *tj = json_object_get(hc->c, "timeout");
	int timeout = json_is_integer(tj) ? (int)json_integer_value(tj) : CHECK_TIMEOUT;
	memset(v, 0, sizeof *v);
	scratch s;
	scratch_new(&s);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		verdict *cv = calloc(1, sizeof *cv);
		if (cv) {
			judge(hc, &s, cv);
			const char *p = (const char *)cv;
			size_t left = sizeof *cv;
			while (left) {
				ssize_t w = write(fds[1], p, left);
				if (w <= 0)
					break;
				p += w;
				left -= (size_t)w;
			}
			free(cv);
		}
		close(fds[1]);
		exit(0); /* exit, not _exit: LeakSanitizer runs at exit */
	}
	close(fds[1]);
	size_t got = 0;
	int timed_out = 0;
	while (got < sizeof *v) {
		struct pollfd pfd = {fds[0], POLLIN, 0};
		int pr = poll(&pfd, 1, timeout * 1000);
		if (pr == 0) {
			timed_out = 1;
			break;
		}
		if (pr < 0 && errno == EINTR)
			continue;
		ssize_t r = read(fds[0], (char *)v + got, sizeof *v - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fds[0]);
	if (timed_out)
		kill(pid, SIGKILL);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	scratch_rmtree(s.dir);
	if (timed_out) {
		snprintf(v->bad, sizeof v->bad, "hung: no result after %d s", timeout);
	} else if (WIFSIGNALED(status)) {
		snprintf(v->bad, sizeof v->bad, "killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	} else if (got != sizeof *v) {
		snprintf(v->bad, sizeof v->bad, "the check died (exit status %d)",
		         WEXITSTATUS(status));
	} else if (WEXITSTATUS(status) != 0) {
		char prev[512];
		snprintf(prev, sizeof prev, "%.400s", v->bad[0] ? v->bad : "outcome as expected otherwise");
		snprintf(v->bad, sizeof v->bad,
		         "memory error reported at exit (exit status %d; see stderr): %s",
		         WEXITSTATUS(status), prev);
	}
}

static void run_case(void **state)
{
	const hcase *hc = *state;
	json_t *exp = expectation(hc);
	const char *xfail = json_string_value(json_object_get(exp, "xfail"));
	json_t *args = json_object_get(hc->c, "analyze_args");
	const char *o = json_string_value(json_object_get(args, "out"));
	if (!strcmp(hc->cmd, "analyze") && o && !strncmp(o, "@readonly", 9) && geteuid() == 0) {
		/* (cmocka's skip() is "not ok # SKIP", which meson counts as a failure) */
		print_message("# %s: not run: root writes into read-only folders\n", hc->name);
		return;
	}
	static verdict v;
	run_isolated(hc, &v);
	if (v.line[0])
		print_message("# %s\n", v.line);
	if (xfail) {
		/* A known library bug (gen-hostile.py XFAIL): the check must still
		 * fail; once the bug is fixed this test fails until the entry goes. */
		if (!v.bad[0])
			fail_msg("%s: passes now: remove its XFAIL entry in gen-hostile.py (%s)",
			         hc->name, xfail);
		print_message("# %s: expected failure (%s): %s\n", hc->name, xfail, v.bad);
		return;
	}
	if (v.bad[0])
		fail_msg("%s: %s", hc->name, v.bad);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test-hostile-api MANIFEST\n");
		return 2;
	}
	json_error_t err;
	json_t *man = json_load_file(argv[1], 0, &err);
	if (!man) {
		fprintf(stderr, "test-hostile-api: %s: %s\n", argv[1], err.text);
		return 1;
	}
	root = json_string_value(json_object_get(man, "root"));
	json_t *cases = json_object_get(man, "cases");
	if (!root || !json_is_array(cases)) {
		fprintf(stderr, "test-hostile-api: %s: not a hostile-case manifest\n", argv[1]);
		return 1;
	}
	static const char *const cmds[] = {"svdvals", "info", "analyze", "gguf"};
	size_t n = json_array_size(cases) * 4, count = 0;
	hcase *hcs = calloc(n, sizeof *hcs);
	struct CMUnitTest *tests = calloc(n, sizeof *tests);
	if (!hcs || !tests)
		return 1;
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) {
		for (int k = 0; k < 4; k++) {
			if (!json_object_get(c, cmds[k]))
				continue;
			hcase *h = &hcs[count];
			h->c = c;
			h->cmd = cmds[k];
			snprintf(h->name, sizeof h->name, "%s/%s",
			         json_string_value(json_object_get(c, "id")), cmds[k]);
			tests[count].name = h->name;
			tests[count].test_func = run_case;
			tests[count].initial_state = h;
			count++;
		}
	}
	int failed = _cmocka_run_group_tests("hostile-api", tests, count, NULL, NULL);
	free(tests);
	free(hcs);
	json_decref(man);
	return failed;
}
