/* libfasvd — pipeline layer: work items of an analysis (shard.c), shared by
 * fasvd_analyze (which computes one shard) and fasvd_merge (which joins
 * them). Never installed; hidden. */
#ifndef FASVD_PIPELINE_SHARD_H
#define FASVD_PIPELINE_SHARD_H
#include "core/internal.h"

#include <stdbool.h>

/* Metadata keys of a shard file; every key starting with SHARD_KEY_PREFIX
 * is one of them, and none is in the file of a whole run. */
#define SHARD_KEY_PREFIX "shard"
#define SHARD_KEY "shard"                  /* "I/N" */
#define SHARD_KEY_LAYERS "shard_layers"    /* "1,4" */
#define SHARD_KEY_TENSORS "shard_tensors"  /* JSON array of names */
#define SHARD_KEY_PLAN "shard_plan"        /* fingerprint of the dealing */
#define SHARD_KEY_CHECKPOINT "shard_checkpoint" /* fingerprint of the weights */

/* One shard of the selected steps of an analysis. */
typedef struct fasvd__shard_plan {
	bool *layer_mine;    /* [n_layers]: layer l is this shard's */
	bool *tensor_mine;   /* [n_tensors]: extra tensor i is this shard's */
	int64_t steps;       /* steps of this shard */
	char *layers;        /* SHARD_KEY_LAYERS value */
	char *tensors;       /* SHARD_KEY_TENSORS value */
	char shard[48];      /* SHARD_KEY value */
	char plan[17];       /* SHARD_KEY_PLAN value (hex) */
	char checkpoint[17]; /* SHARD_KEY_CHECKPOINT value (hex) */
} fasvd__shard_plan;

/* Deal layers first .. last and the extra tensors tensors[0 .. n_tensors)
 * (sorted) of model m to `count` shards by estimated cost (analyze.h) and
 * fill *p for shard `index`. Norm inputs count only with fold_norms.
 * FASVD_ENOMEM, or an error of the model reader. Free with
 * fasvd__shard_plan_free (also on failure). */
int fasvd__shard_plan_make(fasvd__shard_plan *p, fasvd_ctx *ctx, fasvd_model *m, int64_t first,
                           int64_t last, char *const *tensors, int64_t n_tensors,
                           int fold_norms, int64_t index, int64_t count);
void fasvd__shard_plan_free(fasvd__shard_plan *p, fasvd_ctx *ctx);

#endif /* FASVD_PIPELINE_SHARD_H */
