/* libfasvd — core layer: errors, versioned structs, contexts, allocation,
 * threads. Included by every module of the library. Never installed; every
 * symbol here is hidden (not in libfasvd.map). */
#ifndef FASVD_INTERNAL_H
#define FASVD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <fasvd/fasvd.h>

#if defined(__GNUC__)
#define FASVD__PRINTF(f, a) __attribute__((format(printf, f, a)))
#define FASVD__HIDDEN __attribute__((visibility("hidden")))
#else
#define FASVD__PRINTF(f, a)
#define FASVD__HIDDEN
#endif

/* Largest dimension LAPACK's 32-bit integers can index. */
#define FASVD__LAPACK_INT_MAX INT32_MAX

struct fasvd_ctx {
	fasvd_allocator allocator;
	int64_t threads;  /* as set; 0 = online CPUs */
	int64_t compute;  /* fasvd_compute */
	bool is_default;
};

/* ---- errors (core.c) ---- */
/* Record a detail message for the calling thread and return `code`. */
int fasvd__error(int code, const char *fmt, ...) FASVD__PRINTF(2, 3);
/* Prefix the current detail message with "prefix: " (keeps the code). */
int fasvd__error_prefix(int code, const char *fmt, ...) FASVD__PRINTF(2, 3);
/* Copy of the detail (used to carry worker threads' errors to the caller). */
void fasvd__error_copy(char *dst, size_t n);

/* ---- versioned structs (core.c) ---- */
/* Public option / report structs start with `size_t size` (their sizeof in
 * the caller's build); no valid one is larger than this. */
#define FASVD__MAX_STRUCT_SIZE 4096
/* FASVD_EINVAL naming `fn`, `what` and the init function `init` unless
 * sizeof(size_t) <= size <= FASVD__MAX_STRUCT_SIZE. */
int fasvd__check_struct_size(size_t size, const char *fn, const char *what, const char *init);
/* Copy a caller's versioned struct src (its size field first) over dst
 * (dst_size bytes, already holding the defaults): fields beyond the caller's
 * size keep their defaults; bytes of a newer caller's struct that this
 * library does not know must be zero. */
int fasvd__load_versioned(void *dst, size_t dst_size, const void *src, const char *fn,
                          const char *what, const char *init);

/* ---- contexts and allocation (core.c) ---- */
/* ctx, or the process-wide default context when ctx is NULL. */
fasvd_ctx *fasvd__ctx(fasvd_ctx *ctx);
/* Effective worker-thread count (>= 1). */
int fasvd__threads(const fasvd_ctx *ctx);
/* Allocate through the context; on failure records "out of memory" detail
 * naming `what` and returns NULL (the caller returns FASVD_ENOMEM). */
void *fasvd__alloc(fasvd_ctx *ctx, size_t size, const char *what);
/* n * size bytes, zero-filled, with overflow check (FASVD_ENOMEM detail). */
void *fasvd__calloc(fasvd_ctx *ctx, size_t n, size_t size, const char *what);
void fasvd__free(fasvd_ctx *ctx, void *p);
/* strdup through the context allocator. */
char *fasvd__strdup(fasvd_ctx *ctx, const char *s);
/* Room for one more element in arr, an array of *cap elements of `size`
 * bytes of which n are used: arr itself while n < *cap, else a zeroed copy
 * of twice the capacity (`first` elements the first time) that replaces it
 * (arr freed, *cap updated). NULL when out of memory, arr and *cap then
 * unchanged. */
void *fasvd__grow(fasvd_ctx *ctx, void *arr, int64_t n, int64_t *cap, size_t size, int64_t first,
                  const char *what);
/* Overflow-checked size arithmetic: return false on overflow. */
bool fasvd__mul_size(size_t a, size_t b, size_t *out);
bool fasvd__mul_i64(int64_t a, int64_t b, int64_t *out);

/* ---- threads (core.c) ---- */
/* Run fn(arg, i, worker) for i in [0, n) on up to fasvd__threads(ctx)
 * threads (the caller's thread is one of them); `worker` is in
 * [0, threads). While workers run, BLAS is single-threaded. Stops handing
 * out indices after the first failure; returns 0 or the first error, whose
 * detail message is carried to the calling thread. */
typedef int (*fasvd__task_fn)(void *arg, int64_t i, int worker);
int fasvd__parallel_for(fasvd_ctx *ctx, int64_t n, fasvd__task_fn fn, void *arg);
/* Number of workers fasvd__parallel_for would use for n tasks. */
int fasvd__parallel_workers(fasvd_ctx *ctx, int64_t n);
/* BLAS thread control (OpenBLAS when linked; no-op otherwise). The setting
 * is process-wide: libfasvd sets the context's thread count for single big
 * problems and restores the previous value. While any parallel region runs
 * (fasvd__parallel_for, in any thread) BLAS is single-threaded and
 * fasvd__blas_set_threads() does nothing; the end of the last region
 * restores the count from before the first. */
int fasvd__blas_get_threads(void);
void fasvd__blas_set_threads(int n);

#endif /* FASVD_INTERNAL_H */
