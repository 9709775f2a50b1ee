/* libfasvd — internal declarations shared by the library's modules.
 * Never installed. Every symbol here is hidden (not in libfasvd.map). */
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

/* ---- JSON (safetensors.c) ---- */
/* The JSON string token that ends just before byte `pos` of buf[0 .. len)
 * (where jansson reports a duplicate key), decoded, into out[0 .. n)
 * (truncated). False when there is none. */
bool fasvd__json_key_before(const char *buf, size_t len, int pos, char *out, size_t n);

/* ---- files (st_writer.c) ---- */
/* Mode of a new file: 0666 minus the process umask (read without changing
 * it, which would race with other threads). For files created with
 * mkstemp(), which uses 0600. */
unsigned fasvd__new_file_mode(void);
/* Open an existing regular file read-only into *fd, its fstat in *sb.
 * Never blocks (a FIFO without a writer is refused like anything else that
 * is not a regular file). On failure nothing is left open and the detail
 * names path; a missing file is `enoent_code`, every other failure
 * FASVD_EIO. */
struct stat;
int fasvd__open_regular(const char *path, int enoent_code, int *fd, struct stat *sb);
/* "dir/name" through the context allocator (no second '/' when dir ends
 * with one); NULL with FASVD_ENOMEM detail when out of memory. */
char *fasvd__path_join(fasvd_ctx *ctx, const char *dir, const char *name);
/* Directory part of a path, allocated: "." for a bare name, "/" for "/x",
 * trailing slashes of the directory removed. */
char *fasvd__dir_of(fasvd_ctx *ctx, const char *path);

/* ---- tensors (tensor.c) ---- */
struct fasvd_tensor {
	fasvd_ctx *ctx;
	fasvd_dtype dtype;
	int64_t rows, cols;
	int64_t rs, cs;              /* strides in elements */
	const unsigned char *data;   /* element (0, 0) */
	void *owned;                 /* owned buffer (fasvd_tensor_new) or NULL */
	bool is_view;
	/* Block scales in the coordinates of the root tensor. A view element
	 * (i, j) is root element (root_r, root_c) with
	 * root_r = row0 + (transposed ? j : i), root_c = col0 + (transposed ? i : j). */
	const double *scales;        /* [grid_rows x grid_cols] row-major, or NULL */
	double *scales_owned;
	int64_t grid_rows, grid_cols, block_rows, block_cols;
	int64_t row0, col0;
	bool transposed;
	char *name;
};

/* Name for messages: "tensor 'name'" or "tensor" when unnamed. */
const char *fasvd__tensor_label(const fasvd_tensor *t, char *buf, size_t n);

#endif /* FASVD_INTERNAL_H */
