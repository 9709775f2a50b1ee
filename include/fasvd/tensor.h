/* libfasvd — dtypes and 2-D tensor handles.
 *
 * SPDX-License-Identifier: MIT
 *
 * A fasvd_tensor is a 2-D matrix of one dtype with separate row and column
 * strides (in elements, any sign, BLIS style), so C-order, Fortran-order,
 * transposed and sliced views are all zero-copy. It either borrows caller
 * memory (const: libfasvd never writes through a borrowed pointer) or owns a
 * C-order buffer allocated through its context. FP8 weights may carry block
 * scales (the `_scale_inv` grid of DeepSeek-V3 checkpoints):
 * element (r, c) = code(r, c) · scale_inv[r / block_rows][c / block_cols],
 * partial edge blocks included.
 *
 * Block-quantised dtypes (the quantisations of ggml / GGUF files: Q4_0 …
 * IQ4_XS) store each row as consecutive blocks of `fasvd_dtype_block_elems()`
 * elements in `fasvd_dtype_block_bytes()` bytes; a row's length must be a
 * multiple of the block. Every view of such a tensor decodes on demand, and
 * only the blocks holding the elements it covers: a per-head or per-row view
 * never decodes the rest of the matrix. Values are decoded exactly as ggml's
 * `dequantize_row_*` computes them in float (docs/gguf.md).
 *
 * Threading: a tensor may be read (decoded, used as SVD input) from several
 * threads at once; modifying it (set_name, set_block_scales, writing to owned
 * data) while another thread reads it is not allowed.
 */
#ifndef FASVD_TENSOR_H
#define FASVD_TENSOR_H

#include <fasvd/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types. The values are pinned. Names follow safetensors. */
typedef enum fasvd_dtype {
	FASVD_DTYPE_F64 = 1,
	FASVD_DTYPE_F32 = 2,
	FASVD_DTYPE_F16 = 3,     /* IEEE 754 binary16 */
	FASVD_DTYPE_BF16 = 4,    /* bfloat16 */
	FASVD_DTYPE_F8_E4M3 = 5, /* e4m3fn: bias 7, no infinities, S.1111.111 is NaN, max 448 */
	FASVD_DTYPE_F8_E5M2 = 6, /* e5m2: bias 15, IEEE-like with infinities and NaNs */
	/* ggml block quantisations (GGUF), layouts of ggml's ggml-common.h:
	 * elements per block / bytes per block */
	FASVD_DTYPE_Q4_0 = 7,    /* 32 / 18 */
	FASVD_DTYPE_Q4_1 = 8,    /* 32 / 20 */
	FASVD_DTYPE_Q5_0 = 9,    /* 32 / 22 */
	FASVD_DTYPE_Q5_1 = 10,   /* 32 / 24 */
	FASVD_DTYPE_Q8_0 = 11,   /* 32 / 34 */
	FASVD_DTYPE_Q2_K = 12,   /* 256 / 84 */
	FASVD_DTYPE_Q3_K = 13,   /* 256 / 110 */
	FASVD_DTYPE_Q4_K = 14,   /* 256 / 144 */
	FASVD_DTYPE_Q5_K = 15,   /* 256 / 176 */
	FASVD_DTYPE_Q6_K = 16,   /* 256 / 210 */
	FASVD_DTYPE_IQ4_NL = 17, /* 32 / 18 */
	FASVD_DTYPE_IQ4_XS = 18  /* 256 / 136 */
} fasvd_dtype;

/* Bytes per element; 0 for a value that is not a fasvd_dtype and for the
 * block-quantised dtypes (whose elements are not whole bytes). */
FASVD_API size_t fasvd_dtype_size(fasvd_dtype dtype);
/* Elements per block (1 for F64 … F8_E5M2, 32 or 256 for the quantised
 * dtypes) and bytes per block (fasvd_dtype_size() for the element dtypes);
 * 0 for a value that is not a fasvd_dtype. */
FASVD_API int64_t fasvd_dtype_block_elems(fasvd_dtype dtype);
FASVD_API size_t fasvd_dtype_block_bytes(fasvd_dtype dtype);
/* Name: the safetensors name ("F64", "F32", "F16", "BF16", "F8_E4M3",
 * "F8_E5M2") or ggml's ("Q4_0", "Q4_K", "IQ4_XS" ...); "?" for an unknown
 * value. Static string. */
