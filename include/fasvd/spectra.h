/* libfasvd — a list of named spectra, as the analysis pipeline stores them.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FASVD_SPECTRA_H
#define FASVD_SPECTRA_H

#include <fasvd/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A list of named spectra (the in-memory form of the spectra file,
 * docs/spectra-schema.md): each entry has a name ("head.VO", "stack.O",
 * "sub.KVA", or any caller name), a [n_rows x n_cols] row-major F64 array
 * (heads x values, n_rows = 1 for stack/sub entries; values descending along
 * each row, n_cols = min(rows, cols) of the matrix, zeros past the
 * structural rank), the shape (mat_rows x mat_cols) of the matrix one row
 * describes and that structural rank bound (fasvd_spectra_max_rank()). */
typedef struct fasvd_spectra fasvd_spectra;

/* An empty list (for callers collecting their own spectra, e.g. T.* tensors).
 * Errors: FASVD_EINVAL, FASVD_ENOMEM. */
FASVD_API int fasvd_spectra_new(fasvd_spectra **out, fasvd_ctx *ctx);
/* Append a copy of data [n_rows x n_cols] under `name` (copied; must be
 * unique in the list). Errors: FASVD_EINVAL (NULL, non-positive sizes,
 * duplicate name), FASVD_ENOMEM. */
FASVD_API int fasvd_spectra_add(fasvd_spectra *s, const char *name, int64_t n_rows,
                                int64_t n_cols, int64_t mat_rows, int64_t mat_cols,
                                const double *data);
/* Accepts NULL. */
FASVD_API void fasvd_spectra_free(fasvd_spectra *s);
/* Number of entries (0 for NULL). */
FASVD_API int64_t fasvd_spectra_count(const fasvd_spectra *s);
/* Index of the entry called name into *index (which may be NULL to test for
 * existence). Errors: FASVD_EINVAL (NULL s or name), FASVD_ENOTFOUND (no such
 * entry; the message names it). */
FASVD_API int fasvd_spectra_find(int64_t *index, const fasvd_spectra *s, const char *name);
/* Entry i's name (borrowed from s), or NULL when i is out of range. */
FASVD_API const char *fasvd_spectra_name(const fasvd_spectra *s, int64_t i);
/* Entry i's data (borrowed from s, n_rows·n_cols values row-major), or NULL. */
FASVD_API const double *fasvd_spectra_data(const fasvd_spectra *s, int64_t i);
/* Entry i's array shape and matrix shape (any out pointer may be NULL).
 * Errors: FASVD_EINVAL (NULL s, i out of range). */
FASVD_API int fasvd_spectra_shape(int64_t *n_rows, int64_t *n_cols, int64_t *mat_rows,
                                  int64_t *mat_cols, const fasvd_spectra *s, int64_t i);
/* The structural rank bound of entry i's matrices (the most rank they can
 * have whatever the weights) into *out: min(rows, cols) for a plain matrix;
 * for a fused head (QK, KQ, VO) at most the smaller of the two factors'
 * ranks (a head dimension); for a stack at most the sum of its blocks'
 * bounds and the rank of the shared factor (n_kv·head_dim for stack.QK
 * under GQA). Values of the row past this bound are rounding noise (or
 * zeros). Entries added with fasvd_spectra_add() have min(rows, cols) until
 * fasvd_spectra_set_max_rank() says otherwise.
 * Errors: FASVD_EINVAL (NULL out or s, i out of range). */
FASVD_API int fasvd_spectra_max_rank(int64_t *out, const fasvd_spectra *s, int64_t i);
/* Set entry i's rank bound (0 <= max_rank <= min(rows, cols)).
 * Errors: FASVD_EINVAL (NULL s, i out of range, bound out of range). */
FASVD_API int fasvd_spectra_set_max_rank(fasvd_spectra *s, int64_t i, int64_t max_rank);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_SPECTRA_H */
