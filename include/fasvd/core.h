/* libfasvd — core: version, errors, allocation, contexts.
 *
 * SPDX-License-Identifier: MIT
 *
 * Conventions used by every libfasvd header (see docs/conventions.md):
 *  - functions return int: 0 on success or a negative FASVD_E* code whose value
 *    never changes; on failure a thread-local detail message naming the
 *    argument, tensor or file at fault is available from fasvd_last_error();
 *  - parameters come in one order: results first (`T **out` for a new
 *    handle, `T *out` for a value, a caller buffer followed by its capacity
 *    or leading dimension), then the context, the inputs, the options, and
 *    last an optional report of what the call did;
 *  - constructors take `T **out` first and set *out = NULL on failure; objects
 *    returned through **out are owned by the caller and freed with the
 *    matching *_free(), which accepts NULL;
 *  - a lookup by name that finds nothing fails with FASVD_ENOTFOUND;
 *  - a getter on a const handle hands out const handles and pointers;
 *  - a struct whose first member is `size_t size` is versioned (docs/abi.md):
 *    initialise it with `fasvd_X_init(&s, sizeof s)`, which writes the
 *    defaults into the `sizeof s` bytes the caller has (never more: a newer
 *    library's struct may be larger) and sets s.size; it returns 0, or
 *    FASVD_EINVAL when s is NULL or the size is not one of that struct's;
 *  - dimensions and strides are int64_t, strides are counted in elements;
 *  - the library never prints, never exits and never aborts.
 */
#ifndef FASVD_CORE_H
#define FASVD_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FASVD_BUILDING_LIBRARY) && defined(__GNUC__)
#define FASVD_API __attribute__((visibility("default")))
#else
#define FASVD_API
#endif

/* ---------------------------------------------------------------- version */

/* FASVD_VERSION_MAJOR, _MINOR, _PATCH, _NUMBER (MAJOR * 10000 + MINOR * 100
 * + PATCH) and _STRING of the headers compiled against. */
#include <fasvd/version.h>

/* Version of the library actually loaded (may differ from the headers).
 * Thread-safe; never fails. */
FASVD_API unsigned fasvd_version_number(void);
/* "MAJOR.MINOR.PATCH" of the loaded library; static string, never NULL. */
FASVD_API const char *fasvd_version_string(void);

/* ----------------------------------------------------------------- errors */

/* Error codes. The values are part of the ABI and never change; new codes
 * are only ever appended. */
typedef enum fasvd_error {
	FASVD_OK = 0,
	FASVD_EINVAL = -1,      /* invalid argument (NULL, out of range, bad stride) */
	FASVD_ENOMEM = -2,      /* an allocation failed */
	FASVD_EIO = -3,         /* a file could not be opened, read, mapped or written */
	FASVD_EFORMAT = -4,     /* a file is malformed (safetensors header, JSON, index) */
	FASVD_EDTYPE = -5,      /* unsupported or mismatched dtype */
	FASVD_ESHAPE = -6,      /* wrong or inconsistent shape */
	FASVD_ENONFINITE = -7,  /* NaN or Inf in an input matrix or spectrum */
	FASVD_ERANGE = -8,      /* a size beyond what libfasvd/LAPACK index; an undefined metric */
	FASVD_ELAPACK = -9,     /* LAPACK reported failure (no convergence, bad argument) */
	FASVD_ENOTFOUND = -10,  /* a tensor, key or file that is needed does not exist */
	FASVD_EARCH = -11,      /* unknown architecture or inconsistent model config */
	FASVD_ECANCELED = -12,  /* the caller cancelled the operation */
	FASVD_ESTATE = -13,     /* call not valid in the object's current state */
	FASVD_EINTERNAL = -14   /* an internal invariant failed (a bug: please report) */
} fasvd_error;

/* Static, human-readable description of an error code ("unknown error" for
 * a value that is not a fasvd_error). Never NULL. Thread-safe. */
