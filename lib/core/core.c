/* libfasvd — core: version, errors, allocation, contexts, worker threads. */
#include "core/internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- version */

unsigned fasvd_version_number(void)
{
	return FASVD_VERSION_NUMBER;
}

const char *fasvd_version_string(void)
{
	return FASVD_VERSION_STRING;
}

/* ----------------------------------------------------------------- errors */

#define FASVD__ERRLEN 1024
static _Thread_local char errbuf[FASVD__ERRLEN];

const char *fasvd_strerror(int code)
{
	switch (code) {
	case FASVD_OK: return "success";
	case FASVD_EINVAL: return "invalid argument";
	case FASVD_ENOMEM: return "out of memory";
	case FASVD_EIO: return "input/output error";
	case FASVD_EFORMAT: return "malformed file";
	case FASVD_EDTYPE: return "unsupported dtype";
	case FASVD_ESHAPE: return "wrong shape";
	case FASVD_ENONFINITE: return "NaN or Inf in input";
	case FASVD_ERANGE: return "size out of range";
	case FASVD_ELAPACK: return "LAPACK failure";
	case FASVD_ENOTFOUND: return "not found";
	case FASVD_EARCH: return "unsupported architecture or inconsistent config";
	case FASVD_ECANCELED: return "operation cancelled";
	case FASVD_ESTATE: return "invalid state";
	case FASVD_EINTERNAL: return "internal error";
	default: return "unknown error";
	}
}

const char *fasvd_last_error(void)
{
	return errbuf;
}

void fasvd_clear_error(void)
{
	errbuf[0] = '\0';
}

int fasvd__error(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	return code;
}

int fasvd__error_prefix(int code, const char *fmt, ...)
{
	char prefix[FASVD__ERRLEN], old[FASVD__ERRLEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(old, errbuf, sizeof old);
	const char *tail = old[0] ? old : fasvd_strerror(code);
	/* One name per message (docs/error-model.md): a detail that already
	 * starts with the whole prefix is kept as it is; one that starts with
	 * the prefix's leading "name: " (a function naming itself) loses it. */
	size_t n = strlen(prefix), lead = strcspn(prefix, ":");
	if (strncmp(tail, prefix, n) == 0 && tail[n] == ':' && tail[n + 1] == ' ') {
		if (!old[0])
			snprintf(errbuf, sizeof errbuf, "%s", tail);
		return code;
	}
	if (lead && strncmp(tail, prefix, lead) == 0 && tail[lead] == ':' && tail[lead + 1] == ' ')
		tail += lead + 2;
	if (n > sizeof errbuf - 3)
		n = sizeof errbuf - 3;
	memcpy(errbuf, prefix, n);
	memcpy(errbuf + n, ": ", 2);
	size_t room = sizeof errbuf - n - 3;
	size_t m = strlen(tail);
	if (m > room)
		m = room;
	memcpy(errbuf + n + 2, tail, m);
	errbuf[n + 2 + m] = '\0';
	return code;
}

void fasvd__error_copy(char *dst, size_t n)
{
	if (n == 0)
		return;
	snprintf(dst, n, "%s", errbuf);
}

static size_t struct_size(const void *s)
{
	size_t size;
	memcpy(&size, s, sizeof size);
	return size;
}

int fasvd__check_versioned(const void *s, const fasvd__struct_ver *v, const char *fn,
                           const char *what)
{
	size_t size = struct_size(s);
	if (size < v->first || size > FASVD__MAX_STRUCT_SIZE)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: %s->size is %zu, not a size of %s (%zu to %zu bytes): "
		                    "initialise it with %s()",
		                    fn, what, size, v->name, v->first, (size_t)FASVD__MAX_STRUCT_SIZE,
		                    v->init);
	return 0;
}

int fasvd__load_versioned(void *dst, const void *src, const fasvd__struct_ver *v, const char *fn,
                          const char *what)
{
	int rc = fasvd__check_versioned(src, v, fn, what);
	if (rc)
		return rc;
	size_t size = struct_size(src);
	for (size_t i = v->size; i < size; i++)
		if (((const unsigned char *)src)[i])
			return fasvd__error(FASVD_EINVAL,
			                    "%s: %s is a %s of %zu bytes; this libfasvd %s knows its "
			                    "first %zu, and the members after them must be zero",
			                    fn, what, v->name, size, fasvd_version_string(), v->size);
	size_t n = size < v->size ? size : v->size;
	memcpy((char *)dst + sizeof size, (const char *)src + sizeof size, n - sizeof size);
	return 0;
}

