/* libfasvd — internal fast decoders (dtype.c). */
#ifndef FASVD_DTYPE_H
#define FASVD_DTYPE_H

#include "internal.h"

float fasvd__f16_to_float(uint16_t h);
/* 256-entry decode table of an FP8 dtype (exact floats). Thread-safe. */
const float *fasvd__fp8_table(fasvd_dtype dtype);

#endif
