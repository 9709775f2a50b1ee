/* libfasvd — safetensors checkpoints: reader (single file, sharded set) and
 * atomic writer.
 *
 * SPDX-License-Identifier: MIT
 *
 * Format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * u64 N, N bytes of UTF-8 JSON (an object: tensor name -> {"dtype", "shape",
 * "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
 * string values), then the byte buffer; offsets are relative to the start of
 * the buffer, data is C-order and little-endian.
 *
 * Reading. fasvd_st_open() maps every shard read-only (mmap, MAP_PRIVATE) and
 * validates every header completely before returning; no tensor data is read
 * then, and only the pages of the tensors actually used are ever touched.
 * What is refused, and with which code (the detail message of
 * fasvd_last_error() names the file and, where there is one, the tensor):
 *
 *   FASVD_EIO      the path, a shard or the index cannot be opened, stat'ed,
 *                  read or mapped (a shard listed in the index that does not
 *                  exist is named in the message);
 *   FASVD_ENOTFOUND a directory holds no checkpoint (no index, no
 *                  model.safetensors, no *.safetensors);
 *   FASVD_EFORMAT  file shorter than 8 bytes; header length 0 or beyond the
 *                  end of the file; header not JSON, not an object, not UTF-8;
 *                  duplicate tensor names; an entry that is not an object;
 *                  missing or non-string dtype; missing or non-array shape, a
 *                  dimension that is not an integer; missing or ill-typed
 *                  data_offsets (not two non-negative integers), begin > end,
 *                  end beyond the buffer, overlapping spans, holes between
 *                  spans or bytes after the last one (the buffer must be
 *                  covered exactly, as the reference implementation requires);
 *                  shape x dtype size different from the span; names with a
 *                  NUL byte; "__metadata__" not an object of strings. Sharded:
 *                  index not JSON, no "weight_map" object, a shard name that is
 *                  not a relative path inside the model folder (absolute, "..",
 *                  or a symlink resolving outside it), a tensor listed in the
 *                  index but absent from its shard;
 *   FASVD_EDTYPE   a dtype that safetensors does not define (the dtypes it
 *                  does define but libfasvd cannot decode — BOOL U8 I8 I16 U16
 *                  I32 U32 I64 U64 F8_E8M0 C64 F4 F6_E2M3 F6_E3M2 — are listed
 *                  normally and refused only by fasvd_st_tensor());
 *   FASVD_ESHAPE   a negative dimension or more than FASVD_ST_MAX_DIMS;
 *   FASVD_ERANGE   header length above 100 MB; element count or byte size
 *                  overflowing 64 bits;
 *   FASVD_ENOMEM, FASVD_EINVAL (NULL argument).
 *
 * A file that is truncated or rewritten in place by another process while it
 * is mapped may raise SIGBUS when its data pages are touched: replace
 * checkpoints by renaming new files over them (fasvd_st_writer_write() does).
 *
 * Threading: once open, a fasvd_st is immutable except through
 * fasvd_st_set_block_size(); all other functions, fasvd_st_tensor()
 * included, may be called from several threads at once.
 */
#ifndef FASVD_SAFETENSORS_H
#define FASVD_SAFETENSORS_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ reader */

/* An opened checkpoint: one .safetensors file or a sharded set. */
typedef struct fasvd_st fasvd_st;

/* Open a checkpoint. `path` is
 *   - a .safetensors file;
 *   - a *.safetensors.index.json (sharded: its "weight_map" maps each tensor
 *     name to a shard file in the same folder);
 *   - a directory: its model.safetensors.index.json if present (else the
 *     single *.safetensors.index.json in it), else its model.safetensors,
 *     else the single *.safetensors file in it (several: FASVD_EFORMAT).
 * Shards are mapped and every header validated now (see the list above);
 * in a sharded set the index decides which tensors exist and where: tensors
 * present in a shard but not listed in the index are not visible.
 * `ctx` may be NULL (default context) and must outlive the handle otherwise;
 * every allocation of the handle goes through it (the JSON parser's
 * temporary allocations excepted).
 * Errors: see the list at the top of this header. */
FASVD_API int fasvd_st_open(fasvd_st **out, fasvd_ctx *ctx, const char *path);

/* Unmap and free. Accepts NULL. Every tensor obtained from fasvd_st_tensor()
 * and every pointer returned by the getters below must no longer be used. */
FASVD_API void fasvd_st_free(fasvd_st *st);

/* Number of tensors (0 for NULL). */
FASVD_API int64_t fasvd_st_count(const fasvd_st *st);