FASVD_API const char *fasvd_dtype_name(fasvd_dtype dtype);
/* Parse a safetensors dtype name. Errors: FASVD_EINVAL (NULL),
 * FASVD_EDTYPE (a name libfasvd does not read, e.g. "I8"; the ggml names of
 * the block-quantised dtypes are not safetensors dtypes and are refused). */
FASVD_API int fasvd_dtype_from_name(fasvd_dtype *out, const char *name);

/* Exact decode of n contiguous codes of `dtype` into doubles (every code of
 * every element dtype is exactly representable in binary64; the quantised
 * dtypes decode to ggml's float values). NaN and Inf codes decode to NaN and
 * ±Inf. For a block-quantised dtype src holds n / fasvd_dtype_block_elems()
 * whole blocks. Errors: FASVD_EINVAL (NULL buffer; n not a multiple of the
 * block), FASVD_EDTYPE. */
FASVD_API int fasvd_dtype_decode(double *dst, fasvd_dtype dtype, const void *src, size_t n);
/* Encode n doubles as `dtype`, rounding to nearest, ties to even. Finite
 * values beyond the format's largest finite value become ±Inf, except for
 * F8_E4M3, which has no infinities and saturates to ±448 (as quantisers
 * do). NaN stays NaN. Block-quantised dtypes are not encoded (FASVD_EDTYPE).
 * Errors: FASVD_EINVAL, FASVD_EDTYPE. */
FASVD_API int fasvd_dtype_encode(void *dst, fasvd_dtype dtype, const double *src, size_t n);

/* Memory layout of a dense destination buffer (CBLAS values). */
typedef enum fasvd_layout {
	FASVD_LAYOUT_ROW_MAJOR = 101,
	FASVD_LAYOUT_COL_MAJOR = 102
} fasvd_layout;

typedef enum fasvd_axis {
	FASVD_AXIS_ROWS = 0,
	FASVD_AXIS_COLS = 1
} fasvd_axis;

typedef struct fasvd_tensor fasvd_tensor;

/* Borrow `data` zero-copy: element (r, c) is at
 * (const char *)data + (r * row_stride + c * col_stride) * fasvd_dtype_size(dtype).
 * `data` must stay valid and unchanged while the tensor or any view of it is
 * used; the tensor never writes to it. `ctx` may be NULL (default context:
 * malloc, all CPUs) and must outlive the tensor otherwise.
 * rows, cols >= 1. Strides may be negative or zero; the byte extent of the
 * view must be addressable (|row_stride|·(rows−1) + |col_stride|·(cols−1)
 * elements, times the element size, fits in ptrdiff_t).
 * Block-quantised dtypes: col_stride must be 1, and cols and row_stride
 * (>= cols when rows > 1) multiples of the block size: row r is the
 * cols / block_elems blocks starting at block r · row_stride / block_elems.
 * Errors: FASVD_EINVAL (NULL data, non-positive dimension, strides whose
 * extent overflows), FASVD_EDTYPE, FASVD_ENOMEM. */
FASVD_API int fasvd_tensor_new_borrowed(fasvd_tensor **out, fasvd_ctx *ctx, fasvd_dtype dtype,
                                        const void *data, int64_t rows, int64_t cols,
                                        int64_t row_stride, int64_t col_stride);

/* Allocate an owned, zero-filled, C-order tensor (row_stride = cols,
 * col_stride = 1) through ctx's allocator (block-quantised dtypes: cols a
 * multiple of the block size). Errors: FASVD_EINVAL,
 * FASVD_EDTYPE, FASVD_ERANGE (byte size overflows), FASVD_ENOMEM. */
FASVD_API int fasvd_tensor_new(fasvd_tensor **out, fasvd_ctx *ctx, fasvd_dtype dtype,
                               int64_t rows, int64_t cols);

/* Free a tensor handle (and its buffer if owned). Accepts NULL. Views of it
 * must be freed first. */
FASVD_API void fasvd_tensor_free(fasvd_tensor *t);

FASVD_API int64_t fasvd_tensor_rows(const fasvd_tensor *t);
FASVD_API int64_t fasvd_tensor_cols(const fasvd_tensor *t);
FASVD_API int64_t fasvd_tensor_row_stride(const fasvd_tensor *t);
FASVD_API int64_t fasvd_tensor_col_stride(const fasvd_tensor *t);
FASVD_API fasvd_dtype fasvd_tensor_dtype(const fasvd_tensor *t);
/* Address of element (0, 0); for a block-quantised dtype, of the first block
 * of the tensor the view was made from. Borrowed from the tensor. */