int fasvd__init_versioned(void *o, size_t size, const void *defaults, const fasvd__struct_ver *v)
{
	if (!o)
		return fasvd__error(FASVD_EINVAL, "%s: the %s to initialise is NULL", v->init,
		                    v->name);
	if (size < v->first || size > FASVD__MAX_STRUCT_SIZE) {
		if (size >= sizeof size)
			memcpy(o, &size, sizeof size);
		return fasvd__error(FASVD_EINVAL,
		                    "%s: size %zu is not a size of %s (%zu to %zu bytes): pass "
		                    "the sizeof of the caller's struct",
		                    v->init, size, v->name, v->first, (size_t)FASVD__MAX_STRUCT_SIZE);
	}
	memset(o, 0, size);
	if (defaults)
		memcpy(o, defaults, size < v->size ? size : v->size);
	memcpy(o, &size, sizeof size);
	return 0;
}

void fasvd__store_versioned(void *dst, const void *src, const fasvd__struct_ver *v)
{
	size_t size = struct_size(dst);
	size_t n = size < v->size ? size : v->size;
	memcpy((char *)dst + sizeof size, (const char *)src + sizeof size, n - sizeof size);
}

/* ------------------------------------------------------------- allocation */

static void *default_alloc(void *opaque, size_t size)
{
	(void)opaque;
	return malloc(size ? size : 1);
}

static void default_free(void *opaque, void *p)
{
	(void)opaque;
	free(p);
}

static fasvd_ctx default_ctx = {
	.allocator = {default_alloc, default_free, NULL},
	.threads = 0,
	.compute = FASVD_COMPUTE_F32,
	.is_default = true,
};

fasvd_ctx *fasvd__ctx(fasvd_ctx *ctx)
{
	return ctx ? ctx : &default_ctx;
}

bool fasvd__mul_size(size_t a, size_t b, size_t *out)
{
	if (a != 0 && b > SIZE_MAX / a)
		return false;
	*out = a * b;
	return true;
}

bool fasvd__mul_i64(int64_t a, int64_t b, int64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

void *fasvd__alloc(fasvd_ctx *ctx, size_t size, const char *what)
{
	ctx = fasvd__ctx(ctx);
	void *p = ctx->allocator.alloc(ctx->allocator.opaque, size ? size : 1);
	if (!p)
		fasvd__error(FASVD_ENOMEM, "out of memory allocating %zu bytes for %s", size,
		             what ? what : "a buffer");
	return p;
}

void *fasvd__calloc(fasvd_ctx *ctx, size_t n, size_t size, const char *what)
{
	size_t total;
	if (!fasvd__mul_size(n, size, &total)) {
		fasvd__error(FASVD_ENOMEM, "size of %s overflows (%zu x %zu bytes)",
		             what ? what : "a buffer", n, size);
		return NULL;
	}
	void *p = fasvd__alloc(ctx, total, what);
	if (p)
		memset(p, 0, total);
	return p;
}

void fasvd__free(fasvd_ctx *ctx, void *p)
{
	if (!p)
		return;
	ctx = fasvd__ctx(ctx);
	ctx->allocator.free(ctx->allocator.opaque, p);
}

char *fasvd__strdup(fasvd_ctx *ctx, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = fasvd__alloc(ctx, n, "a string");
	if (p)
		memcpy(p, s, n);
	return p;
}

void *fasvd__grow(fasvd_ctx *ctx, void *arr, int64_t n, int64_t *cap, size_t size, int64_t first,
                  const char *what)
{
	if (n < *cap)
		return arr;
	int64_t c = *cap ? 2 * *cap : first;
	void *p = fasvd__calloc(ctx, (size_t)c, size, what);
	if (!p)
		return NULL;
	if (n)
		memcpy(p, arr, (size_t)n * size);
	fasvd__free(ctx, arr);
	*cap = c;
	return p;
}

/* ---------------------------------------------------------------- context */

int fasvd_ctx_new(fasvd_ctx **out, const fasvd_allocator *allocator)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_ctx_new: out is NULL");
	*out = NULL;
	if (allocator && (!allocator->alloc || !allocator->free))
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_ctx_new: allocator needs both alloc and free");
	fasvd_allocator a = allocator ? *allocator : default_ctx.allocator;
	fasvd_ctx *ctx = a.alloc(a.opaque, sizeof *ctx);
	if (!ctx)
		return fasvd__error(FASVD_ENOMEM, "fasvd_ctx_new: out of memory");
	memset(ctx, 0, sizeof *ctx);
	ctx->allocator = a;
	ctx->threads = 0;
	ctx->compute = FASVD_COMPUTE_F32;
	ctx->is_default = false;
	*out = ctx;
	return 0;
}

