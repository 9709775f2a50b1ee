/* Helpers shared by the libFuzzer targets tests/fuzz/fuzz-<target>.c.
 *
 * Each target defines LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize when it
 * needs set-up). Built with -Dfuzzing=true they link libFuzzer's main; built
 * without, they link replay.c, which feeds them every corpus file as a TAP
 * test. A target reports a broken invariant with FUZZ_CHECK, which aborts (a
 * crash for libFuzzer, a failed test for the replay driver); errors that
 * libfasvd reports cleanly are the expected outcome of most inputs.
 *
 * The targets work on real files (the library opens paths and mmaps them):
 * each process gets one private scratch folder, under $FUZZ_TMPDIR, else
 * scratch_base() ($TMPDIR, else /dev/shm: no disk writes per input, else
 * /tmp), removed at exit.
 */
#ifndef FASVD_FUZZ_COMMON_H
#define FASVD_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fasvd/fasvd.h>

#include "../hostile/scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Abort with a message when an invariant of the library does not hold. */
#define FUZZ_CHECK(cond, ...)                                                            \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, \
			        #cond);                                                  \
			fprintf(stderr, __VA_ARGS__);                                    \
			fprintf(stderr, "\n");                                           \
			abort();                                                         \
		}                                                                        \
	} while (0)

/* FUZZ_VERBOSE=1 in the environment: print each input's outcome to stderr
 * (for reviewing what a corpus reaches). */
static inline int fuzz_verbose(void)
{
	static int v = -1;
	if (v < 0) {
		const char *e = getenv("FUZZ_VERBOSE");
		v = e && *e && *e != '0';
	}
	return v;
}

/* A failed call must leave a detail message naming something (never ""),
 * and its code must be a documented fasvd_error. */
static inline void fuzz_check_error(int rc, const char *call)
{
	FUZZ_CHECK(rc < 0 && rc >= FASVD_EINTERNAL, "%s returned %d", call, rc);
	FUZZ_CHECK(rc != FASVD_EINTERNAL, "%s: internal error: %s", call, fasvd_last_error());
	const char *msg = fasvd_last_error();
	if (fuzz_verbose())
		fprintf(stderr, "  %s: %s: %s\n", call, fasvd_strerror(rc), msg);
	FUZZ_CHECK(msg && msg[0], "%s returned %d (%s) with an empty detail message", call, rc,
	           fasvd_strerror(rc));
}

/* ------------------------------------------------------------ scratch folder */

static char fuzz_root[4096];


static inline void fuzz_cleanup(void)
{
	if (fuzz_root[0])
		scratch_rmtree(fuzz_root);
	fuzz_root[0] = 0;
}

/* The process's scratch folder (created on first use). Exits on failure:
 * without it the target cannot run at all. */
static inline const char *fuzz_tmpdir(void)
{
	if (fuzz_root[0])
		return fuzz_root;
	const char *base = getenv("FUZZ_TMPDIR");
	if (!base || !*base)
		base = scratch_base();
	snprintf(fuzz_root, sizeof fuzz_root, "%s/fasvd-fuzz-XXXXXX", base);
	if (!mkdtemp(fuzz_root)) {
		fprintf(stderr, "fuzz: cannot create a scratch folder in %s: %s\n", base,
		        strerror(errno));
		exit(1);
	}
	atexit(fuzz_cleanup);
	return fuzz_root;
}

/* Write n bytes to path (replacing it). Exits on failure (disk full …). */
static inline void fuzz_write_file(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "fuzz: cannot create %s: %s\n", path, strerror(errno));
		exit(1);
	}
	const char *p = data;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
			exit(1);
		}
		p += w;
		n -= (size_t)w;
	}
	close(fd);
}

