/* libfasvd — internal declarations shared by the safetensors reader
 * (safetensors.c) and writer (st_writer.c) of the io layer. Never installed; hidden. */
#ifndef FASVD_ST_INTERNAL_H
#define FASVD_ST_INTERNAL_H

#include "tensor/tensor_int.h"

/* Largest header the reader accepts (the reference implementation's
 * MAX_HEADER_SIZE). */
#define FASVD__ST_MAX_HEADER 100000000u

/* A dtype safetensors defines. */
typedef struct fasvd__st_dtype {
	const char *name; /* "F32", "BF16", "I64" ... (static) */
	unsigned bits;    /* bits per element (4 and 6 for F4 / F6_*) */
	int dtype;        /* the fasvd_dtype libfasvd decodes it as, or 0 */
} fasvd__st_dtype;

/* The dtype called `name`, or NULL when safetensors defines none. */
const fasvd__st_dtype *fasvd__st_dtype_lookup(const char *name);

/* Bytes of `numel` elements of `dt` into *out; false when the count
 * overflows 64 bits or sub-byte elements do not fill whole bytes (*why gets
 * "overflow" or "partial"). */
bool fasvd__st_nbytes(const fasvd__st_dtype *dt, uint64_t numel, uint64_t *out,
                      const char **why);

/* Open a single safetensors file held in memory (data[0 .. n), borrowed:
 * it must outlive the handle), validated exactly as fasvd_st_open() does a
 * file; `label` names it in messages and in fasvd_st_shard_path(). For fuzz
 * targets and tests. Errors: as fasvd_st_open(), without FASVD_EIO. */
int fasvd__st_open_buffer(fasvd_st **out, fasvd_ctx *ctx, const void *data, size_t n,
                          const char *label);

#endif /* FASVD_ST_INTERNAL_H */
