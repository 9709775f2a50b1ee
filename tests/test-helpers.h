/* Shared helpers for the CMocka tests (cmocka 1.1.5 has no float assert). */
#ifndef FASVD_TEST_HELPERS_H
#define FASVD_TEST_HELPERS_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fasvd/fasvd.h>

/* Value of a checkpoint's metadata key, or NULL when fasvd_st_metadata fails
 * (no such key). */
static inline const char *test_st_meta(const fasvd_st *st, const char *key)
{
	const char *value;
	return fasvd_st_metadata(&value, st, key) ? NULL : value;
}

/* |a - b| <= atol + rtol * |b|, with a message naming both values. */
#define assert_close(a, b, rtol, atol) \
	fasvd_test_assert_close((a), (b), (rtol), (atol), #a, __FILE__, __LINE__)

static inline void fasvd_test_assert_close(double a, double b, double rtol, double atol,
                                           const char *expr, const char *file, int line)
{
	double tol = atol + rtol * fabs(b);
	if (!(fabs(a - b) <= tol) && !(isnan(a) && isnan(b))) {
		print_error("%s = %.17g, expected %.17g (|diff| %.3g > tol %.3g)\n", expr, a, b,
		               fabs(a - b), tol);
		_fail(file, line);
	}
}

/* Assert a libfasvd call returns `code`, printing the detail message. */
#define assert_fasvd(call, code)                                                              \
	do {                                                                                  \
		int rc_ = (call);                                                             \
		if (rc_ != (code)) {                                                          \
			print_error("%s returned %d (%s), expected %d; detail: %s\n", #call, rc_, \
			               fasvd_strerror(rc_), (int)(code), fasvd_last_error()); \
			_fail(__FILE__, __LINE__);                                            \
		}                                                                             \
	} while (0)

#define assert_ok(call) assert_fasvd((call), 0)

/* Deterministic xorshift64* generator and standard normal deviates. */
typedef struct {
	uint64_t s;
} test_rng;

static inline uint64_t test_rng_next(test_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ULL;
}

static inline double test_rng_uniform(test_rng *r)
{
	return (double)(test_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static inline double test_rng_normal(test_rng *r)
{
	double u1 = test_rng_uniform(r), u2 = test_rng_uniform(r);
	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Path of a file of the test data committed in tests/data/ (README.md
 * there says where each comes from), into buf. */
static inline const char *test_data_path(const char *rel, char *buf, size_t n)
{
	const char *root = getenv("FASVD_SOURCE_ROOT");
	snprintf(buf, n, "%s/tests/data/%s", root ? root : ".", rel);
	return buf;
}

/* Counting / failing allocator for leak and fault-injection tests. */
typedef struct {
	long allocs, frees, fail_at; /* fail the fail_at-th allocation (1-based); 0: never */
	long long live_bytes;
} test_alloc_state;

static inline void *test_alloc_fn(void *opaque, size_t size)
{
	test_alloc_state *st = opaque;
	long n = __atomic_add_fetch(&st->allocs, 1, __ATOMIC_SEQ_CST);
	if (st->fail_at && n == st->fail_at)
		return NULL;
	return malloc(size);
}

static inline void test_free_fn(void *opaque, void *p)
{
	test_alloc_state *st = opaque;
	if (p)
		__atomic_add_fetch(&st->frees, 1, __ATOMIC_SEQ_CST);
	free(p);
}


/* Skip the rest of a test with a reason. cmocka 1.1.5's skip() prints
 * "not ok N # SKIP" in TAP mode, which meson counts as a failure, so the
 * test instead returns early (reported as passed) after printing the reason
 * as a TAP comment. */
#define test_skip(...)                                  \
	do {                                            \
		print_message("# SKIP: " __VA_ARGS__);  \
		return;                                 \
	} while (0)

#endif