/* Name of tensor `index`, in [0, fasvd_st_count()); tensors are sorted by name
 * (bytewise, strcmp order). NULL when out of range. Borrowed from st. */
FASVD_API const char *fasvd_st_name(const fasvd_st *st, int64_t index);

/* Index of the tensor called `name` (binary search). `index` may be NULL to
 * test for existence. Errors: FASVD_EINVAL (NULL st or name),
 * FASVD_ENOTFOUND (no such tensor; the message names it and the checkpoint). */
FASVD_API int fasvd_st_find(int64_t *index, const fasvd_st *st, const char *name);

/* Largest number of dimensions a tensor may have. */
#define FASVD_ST_MAX_DIMS 8

/* Description of one tensor. Call fasvd_st_info_init() first (it sets
 * `size`, for ABI growth: fields beyond `size` are not written). */
typedef struct fasvd_st_info {
	size_t size;
	const char *name;   /* borrowed from st */
	const char *dtype;  /* safetensors name ("F32", "BF16", "I64" ...), static */
	int ndim;           /* 0 .. FASVD_ST_MAX_DIMS */
	int64_t shape[FASVD_ST_MAX_DIMS]; /* entries beyond ndim are 0 */
	uint64_t nbytes;    /* size of the data span */
	const char *file;   /* path of the shard holding it, borrowed from st */
} fasvd_st_info;

/* Zeroes the info.
 * Call as fasvd_st_info_init(&info, sizeof info) (versioned struct, see core.h). */
FASVD_API int fasvd_st_info_init(fasvd_st_info *info, size_t size);

/* Describe tensor `name`. Errors: FASVD_EINVAL (NULL argument, info->size
 * smaller than the size field), FASVD_ENOTFOUND. */
FASVD_API int fasvd_st_info_get(fasvd_st_info *info, const fasvd_st *st, const char *name);

/* Flags of fasvd_st_tensor(). */
#define FASVD_ST_NO_SCALES 0x1u /* never attach `<name>_scale_inv` block scales */

/* Zero-copy 2-D tensor view of tensor `name` (C order: row_stride = cols),
 * named `name` for error messages. FP8 tensors (F8_E4M3, F8_E5M2) with a
 * sibling `<name>_scale_inv` (in any shard) get its values attached as block
 * scales (fasvd_tensor_set_block_scales(), block size from
 * fasvd_st_set_block_size(), default 128 x 128), unless FASVD_ST_NO_SCALES.
 * Data whose address in the file is not aligned for its dtype (possible in
 * files not written by the reference writer) is copied into an owned buffer
 * instead, so the result is always safe to decode.
 * The st must outlive the tensor. Free it with fasvd_tensor_free().
 * Errors: FASVD_EINVAL (NULL argument, unknown flag), FASVD_ENOTFOUND,
 * FASVD_ESHAPE (not 2-D, a zero dimension; a scale_inv that is not 2-D or
 * whose grid is not [ceil(rows / block_rows), ceil(cols / block_cols)]: the
 * message names both tensors), FASVD_EDTYPE (a dtype other than F64 F32 F16
 * BF16 F8_E4M3 F8_E5M2, for the tensor or its scale_inv), FASVD_ENONFINITE
 * (NaN/Inf scale), FASVD_ENOMEM. */
FASVD_API int fasvd_st_tensor(fasvd_tensor **out, const fasvd_st *st, const char *name,
                              unsigned flags);

/* Block size used by later fasvd_st_tensor() calls to attach FP8 scales
 * (config.json's quantization_config.weight_block_size). Not thread-safe
 * against concurrent fasvd_st_tensor() calls on the same st.
 * Errors: FASVD_EINVAL (NULL st, rows or cols < 1). */
FASVD_API int fasvd_st_set_block_size(fasvd_st *st, int64_t rows, int64_t cols);

/* Raw bytes of any tensor, whatever its dtype (for byte-for-byte copies):
 * *data points into the mapping (borrowed from st; *data may be any address
 * when *nbytes is 0). Either output may be NULL.
 * Errors: FASVD_EINVAL, FASVD_ENOTFOUND. */
FASVD_API int fasvd_st_raw(const void **data, uint64_t *nbytes, const fasvd_st *st,
                           const char *name);

/* Value of metadata key `key` into *value (borrowed from st; NULL on
 * failure). Single file: its "__metadata__". Sharded set: the "__metadata__" of the
 * shards (the first shard, in index order, that has a key wins), then the
 * index's "metadata" object for keys not found there (string values as is,
 * integers in decimal, e.g. "total_size"). Errors: FASVD_EINVAL (NULL
 * argument), FASVD_ENOTFOUND (no such key; the message names it and the
 * checkpoint). */