void fasvd_ctx_free(fasvd_ctx *ctx)
{
	if (!ctx || ctx->is_default)
		return;
	fasvd_allocator a = ctx->allocator;
	a.free(a.opaque, ctx);
}

fasvd_bounds fasvd_ctx_param_bounds(fasvd_ctx_param param)
{
	fasvd_bounds b = {0, 0, 0};
	switch (param) {
	case FASVD_CTX_THREADS:
		b.lower = 0;
		b.upper = 1024;
		break;
	case FASVD_CTX_COMPUTE:
		b.lower = FASVD_COMPUTE_F32;
		b.upper = FASVD_COMPUTE_F64;
		break;
	default:
		b.error = FASVD_EINVAL;
	}
	return b;
}

static const char *param_name(fasvd_ctx_param p)
{
	switch (p) {
	case FASVD_CTX_THREADS: return "FASVD_CTX_THREADS";
	case FASVD_CTX_COMPUTE: return "FASVD_CTX_COMPUTE";
	default: return "unknown parameter";
	}
}

int fasvd_ctx_set_param(fasvd_ctx *ctx, fasvd_ctx_param param, int64_t value)
{
	if (!ctx)
		return fasvd__error(FASVD_EINVAL, "fasvd_ctx_set_param: ctx is NULL");
	fasvd_bounds b = fasvd_ctx_param_bounds(param);
	if (b.error)
		return fasvd__error(FASVD_EINVAL, "fasvd_ctx_set_param: unknown parameter %d",
		                    (int)param);
	if (value < b.lower || value > b.upper)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_ctx_set_param: %s = %lld is outside [%lld, %lld]",
		                    param_name(param), (long long)value, (long long)b.lower,
		                    (long long)b.upper);
	if (param == FASVD_CTX_THREADS)
		ctx->threads = value;
	else
		ctx->compute = value;
	return 0;
}

static int online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		return 1;
	return n > 1024 ? 1024 : (int)n;
}

int fasvd__threads(const fasvd_ctx *ctx)
{
	if (!ctx)
		ctx = &default_ctx;
	return ctx->threads > 0 ? (int)ctx->threads : online_cpus();
}

int fasvd_ctx_get_param(int64_t *out, const fasvd_ctx *ctx, fasvd_ctx_param param)
{
	if (!ctx || !out)
		return fasvd__error(FASVD_EINVAL, "fasvd_ctx_get_param: NULL argument");
	switch (param) {
	case FASVD_CTX_THREADS: *out = fasvd__threads(ctx); return 0;
	case FASVD_CTX_COMPUTE: *out = ctx->compute; return 0;
	default:
		return fasvd__error(FASVD_EINVAL, "fasvd_ctx_get_param: unknown parameter %d",
		                    (int)param);
	}
}

/* ------------------------------------------------------------ BLAS threads */

/* OpenBLAS exports these; weak so that another BLAS works too. */
extern void openblas_set_num_threads(int) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));

static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;
/* Parallel regions running now, in every thread and context, and the BLAS
 * thread count from before the first of them (both guarded by blas_lock).
 * The BLAS setting is process-wide, so regions are counted rather than
 * saved and restored one by one: with overlapping regions in two threads,
 * the first to end would otherwise restore the count while the other's
 * workers still run, and the last would "restore" the 1 it had saved,
 * leaving BLAS single-threaded for good. */
