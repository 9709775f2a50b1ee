/* libfasvd — io layer: GGUF reader internals (gguf.c). Never installed;
 * hidden. */
#ifndef FASVD_GGUF_INT_H
#define FASVD_GGUF_INT_H

#include "tensor/tensor_int.h"

#include <fasvd/gguf.h>

/* Largest number of dimensions (ggml's GGML_MAX_DIMS), longest tensor name
 * (GGML_MAX_NAME − 1 bytes) and deepest nesting of metadata arrays. */
#define FASVD__GGUF_MAX_DIMS 4
#define FASVD__GGUF_MAX_NAME 63
#define FASVD__GGUF_MAX_DEPTH 8

/* Open one GGUF file held in memory (data[0 .. n), borrowed: it must
 * outlive the handle), validated exactly as fasvd_gguf_open() validates a
 * file; `label` names it in messages. Split models are refused (their other
 * parts are files). For fuzz targets and tests. Errors: as
 * fasvd_gguf_open(), without FASVD_EIO. */
int fasvd__gguf_open_buffer(fasvd_gguf **out, fasvd_ctx *ctx, const void *data, size_t n,
                            const char *label);

#endif /* FASVD_GGUF_INT_H */
