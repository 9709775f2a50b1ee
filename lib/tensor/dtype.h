/* libfasvd — internal fast decoders (dtype.c). */
#ifndef FASVD_DTYPE_H
#define FASVD_DTYPE_H

#include "tensor/tensor_int.h"

#include <string.h>

/* Exact binary16 -> binary32 (inline for the decode loops of tensor.c). */
static inline float fasvd__f16_to_float_inline(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t mant = h & 0x3ffu;
	uint32_t u;
	float f;
	if (exp == 0) {
		/* zero or subnormal: mant · 2^-24, exact in float */
		f = (float)mant * 0x1p-24f;
		return sign ? -f : f;
	}
	if (exp == 31)
		u = sign | 0x7f800000u | (mant << 13);
	else
		u = sign | ((exp + 112u) << 23) | (mant << 13);
	memcpy(&f, &u, sizeof f);
	return f;
}

/* Exact bfloat16 (the 2 bytes at s) -> binary32. */
static inline float fasvd__bf16_at(const unsigned char *s)
{
	uint16_t h;
	memcpy(&h, s, 2);
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

float fasvd__f16_to_float(uint16_t h);
/* 256-entry decode table of an FP8 dtype (exact floats). Thread-safe. */
const float *fasvd__fp8_table(fasvd_dtype dtype);

#endif
