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
/* A public struct that may grow starts with `size_t size`, the sizeof the
 * caller was built with (docs/abi.md, "Versioned structs"). The library
 * accepts any size from the struct's first published size (the end of its
 * last member in the first release, which appending members never moves) to
 * FASVD__MAX_STRUCT_SIZE. */
typedef struct fasvd__struct_ver {
	const char *name;  /* "fasvd_svd_opts" */
	const char *init;  /* "fasvd_svd_opts_init" */
	size_t first;      /* first published size */
	size_t size;       /* sizeof in this library */
} fasvd__struct_ver;
/* The descriptor of `type`, whose last member in its first release is
 * `last` (keep naming that member when members are appended). */
#define FASVD__STRUCT_VER(type, last)                                                    \
	{ #type, #type "_init", offsetof(type, last) + sizeof(((const type *)0)->last), \
	  sizeof(type) }
/* No valid versioned struct is larger than this (catches an unset size). */
#define FASVD__MAX_STRUCT_SIZE 4096
/* FASVD_EINVAL naming `fn`, the argument `what` and the struct unless the
 * size of the caller's struct s (its first member) is in
 * [v->first, FASVD__MAX_STRUCT_SIZE]. */
int fasvd__check_versioned(const void *s, const fasvd__struct_ver *v, const char *fn,
                           const char *what);
/* Input struct: copy the caller's struct src over dst (v->size bytes,
 * already holding the defaults of the *_init function): members beyond an
 * older caller's size keep their defaults; the members of a newer caller's
 * struct that this library does not know must be zero (else FASVD_EINVAL
 * naming `fn` and the struct). dst's size (v->size, from the *_init) is kept. */
int fasvd__load_versioned(void *dst, const void *src, const fasvd__struct_ver *v, const char *fn,
                          const char *what);
/* The public `*_init(o, size)` of a versioned struct: writes `defaults` (the
 * library's struct, its size member not used; NULL: all zero) into the first
 * min(size, v->size) bytes of o, zeroes the rest of o's `size` bytes (the
 * members of a newer caller's struct this library does not know) and sets
 * o->size = size. Returns 0, or FASVD_EINVAL naming v->init when o is NULL or
 * `size` is not a size of the struct; then only o->size is set (when the
 * caller's memory has room for it), so that any later call with o is refused
 * naming the struct. */
int fasvd__init_versioned(void *o, size_t size, const void *defaults, const fasvd__struct_ver *v);
/* Output struct: copy the library's full struct src into the caller's dst,
 * at most dst's size bytes (checked before with fasvd__check_versioned);
 * dst's size and a newer caller's unknown members are left as they are. */
void fasvd__store_versioned(void *dst, const void *src, const fasvd__struct_ver *v);

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
