/* libfasvd — internals shared by factor.c, onload.c and truncate.c. Never
 * installed; every symbol here is hidden. */
#ifndef FASVD_FACTOR_INT_H
#define FASVD_FACTOR_INT_H

#include "tensor/tensor_int.h"
#include "linalg/energy.h"
#include "linalg/linalg.h"

#include <fasvd/factor.h>

/* Load and validate factor options (NULL: defaults). */
int fasvd__factor_opts_load(fasvd_factor_opts *o, const fasvd_factor_opts *user, const char *fn);
/* Copy a full report into the caller's struct, at most its size (checked
 * before). NULL ok. */
void fasvd__report_out(fasvd_factor_report *dst, const fasvd_factor_report *src);
/* The shape fields of a report: rows, cols, heads, rank, full_rank and
 * inner = max(rank, 1) (the stored inner dimension). */
void fasvd__report_shape(fasvd_factor_report *rep, int64_t rows, int64_t cols, int64_t heads,
                         int64_t rank, int64_t full_rank);
/* The energy fields from the exact spectra at rank r: energy = their total
 * Σ σ², energy_lost = the tail fraction beyond r (0 for a zero matrix),
 * spectrum_exact = 1 (linalg/energy.h). */
void fasvd__report_energy(fasvd_factor_report *rep, const fasvd__spectra *sp, int64_t r);

bool fasvd__factor_canceled(const fasvd_factor_opts *o, fasvd_cancel_fn extra, void *extra_arg);
int fasvd__canceled_error(const char *fn, const char *label);

/* Encode with an overflow check (FASVD_ERANGE naming `what`); back (may be
 * NULL) receives the stored values decoded. */
int fasvd__encode_checked(fasvd_dtype dt, const double *src, size_t n, void *dst, double *back,
                          const char *what);

/* A = U·Σ^α (rows x r) and B = Σ^(1−α)·Vt (r x cols) stored as dt. */
int fasvd__store_factors(fasvd_ctx *ctx, fasvd_factor_split split, fasvd_dtype dt,
                         const fasvd_tensor *u, const double *s, const fasvd_tensor *vt,
                         int64_t rows, int64_t cols, int64_t r, void *a, void *b,
                         double *a_back, double *b_back, const char *label);

/* ‖W‖² and (a_dec, b_dec given) ‖W − A·B‖², W decoded in row blocks. */
int fasvd__measure(fasvd_ctx *ctx, const fasvd_tensor *w, const double *a_dec,
                   const double *b_dec, int64_t r, double *energy, double *resid);

/* fasvd_factor / fasvd_factor_into with an extra cancel hook: owned
 * tensors when a is not NULL, else the caller buffers abuf / bbuf. */
int fasvd__factor_run(fasvd_tensor **a, fasvd_tensor **b, void *abuf, void *bbuf,
                      int64_t capacity, fasvd_ctx *ctx, const fasvd_tensor *w,
                      const fasvd_factor_opts *opts, fasvd_cancel_fn cancel2, void *cancel2_arg,
                      fasvd_factor_report *report, const char *fn);

/* FASVD_EINVAL unless report (not NULL) has a valid size (factor.c). */
int fasvd__factor_check_report(fasvd_factor_report *report, const char *fn);
/* fasvd_factor_rank without calibration (factor.c). */
int fasvd__factor_rank_run(int64_t *rank, fasvd_ctx *ctx, const fasvd_tensor *w,
                           const fasvd_factor_opts *opts, fasvd_factor_report *report,
                           const char *fn);

/* fasvd__factor_run, or with opts->calibration the activation-aware
 * factorisation (whiten.c): what fasvd_factor, _into and the on-load API
 * call. */
int fasvd__factor_any(fasvd_tensor **a, fasvd_tensor **b, void *abuf, void *bbuf,
                      int64_t capacity, fasvd_ctx *ctx, const fasvd_tensor *w,
                      const fasvd_factor_opts *opts, fasvd_cancel_fn cancel2, void *cancel2_arg,
                      fasvd_factor_report *report, const char *fn);

/* The largest rank validated options o can choose for a full rank p:
 * o->rank, or max_rank in τ mode (each only when below p). */
int64_t fasvd__factor_max_rank(const fasvd_factor_opts *o, int64_t p);

/* Workspace bound with validated options. */
int fasvd__factor_workspace(uint64_t *bytes, int64_t rows, int64_t cols,
                            const fasvd_factor_opts *o, bool dbl, int64_t workers);

#endif /* FASVD_FACTOR_INT_H */
