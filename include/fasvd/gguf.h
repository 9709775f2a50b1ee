/* libfasvd — GGUF checkpoints (llama.cpp, Ollama, LM Studio): reader.
 *
 * SPDX-License-Identifier: MIT
 *
 * Format (ggml's docs/gguf.md), little-endian: "GGUF", a u32 version (2 or
 * 3), u64 tensor count, u64 metadata count; the metadata (key: u64 length +
 * bytes; u32 value type; value); the tensor infos (name; u32 n_dims; n_dims
 * u64 dimensions ne[0] (fastest) ...; u32 ggml type; u64 offset relative to
 * the data section); padding to `general.alignment` (u32, default 32); the
 * data section. A model may be split into files PREFIX-00001-of-0000N.gguf
 * ... carrying `split.count`, `split.no` and `split.tensors.count`.
 *
 * fasvd_gguf_open() maps every part read-only and validates every header
 * completely before returning (docs/gguf.md lists each check); no tensor
 * data is read then, and only the blocks a tensor view decodes are ever
 * touched. A malformed, truncated or inconsistent file is FASVD_EFORMAT with
 * a message naming the file, the key or tensor, and the cause; no count read
 * from a file is trusted before it is checked against the file's size.
 *
 * Orientation. A tensor with ne = {in, out} is the out × in row-major
 * matrix of PyTorch's Linear: fasvd_gguf_tensor() gives rows = ne[1],
 * cols = ne[0]; dimensions beyond the second are folded into the rows
 * (rows = ne[1] · ne[2] · ne[3], ggml's row count), and a 1-D tensor is one
 * row. Callers that need a true matrix check n_dims with
 * fasvd_gguf_tensor_info().
 *
 * Threading: once open, a fasvd_gguf is immutable; every function may be
 * called from several threads at once.
 */
#ifndef FASVD_GGUF_H
#define FASVD_GGUF_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An opened GGUF model: one file, or every part of a split one. */
typedef struct fasvd_gguf fasvd_gguf;

/* Metadata value types (the values of the format). */
typedef enum fasvd_gguf_type {
	FASVD_GGUF_UINT8 = 0,
	FASVD_GGUF_INT8 = 1,
	FASVD_GGUF_UINT16 = 2,
	FASVD_GGUF_INT16 = 3,
	FASVD_GGUF_UINT32 = 4,
	FASVD_GGUF_INT32 = 5,
	FASVD_GGUF_FLOAT32 = 6,
	FASVD_GGUF_BOOL = 7,
	FASVD_GGUF_STRING = 8,
	FASVD_GGUF_ARRAY = 9,
	FASVD_GGUF_UINT64 = 10,
	FASVD_GGUF_INT64 = 11,
	FASVD_GGUF_FLOAT64 = 12
} fasvd_gguf_type;

/* Open a GGUF file. A split model is opened by its first part
 * (PREFIX-00001-of-0000N.gguf): the other parts are PREFIX-0000k-of-0000N.gguf
 * in the same folder (a part that resolves elsewhere, e.g. through a
 * symlink, is refused). `ctx` may be NULL (default context) and must outlive
 * the handle otherwise. Errors: FASVD_EINVAL (NULL argument), FASVD_EIO
 * (cannot open, stat or map a part: the message names it), FASVD_EFORMAT
 * (everything docs/gguf.md lists), FASVD_ENOMEM. */
FASVD_API int fasvd_gguf_open(fasvd_gguf **out, fasvd_ctx *ctx, const char *path);

/* Unmap and free. Accepts NULL. Tensors obtained from fasvd_gguf_tensor()
 * and every borrowed pointer must no longer be used. */
FASVD_API void fasvd_gguf_free(fasvd_gguf *g);

/* Format version (2 or 3), data alignment (general.alignment or 32), number
 * of parts (1 unless split) and the path of part `index` (NULL out of
 * range; borrowed). 0 / NULL for a NULL handle. */
FASVD_API uint32_t fasvd_gguf_version(const fasvd_gguf *g);
FASVD_API uint64_t fasvd_gguf_alignment(const fasvd_gguf *g);
FASVD_API int64_t fasvd_gguf_part_count(const fasvd_gguf *g);
FASVD_API const char *fasvd_gguf_part_path(const fasvd_gguf *g, int64_t index);

/* ---------------------------------------------------------------- metadata */

/* Number of metadata keys (of the first part: a split model's metadata is
 * its first file's) and key `index`, in file order (NULL out of range;
 * borrowed). */
FASVD_API int64_t fasvd_gguf_metadata_count(const fasvd_gguf *g);
FASVD_API const char *fasvd_gguf_metadata_key(const fasvd_gguf *g, int64_t index);

/* A metadata value or an element of an array value (arrays nest). Fill it
 * with fasvd_gguf_get() or fasvd_gguf_value_elem(); its fields are private
 * (it points into g, which must outlive it). */