FASVD_API const char *fasvd_strerror(int code);

/* Detail message of the last error raised by libfasvd in the calling thread,
 * naming the argument, tensor or file at fault, e.g.
 * "model.safetensors: tensor 'x': shape [3, 4] x F32 needs 48 bytes, span is 40".
 * Never NULL ("" when no error has been recorded). The pointer stays valid
 * until the next libfasvd call in the same thread. Successful calls do not
 * clear it; use fasvd_clear_error(). */
FASVD_API const char *fasvd_last_error(void);
/* Clear the calling thread's detail message. */
FASVD_API void fasvd_clear_error(void);

/* ------------------------------------------------------------- allocation */

/* Allocator hook, copied by fasvd_ctx_new(). `alloc` must return memory
 * aligned for any C type (as malloc does) or NULL; `free` accepts NULL.
 * Every buffer libfasvd allocates on behalf of a context goes through it
 * (matrices, workspaces, handles), except memory that BLAS/LAPACK, the
 * JSON parser (jansson) and the C library (realpath(3) when resolving shard
 * paths, the in-memory stream that builds fasvd_analyze's CSV table)
 * allocate internally, which uses malloc. Both functions may be called from the
 * context's worker threads concurrently, so they must be thread-safe. */
typedef struct fasvd_allocator {
	void *(*alloc)(void *opaque, size_t size);
	void (*free)(void *opaque, void *ptr);
	void *opaque;
} fasvd_allocator;

/* ---------------------------------------------------------------- context */

typedef struct fasvd_ctx fasvd_ctx;

/* Create a context. `allocator` may be NULL (malloc/free); otherwise both of
 * its functions must be non-NULL. Errors: FASVD_EINVAL, FASVD_ENOMEM.
 * A context may be used by several threads at once for read-only queries
 * and for operations on distinct objects; setting parameters while another
 * thread uses the context is not allowed. */
FASVD_API int fasvd_ctx_new(fasvd_ctx **out, const fasvd_allocator *allocator);
/* Free a context. Accepts NULL. Every object created with it must be freed
 * first (objects borrow their context). */
FASVD_API void fasvd_ctx_free(fasvd_ctx *ctx);

/* Context parameters, set by key so that adding one never breaks the ABI.
 * Values are pinned. */
typedef enum fasvd_ctx_param {
	/* Worker threads for parallel work (over heads, layers' matrices) and the
	 * BLAS thread count for single large problems. 0 (default) = number of
	 * online CPUs. libfasvd never runs more than this many threads at once. */
	FASVD_CTX_THREADS = 1,
	/* Default compute precision of operations that take no explicit one:
	 * FASVD_COMPUTE_F32 (default) or FASVD_COMPUTE_F64. */
	FASVD_CTX_COMPUTE = 2
} fasvd_ctx_param;

/* Compute precision. */
typedef enum fasvd_compute {
	FASVD_COMPUTE_F32 = 1,
	FASVD_COMPUTE_F64 = 2
} fasvd_compute;

/* Bounds of a parameter (inclusive). `error` is 0, or FASVD_EINVAL for an
 * unknown key. */
typedef struct fasvd_bounds {
	int error;
	int64_t lower;
	int64_t upper;
} fasvd_bounds;

FASVD_API fasvd_bounds fasvd_ctx_param_bounds(fasvd_ctx_param param);
/* Errors: FASVD_EINVAL (unknown key, value out of bounds, NULL ctx). */
FASVD_API int fasvd_ctx_set_param(fasvd_ctx *ctx, fasvd_ctx_param param, int64_t value);
/* Errors: FASVD_EINVAL. For FASVD_CTX_THREADS returns the effective count
 * (0 resolved to the number of online CPUs). */
FASVD_API int fasvd_ctx_get_param(int64_t *out, const fasvd_ctx *ctx, fasvd_ctx_param param);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_CORE_H */