FASVD_API const void *fasvd_tensor_data(const fasvd_tensor *t);
/* Writable address of element (0, 0) for tensors created by
 * fasvd_tensor_new(); NULL for borrowed tensors and views. */
FASVD_API void *fasvd_tensor_data_mut(fasvd_tensor *t);

/* Name used in error messages (e.g. the checkpoint tensor name). Copied.
 * Errors: FASVD_EINVAL, FASVD_ENOMEM. */
FASVD_API int fasvd_tensor_set_name(fasvd_tensor *t, const char *name);
/* The tensor's name, "" if none. Borrowed from the tensor. */
FASVD_API const char *fasvd_tensor_name(const fasvd_tensor *t);

/* Attach block scales: `scale_inv` is a [ceil(rows / block_rows),
 * ceil(cols / block_cols)] tensor of any dtype (F32 in checkpoints) whose
 * values are copied (decoded to double), so it may be freed afterwards. Only
 * allowed on a tensor that is not a view, has no scales yet, and whose dtype
 * is F8_E4M3, F8_E5M2, F16 or BF16. Errors: FASVD_EINVAL (block size < 1, t
 * is a view), FASVD_ESHAPE (grid shape is not the ceiling above), FASVD_EDTYPE,
 * FASVD_ENONFINITE (a NaN/Inf scale), FASVD_ESTATE (scales already set),
 * FASVD_ENOMEM. */
FASVD_API int fasvd_tensor_set_block_scales(fasvd_tensor *t, const fasvd_tensor *scale_inv,
                                            int64_t block_rows, int64_t block_cols);
/* 1 if the tensor (or the tensor it views) carries block scales, else 0. */
FASVD_API int fasvd_tensor_has_block_scales(const fasvd_tensor *t);

/* Zero-copy sub-block [row0, row0 + rows) x [col0, col0 + cols) of parent,
 * block scales included. The view borrows the parent's data and scales: the
 * parent handle must outlive the view. Errors: FASVD_EINVAL (out of range),
 * FASVD_ENOMEM. */
FASVD_API int fasvd_tensor_view(fasvd_tensor **out, const fasvd_tensor *parent, int64_t row0,
                                int64_t col0, int64_t rows, int64_t cols);
/* Zero-copy transpose of parent (same lifetime rule as fasvd_tensor_view). */
FASVD_API int fasvd_tensor_transpose(fasvd_tensor **out, const fasvd_tensor *parent);
/* Per-head batched view: block `index` of `n_blocks` equal blocks along
 * `axis` (rows: head i owns rows i·rows/n …; cols: head i owns columns).
 * Same lifetime rule as fasvd_tensor_view. Errors: FASVD_EINVAL (index out of
 * range), FASVD_ESHAPE (dimension not divisible by n_blocks), FASVD_ENOMEM. */
FASVD_API int fasvd_tensor_block(fasvd_tensor **out, const fasvd_tensor *parent, fasvd_axis axis,
                                 int64_t n_blocks, int64_t index);

/* Decode flags. */
#define FASVD_DECODE_ALLOW_NONFINITE 0x1u /* copy NaN/Inf instead of failing */

/* Element (row, col), dequantised, in double. Errors: FASVD_EINVAL. */
FASVD_API int fasvd_tensor_get(double *out, const fasvd_tensor *t, int64_t row, int64_t col);
/* Decode (and dequantise) the whole tensor into a dense buffer: element
 * (r, c) goes to dst[r * ld + c] (row-major) or dst[c * ld + r] (column-
 * major); ld >= cols (row-major) or >= rows (column-major). Unless
 * FASVD_DECODE_ALLOW_NONFINITE is given, a NaN or Inf element is refused
 * with FASVD_ENONFINITE naming the tensor and the element (dst is then
 * partially written). The f32 variant rounds the exact double value once.
 * Errors: FASVD_EINVAL, FASVD_ENONFINITE. */
FASVD_API int fasvd_tensor_to_f64(double *dst, int64_t ld, fasvd_layout layout,
                                  const fasvd_tensor *t, unsigned flags);
FASVD_API int fasvd_tensor_to_f32(float *dst, int64_t ld, fasvd_layout layout,
                                  const fasvd_tensor *t, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_TENSOR_H */