typedef struct fasvd_gguf_value {
	const fasvd_gguf *g_;
	const void *at_;
	int64_t key_;
	int type_;
} fasvd_gguf_value;

/* The value of key `key`. Errors: FASVD_EINVAL, FASVD_ENOTFOUND (no such
 * key: the message names it and the file). */
FASVD_API int fasvd_gguf_get(fasvd_gguf_value *v, const fasvd_gguf *g, const char *key);
/* Its type. */
FASVD_API fasvd_gguf_type fasvd_gguf_value_type(const fasvd_gguf_value *v);
/* Scalars. _int: any integer type whose value fits int64_t (a UINT64 above
 * INT64_MAX is FASVD_ERANGE); _float: FLOAT32 or FLOAT64; _bool: BOOL (any
 * non-zero byte is 1); _string: the bytes of a STRING, borrowed from g and
 * not NUL-terminated (*len bytes; s may be NULL). Errors: FASVD_EINVAL,
 * FASVD_EFORMAT (another type: the message names the key, both types). */
FASVD_API int fasvd_gguf_value_int(int64_t *out, const fasvd_gguf_value *v);
FASVD_API int fasvd_gguf_value_float(double *out, const fasvd_gguf_value *v);
FASVD_API int fasvd_gguf_value_bool(int *out, const fasvd_gguf_value *v);
FASVD_API int fasvd_gguf_value_string(const char **s, size_t *len, const fasvd_gguf_value *v);
/* Arrays: element type and count (either output may be NULL), and element
 * `index` (in [0, count)). Reaching an element of an array of strings or
 * arrays walks the elements before it. Errors: FASVD_EINVAL (index out of
 * range), FASVD_EFORMAT (not an array). */
FASVD_API int fasvd_gguf_value_array(fasvd_gguf_type *elem_type, int64_t *count,
                                     const fasvd_gguf_value *v);
FASVD_API int fasvd_gguf_value_elem(fasvd_gguf_value *out, const fasvd_gguf_value *v,
                                    int64_t index);

/* Shorthands: fasvd_gguf_get() then the typed getter. Errors: as both. */
FASVD_API int fasvd_gguf_get_int(int64_t *out, const fasvd_gguf *g, const char *key);
FASVD_API int fasvd_gguf_get_float(double *out, const fasvd_gguf *g, const char *key);
FASVD_API int fasvd_gguf_get_string(const char **s, size_t *len, const fasvd_gguf *g,
                                    const char *key);

/* ----------------------------------------------------------------- tensors */

/* Number of tensors (of every part) and the name of tensor `index`, in file
 * order, part after part (NULL out of range; borrowed). */
FASVD_API int64_t fasvd_gguf_tensor_count(const fasvd_gguf *g);
FASVD_API const char *fasvd_gguf_tensor_name(const fasvd_gguf *g, int64_t index);
/* Index of tensor `name` (index may be NULL to test for existence).
 * Errors: FASVD_EINVAL, FASVD_ENOTFOUND (the message names it and the file). */
FASVD_API int fasvd_gguf_find_tensor(int64_t *index, const fasvd_gguf *g, const char *name);

/* Description of tensor `index`: ggml type id (fasvd_gguf_type_name()),
 * number of dimensions (0 .. 4), ne[0 .. 4) (fastest first; 1 beyond
 * n_dims), offset of its data in its part's file, its size in bytes and
 * the part's path (borrowed). Any output may be NULL. Errors: FASVD_EINVAL
 * (NULL g, index out of range). */
FASVD_API int fasvd_gguf_tensor_info(uint32_t *ggml_type, int *n_dims, int64_t ne[4],
                                     uint64_t *file_offset, uint64_t *nbytes,
                                     const char **file, const fasvd_gguf *g, int64_t index);
/* ggml's name of a type id ("F32", "Q4_K", "IQ2_XXS" ...); "?" if unknown. */
FASVD_API const char *fasvd_gguf_type_name(uint32_t ggml_type);

/* Zero-copy view of tensor `name`, named `name` for error messages: an
 * (ne[1]·ne[2]·ne[3]) × ne[0] row-major matrix (see Orientation above) of
 * dtype F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K, IQ4_NL or IQ4_XS, decoded on demand (views decode only the
 * blocks they cover). An element dtype whose data is not aligned for it in
 * memory is copied instead. g must outlive the tensor; free it with
 * fasvd_tensor_free(). Errors: FASVD_EINVAL, FASVD_ENOTFOUND, FASVD_EDTYPE
 * (any other ggml type: the message names the tensor and the type),
 * FASVD_ENOMEM. */
FASVD_API int fasvd_gguf_tensor(fasvd_tensor **out, const fasvd_gguf *g, const char *name);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_GGUF_H */