/* Create folder path (and keep it if it exists). */
static inline void fuzz_mkdir(const char *path)
{
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "fuzz: cannot create %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

/* ------------------------------------------------------------- tensor checks */

/* Largest tensor (elements) the targets decode in full: bigger ones are
 * spot-checked (first and last element), so that one input never takes
 * more than a few milliseconds. */
#define FUZZ_MAX_DECODE 65536

static inline int fuzz_same(double a, double b)
{
	return (isnan(a) && isnan(b)) || a == b;
}

/* Decode t every way the API offers and check that the ways agree:
 * to_f64 row- and column-major, to_f32 == (float)to_f64 element-wise (the
 * f32 path rounds the exact value once), fasvd_tensor_get, and the
 * non-finite policy (without FASVD_DECODE_ALLOW_NONFINITE a NaN/Inf must
 * be refused with FASVD_ENONFINITE, and only then). */
static inline void fuzz_touch_tensor(const fasvd_tensor *t)
{
	int64_t m = fasvd_tensor_rows(t), n = fasvd_tensor_cols(t);
	FUZZ_CHECK(m >= 1 && n >= 1, "tensor of shape [%lld, %lld]", (long long)m, (long long)n);
	double v;
	int rc = fasvd_tensor_get(&v, t, 0, 0);
	FUZZ_CHECK(rc == 0, "get(0, 0): %s", fasvd_last_error());
	rc = fasvd_tensor_get(&v, t, m - 1, n - 1);
	FUZZ_CHECK(rc == 0, "get(last): %s", fasvd_last_error());
	FUZZ_CHECK(fasvd_tensor_get(&v, t, m, 0) == FASVD_EINVAL, "get(rows, 0) accepted");
	FUZZ_CHECK(fasvd_tensor_get(&v, t, 0, -1) == FASVD_EINVAL, "get(0, -1) accepted");
	if (m > FUZZ_MAX_DECODE / n)
		return;
	size_t count = (size_t)(m * n);
	double *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
	float *f = malloc(count * sizeof *f);
	FUZZ_CHECK(a && b && f, "out of memory for %zu elements", count);
	rc = fasvd_tensor_to_f64(a, n, FASVD_LAYOUT_ROW_MAJOR, t, FASVD_DECODE_ALLOW_NONFINITE);
	FUZZ_CHECK(rc == 0, "to_f64 row-major: %s", fasvd_last_error());
	rc = fasvd_tensor_to_f64(b, m, FASVD_LAYOUT_COL_MAJOR, t, FASVD_DECODE_ALLOW_NONFINITE);
	FUZZ_CHECK(rc == 0, "to_f64 col-major: %s", fasvd_last_error());
	rc = fasvd_tensor_to_f32(f, n, FASVD_LAYOUT_ROW_MAJOR, t, FASVD_DECODE_ALLOW_NONFINITE);
	FUZZ_CHECK(rc == 0, "to_f32: %s", fasvd_last_error());
	int finite = 1;
	for (int64_t r = 0; r < m; r++)
		for (int64_t c = 0; c < n; c++) {
			double x = a[r * n + c];
			FUZZ_CHECK(fuzz_same(x, b[c * m + r]), "row/col-major differ at (%lld, %lld)",
			           (long long)r, (long long)c);
			FUZZ_CHECK(fuzz_same((double)(float)x, (double)f[r * n + c]),
			           "f32 %.9g != (float) f64 %.17g at (%lld, %lld)", (double)f[r * n + c],
			           x, (long long)r, (long long)c);
			if (!isfinite(x))
				finite = 0;
		}
	/* Spot-check fasvd_tensor_get on the diagonal. */
	for (int64_t i = 0; i < m && i < n; i++) {
		FUZZ_CHECK(fasvd_tensor_get(&v, t, i, i) == 0, "get(%lld): %s", (long long)i,
		           fasvd_last_error());
		FUZZ_CHECK(fuzz_same(v, a[i * n + i]), "get(%lld, %lld) = %.17g, decode gave %.17g",
		           (long long)i, (long long)i, v, a[i * n + i]);
	}
	rc = fasvd_tensor_to_f64(b, n, FASVD_LAYOUT_ROW_MAJOR, t, 0);
	if (finite) {
		FUZZ_CHECK(rc == 0, "strict decode of finite data: %s", fasvd_last_error());
	} else {
		FUZZ_CHECK(rc == FASVD_ENONFINITE, "strict decode of non-finite data returned %d",
		           rc);
		fuzz_check_error(rc, "fasvd_tensor_to_f64");
	}
	rc = fasvd_tensor_to_f32(f, n, FASVD_LAYOUT_ROW_MAJOR, t, 0);
	/* f32 may overflow to Inf where f64 was finite: refusing that is allowed. */
	FUZZ_CHECK(rc == 0 || rc == FASVD_ENONFINITE, "strict f32 decode returned %d", rc);
	FUZZ_CHECK(finite || rc == FASVD_ENONFINITE, "strict f32 decode accepted NaN/Inf");
	free(a);
	free(b);
	free(f);
}

#endif