FASVD_API int fasvd_st_metadata(const char **value, const fasvd_st *st, const char *key);

/* Number of metadata keys, and key `index` of them (NULL when out of range),
 * in no particular but stable order. Borrowed. */
FASVD_API int64_t fasvd_st_metadata_count(const fasvd_st *st);
FASVD_API const char *fasvd_st_metadata_key(const fasvd_st *st, int64_t index);

/* Number of shard files (1 for a single file, 0 for NULL) and the path of
 * shard `index` (the model folder joined with the shard name; NULL when out
 * of range). Borrowed. */
FASVD_API int64_t fasvd_st_shard_count(const fasvd_st *st);
FASVD_API const char *fasvd_st_shard_path(const fasvd_st *st, int64_t index);

/* The model folder: the directory given, or the directory holding the file or
 * index given ("." for a bare file name). Where config.json is looked up.
 * Borrowed; NULL for NULL. */
FASVD_API const char *fasvd_st_dir(const fasvd_st *st);

/* ------------------------------------------------------------------ writer */

/* Collects tensors and metadata, then writes one .safetensors file. */
typedef struct fasvd_st_writer fasvd_st_writer;

/* Errors: FASVD_EINVAL, FASVD_ENOMEM. `ctx` may be NULL (default context) and
 * must outlive the writer otherwise. A writer is used by one thread at a
 * time. */
FASVD_API int fasvd_st_writer_new(fasvd_st_writer **out, fasvd_ctx *ctx);
/* Free the writer and the data it copied. Accepts NULL. */
FASVD_API void fasvd_st_writer_free(fasvd_st_writer *w);

/* Flags of fasvd_st_writer_add(). */
#define FASVD_ST_COPY 0x0u   /* copy the data now (the default) */
#define FASVD_ST_BORROW 0x1u /* keep the pointer: data must stay valid and
                                unchanged until the last fasvd_st_writer_write()
                                or fasvd_st_writer_free() */

/* Add tensor `name` (UTF-8, non-empty, not "__metadata__", unique) of
 * safetensors dtype `dtype` (any dtype safetensors defines, e.g. "F64", "I64")
 * and shape shape[0 .. ndim) (ndim in [0, FASVD_ST_MAX_DIMS]; shape may be NULL
 * when ndim is 0), with `nbytes` bytes of little-endian C-order data, which
 * must equal the element count times the dtype size (data may be NULL only
 * when nbytes is 0).
 * Errors: FASVD_EINVAL (NULL argument, empty, reserved, duplicate or non-UTF-8
 * name, unknown flag), FASVD_EDTYPE (unknown dtype), FASVD_ESHAPE (negative
 * dimension, ndim out of range, nbytes not matching), FASVD_ERANGE (size
 * overflow), FASVD_ENOMEM. On failure nothing is added. */
FASVD_API int fasvd_st_writer_add(fasvd_st_writer *w, const char *name, const char *dtype,
                                  int ndim, const int64_t *shape, const void *data,
                                  uint64_t nbytes, unsigned flags);

/* Set "__metadata__"[key] = value (both copied, UTF-8; a key set twice keeps
 * the last value). Errors: FASVD_EINVAL (NULL, non-UTF-8), FASVD_ENOMEM. */
FASVD_API int fasvd_st_writer_set_metadata(fasvd_st_writer *w, const char *key,
                                           const char *value);

/* Write the file atomically: the data goes to PATH.tmp-XXXXXX in the same
 * folder, which is fsync'ed and renamed over `path` (then the folder is
 * fsync'ed); on any failure the temporary is removed and `path` is left as
 * it was. The header lists "__metadata__" first, then the tensors sorted by
 * name, and is padded with spaces to a multiple of 8 bytes; the data is laid
 * out by decreasing element size, then name, so that every tensor is aligned
 * to its element size in the file (as the reference implementation does).
 * The new file gets mode 0666 minus the umask. The writer is not consumed:
 * more tensors may be added and the file written again.
 * Errors: FASVD_EINVAL (NULL), FASVD_EIO (cannot create, write, sync or
 * rename: the message names the path and the system error), FASVD_ERANGE,
 * FASVD_ENOMEM. */
FASVD_API int fasvd_st_writer_write(fasvd_st_writer *w, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_SAFETENSORS_H */
