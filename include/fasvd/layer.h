/* libfasvd — every spectrum of one attention layer: the entry point of the
 * analysis pipeline.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FASVD_LAYER_H
#define FASVD_LAYER_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>
#include <fasvd/heads.h>
#include <fasvd/stack.h>
#include <fasvd/spectra.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Canonical attention weights of one layer (heads.h orientation). Everything is
 * borrowed for the duration of fasvd_layer_spectra only. Absent parts are
 * NULL and their spectra are skipped (e.g. no q_pe/qa/kva outside MLA). */
typedef struct fasvd_layer_desc {
	size_t size;                   /* set by fasvd_layer_desc_init */
	int64_t n_heads, n_kv_heads;   /* q, q_pe, o: n_heads heads; k, v: n_kv_heads */
	const fasvd_heads *q;          /* q_head x q_in (no-RoPE part in MLA) */
	const fasvd_heads *q_pe;       /* MLA: rope x q_in; else NULL */
	const fasvd_heads *k;          /* k_head x kv_in (k_nope in MLA); k_head == q_head */
	const fasvd_heads *v;          /* v_head x kv_in */
	const fasvd_heads *o;          /* v_head x hidden per head (axis COLS of o_proj) */
	/* MLA subspaces (else NULL): q_a_proj [q_lora x hidden], the first kv_lora
	 * rows of kv_a_proj_with_mqa, its last rope rows. */
	const fasvd_tensor *qa, *kva, *kva_pe;
	/* Norm folding for the subspaces: per-column scale (cols values, e.g.
	 * input_layernorm γ, or 1 + γ for Gemma) applied to qa / kva / kva_pe, or
	 * NULL for none. Heads carry their own scale (fasvd_heads_set_col_scale). */
	const double *qa_col_scale, *kva_col_scale, *kva_pe_col_scale;
} fasvd_layer_desc;

/* Zeroes the description.
 * Call as fasvd_layer_desc_init(&d, sizeof d) (versioned struct, see core.h). */
FASVD_API int fasvd_layer_desc_init(fasvd_layer_desc *d, size_t size);

/* Spectrum groups (bits). */
#define FASVD_LAYER_HEAD 0x1u  /* head.{Q,Q_pe,K,V,O,QK,KQ,VO} */
#define FASVD_LAYER_STACK 0x2u /* stack.{same} */
#define FASVD_LAYER_SUB 0x4u   /* sub.{QA,KVA,KVA_pe} */
#define FASVD_LAYER_ALL 0x7u

typedef struct fasvd_layer_opts {
	size_t size;                /* set by fasvd_layer_opts_init */
	fasvd_compute compute;      /* 0: context default (FASVD_COMPUTE_F32 by default) */
	fasvd_stack_norm stack_norm;       /* default FASVD_STACK_NORM_SIGMA1 */
	fasvd_stack_method stack_method;   /* default FASVD_STACK_AUTO */
	unsigned groups;            /* FASVD_LAYER_* bits; default FASVD_LAYER_ALL */
} fasvd_layer_opts;

/* Defaults as noted above.
 * Call as fasvd_layer_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_layer_opts_init(fasvd_layer_opts *opts, size_t size);

/* Compute every spectrum of one layer (docs/spectra-schema.md) and return them as
 * a list: "head.Q", "head.Q_pe", "head.K", "head.V", "head.O", "head.QK",
 * "head.KQ", "head.VO" ([heads x min(rows, cols)]), "stack.<same>" ([1 x
 * min(rows, cols)] of the stacked matrix, normalised per opts->stack_norm;
 * fused stacks are divided by each fused head's own σ₁ / Frobenius norm), and
 * "sub.QA", "sub.KVA", "sub.KVA_pe". Entries whose inputs are absent are
 * skipped; QK/KQ need q and k, VO needs v and o. Every value is in double,
 * descending. Each head is decoded once per use at most; the R factors of
 * Q, K, V, O are computed once and shared. opts may be NULL.
 * Threads: per-head work runs in parallel over heads; then the stacked and
 * subspace problems (independent, of very unequal size) run concurrently,
 * largest first, each with threads / problems BLAS threads (at least 1) —
 * with 2 threads, stack.O and stack.VO each get one core.
 * Errors: FASVD_EINVAL (NULL d, n_heads not a multiple of n_kv_heads, a heads
 * handle with the wrong count), FASVD_ESHAPE (head sizes inconsistent: q vs k
 * rows, v vs o rows, q/q_pe columns, k/v columns), FASVD_ENONFINITE (detail
 * names the tensor), FASVD_ERANGE, FASVD_ELAPACK, FASVD_ENOMEM. */
FASVD_API int fasvd_layer_spectra(fasvd_spectra **out, fasvd_ctx *ctx, const fasvd_layer_desc *d,
                                  const fasvd_layer_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_LAYER_H */