static int blas_regions;
static int blas_before;

int fasvd__blas_get_threads(void)
{
	return openblas_get_num_threads ? openblas_get_num_threads() : 1;
}

void fasvd__blas_set_threads(int n)
{
	if (!openblas_set_num_threads || !openblas_get_num_threads || n < 1)
		return;
	pthread_mutex_lock(&blas_lock);
	/* While a parallel region runs BLAS stays single-threaded (its workers
	 * use the threads); the region's end restores the count. */
	if (blas_regions == 0 && openblas_get_num_threads() != n)
		openblas_set_num_threads(n);
	pthread_mutex_unlock(&blas_lock);
}

static void blas_region_enter(void)
{
	if (!openblas_set_num_threads || !openblas_get_num_threads)
		return;
	pthread_mutex_lock(&blas_lock);
	if (blas_regions++ == 0) {
		blas_before = openblas_get_num_threads();
		if (blas_before != 1)
			openblas_set_num_threads(1);
	}
	pthread_mutex_unlock(&blas_lock);
}

static void blas_region_leave(void)
{
	if (!openblas_set_num_threads || !openblas_get_num_threads)
		return;
	pthread_mutex_lock(&blas_lock);
	if (--blas_regions == 0 && openblas_get_num_threads() != blas_before)
		openblas_set_num_threads(blas_before);
	pthread_mutex_unlock(&blas_lock);
}

/* ------------------------------------------------------------ parallel_for */

struct pf_shared {
	fasvd__task_fn fn;
	void *arg;
	int64_t n;
	int64_t next;  /* guarded by lock */
	int err;       /* first error, guarded by lock */
	char msg[FASVD__ERRLEN];
	pthread_mutex_t lock;
};

struct pf_worker {
	struct pf_shared *sh;
	int id;
};

static void *pf_run(void *p)
{
	struct pf_worker *w = p;
	struct pf_shared *sh = w->sh;
	for (;;) {
		pthread_mutex_lock(&sh->lock);
		int64_t i = sh->err ? sh->n : sh->next++;
		pthread_mutex_unlock(&sh->lock);
		if (i >= sh->n)
			break;
		int rc = sh->fn(sh->arg, i, w->id);
		if (rc) {
			pthread_mutex_lock(&sh->lock);
			if (!sh->err) {
				sh->err = rc;
				fasvd__error_copy(sh->msg, sizeof sh->msg);
			}
			pthread_mutex_unlock(&sh->lock);
			break;
		}
	}
	return NULL;
}

int fasvd__parallel_workers(fasvd_ctx *ctx, int64_t n)
{
	int t = fasvd__threads(fasvd__ctx(ctx));
	if (n < t)
		t = n < 1 ? 1 : (int)n;
	return t;
}

int fasvd__parallel_for(fasvd_ctx *ctx, int64_t n, fasvd__task_fn fn, void *arg)
{
	if (n <= 0)
		return 0;
	int nw = fasvd__parallel_workers(ctx, n);
	if (nw == 1) {
		for (int64_t i = 0; i < n; i++) {
			int rc = fn(arg, i, 0);
			if (rc)
				return rc;
		}
		return 0;
	}
	struct pf_shared sh = {.fn = fn, .arg = arg, .n = n, .next = 0, .err = 0};
	pthread_mutex_init(&sh.lock, NULL);
	pthread_t tids[1024];
	struct pf_worker ws[1024];
	blas_region_enter();
	int started = 0;
	for (int k = 1; k < nw; k++) {
		ws[k].sh = &sh;
		ws[k].id = k;
		if (pthread_create(&tids[k], NULL, pf_run, &ws[k]) != 0)
			break; /* run with the workers we have */
		started = k;
	}
	ws[0].sh = &sh;
	ws[0].id = 0;
	pf_run(&ws[0]);
	for (int k = 1; k <= started; k++)
		pthread_join(tids[k], NULL);
	blas_region_leave();
	pthread_mutex_destroy(&sh.lock);
	if (sh.err)
		return fasvd__error(sh.err, "%s", sh.msg);
	return 0;
}
