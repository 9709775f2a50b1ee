/* libfasvd — tensor layer: the block-quantised dtypes of ggml (GGUF files),
 * decoded exactly as ggml's dequantize_row_* (ggml_quant.c). Never
 * installed; hidden. */
#ifndef FASVD_GGML_QUANT_H
#define FASVD_GGML_QUANT_H

#include "tensor/tensor_int.h"

/* Elements and bytes per block of a block-quantised dtype; 0 for any other
 * value (element dtypes included). */
int64_t fasvd__quant_block_elems(fasvd_dtype dtype);
int64_t fasvd__quant_block_bytes(fasvd_dtype dtype);

static inline bool fasvd__dtype_is_quant(fasvd_dtype dtype)
{
	return dtype >= FASVD_DTYPE_Q4_0 && dtype <= FASVD_DTYPE_IQ4_XS;
}

/* Elements [c, c + n) of one row of blocks starting at `row` (block k of
 * the row at row + k · block bytes), as ggml's float values. Only the
 * blocks holding those elements are read. */
void fasvd__quant_decode(fasvd_dtype dtype, const unsigned char *row, int64_t c, int64_t n,
                         float *out);

#endif /* FASVD_GGML_QUANT_H */
