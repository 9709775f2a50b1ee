/* libfasvd — work items of an analysis: the selected layers and extra
 * tensors dealt to N shards by estimated cost, deterministically, with the
 * fingerprints that let fasvd_merge check its parts belong together. */
#include "tensor/tensor_int.h"
#include "pipeline/shard.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A layer costs this many times the elements of its weight matrices: per
 * head its Q, K, V, O factors, the fused QK, KQ and VO products and their
 * stacks are decomposed, against one decomposition of an extra tensor. */
#define LAYER_COST_FACTOR 4

struct item {
	int64_t layer;  /* -1 for an extra tensor */
	int64_t tensor; /* index into the sorted extra tensors, -1 for a layer */
	uint64_t cost;
	int64_t bin;
};

/* FNV-1a, 64 bits. */
static void fnv(uint64_t *h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		*h ^= b[i];
		*h *= 0x100000001b3ULL;
	}
}

static void fnv_str(uint64_t *h, const char *s)
{
	fnv(h, s, strlen(s) + 1);
}

static void fnv_u64(uint64_t *h, uint64_t v)
{
	unsigned char b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	fnv(h, b, sizeof b);
}

/* Name, dtype, shape and the first and last 64 bytes of tensor `name`. */
static void fnv_tensor(uint64_t *h, const fasvd_st *st, const char *name)
{
	fasvd_st_info inf;
	fasvd_st_info_init(&inf, sizeof inf);
	const void *data;
	uint64_t n;
	fnv_str(h, name);
	if (fasvd_st_info_get(&inf, st, name) || fasvd_st_raw(&data, &n, st, name))
		return;
	fnv_str(h, inf.dtype);
	for (int d = 0; d < inf.ndim; d++)
		fnv_u64(h, (uint64_t)inf.shape[d]);
	uint64_t k = n < 64 ? n : 64;
	fnv(h, data, (size_t)k);
	fnv(h, (const unsigned char *)data + (n - k), (size_t)k);
}

/* Estimated cost of layer l (and its inputs into the checkpoint
 * fingerprint *h). */
static int layer_cost(uint64_t *cost, uint64_t *h, fasvd_model *m, int64_t l, int fold_norms)
{
	int64_t first, count;
	int rc = fasvd_model_layer_inputs(&first, &count, m, l);
	*cost = 0;
	for (int64_t k = first; !rc && k < first + count; k++) {
		fasvd_model_input in;
		fasvd_model_input_init(&in, sizeof in);
		if ((rc = fasvd_model_input_get(&in, m, k)))
			break;
		if (!in.present || (in.is_norm && !fold_norms))
			continue;
		fnv_tensor(h, fasvd_model_checkpoint(m), in.name);
		if (!in.is_norm)
			*cost += (uint64_t)in.shape[0] * (uint64_t)(in.ndim == 2 ? in.shape[1] : 1);
	}
	*cost *= LAYER_COST_FACTOR;
	return rc;
}

static uint64_t tensor_cost(uint64_t *h, const fasvd_st *st, const char *name)
{
	fasvd_st_info inf;
	fasvd_st_info_init(&inf, sizeof inf);
	fnv_tensor(h, st, name);
	if (fasvd_st_info_get(&inf, st, name) || inf.ndim != 2)
		return 0;
	return (uint64_t)inf.shape[0] * (uint64_t)inf.shape[1];
}

/* Largest first; ties: layers in order, then tensors in order. */
static int cmp_item(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	if (x->cost != y->cost)
		return x->cost > y->cost ? -1 : 1;
	if ((x->layer < 0) != (y->layer < 0))
		return x->layer < 0 ? 1 : -1;
	int64_t i = x->layer < 0 ? x->tensor : x->layer, j = y->layer < 0 ? y->tensor : y->layer;
	return i < j ? -1 : i > j;
}

/* Each item to the bin with the least cost so far (ties: the lowest). */
static int deal(fasvd_ctx *ctx, struct item *it, int64_t n, int64_t count)
{
	uint64_t *load = fasvd__calloc(ctx, (size_t)count, sizeof *load, "shard loads");
	if (!load)
		return FASVD_ENOMEM;
	qsort(it, (size_t)n, sizeof *it, cmp_item);
	for (int64_t i = 0; i < n; i++) {
		int64_t best = 0;
		for (int64_t b = 1; b < count; b++)
			if (load[b] < load[best])
				best = b;
		it[i].bin = best;
		load[best] += it[i].cost;
	}
	fasvd__free(ctx, load);
	return 0;
}

/* The metadata values of shard `index` from the dealt items. */
static int describe(fasvd__shard_plan *p, fasvd_ctx *ctx, const struct item *it, int64_t n,
                    int64_t n_layers, char *const *tensors, int64_t n_tensors, uint64_t h)
{
	json_t *arr = json_array();
	size_t cap = 32 * (size_t)n_layers + 1, len = 0;
	p->layers = fasvd__alloc(ctx, cap, "shard metadata");
	if (!arr || !p->layers) {
		json_decref(arr);
		return fasvd__error(FASVD_ENOMEM, "out of memory describing a shard");
	}
	for (int64_t i = 0; i < n; i++) {
		fnv_u64(&h, (uint64_t)it[i].layer);
		fnv_str(&h, it[i].layer < 0 ? tensors[it[i].tensor] : "");
		fnv_u64(&h, it[i].cost);
		fnv_u64(&h, (uint64_t)it[i].bin);
	}
	p->layers[0] = '\0';
	for (int64_t l = 0; l < n_layers; l++)
		if (p->layer_mine[l])
			len += (size_t)snprintf(p->layers + len, cap - len, "%s%lld", len ? "," : "",
			                        (long long)l);
	for (int64_t t = 0; t < n_tensors; t++)
		if (p->tensor_mine[t])
			json_array_append_new(arr, json_string(tensors[t]));
	char *s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	p->tensors = s ? fasvd__strdup(ctx, s) : NULL;
	free(s);
	if (!p->tensors)
		return fasvd__error(FASVD_ENOMEM, "out of memory describing a shard");
	snprintf(p->plan, sizeof p->plan, "%016llx", (unsigned long long)h);
	return 0;
}

/* The items of the selection, their costs, and the checkpoint fingerprint. */
static int list_items(struct item *it, fasvd_model *m, int64_t first, int64_t last,
                      char *const *tensors, int64_t n_tensors, int fold_norms, uint64_t *h)
{
	int64_t n = 0;
	for (int64_t l = first; l <= last; l++, n++) {
		it[n] = (struct item){.layer = l, .tensor = -1};
		int rc = layer_cost(&it[n].cost, h, m, l, fold_norms);
		if (rc)
			return rc;
	}
	for (int64_t t = 0; t < n_tensors; t++, n++)
		it[n] = (struct item){.layer = -1, .tensor = t,
		                      .cost = tensor_cost(h, fasvd_model_checkpoint(m), tensors[t])};
	return 0;
}

int fasvd__shard_plan_make(fasvd__shard_plan *p, fasvd_ctx *ctx, fasvd_model *m, int64_t first,
                           int64_t last, char *const *tensors, int64_t n_tensors,
                           int fold_norms, int64_t index, int64_t count)
{
	memset(p, 0, sizeof *p);
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	int rc = fasvd_model_info_get(&info, m);
	if (rc)
		return rc;
	int64_t n = last - first + 1 + n_tensors;
	struct item *it = fasvd__calloc(ctx, (size_t)n + 1, sizeof *it, "shard items");
	p->layer_mine = fasvd__calloc(ctx, (size_t)info.n_layers + 1, sizeof(bool), "shard items");
	p->tensor_mine = fasvd__calloc(ctx, (size_t)n_tensors + 1, sizeof(bool), "shard items");
	if (!it || !p->layer_mine || !p->tensor_mine) {
		fasvd__free(ctx, it);
		return FASVD_ENOMEM;
	}
	uint64_t ckpt = 0xcbf29ce484222325ULL, plan = ckpt;
	if (!(rc = list_items(it, m, first, last, tensors, n_tensors, fold_norms, &ckpt)) &&
	    !(rc = deal(ctx, it, n, count))) {
		for (int64_t i = 0; i < n; i++) {
			if (it[i].bin != index)
				continue;
			p->steps++;
			if (it[i].layer >= 0)
				p->layer_mine[it[i].layer] = true;
			else
				p->tensor_mine[it[i].tensor] = true;
		}
		fnv_u64(&plan, (uint64_t)count);
		rc = describe(p, ctx, it, n, info.n_layers, tensors, n_tensors, plan);
	}
	snprintf(p->shard, sizeof p->shard, "%lld/%lld", (long long)index, (long long)count);
	snprintf(p->checkpoint, sizeof p->checkpoint, "%016llx", (unsigned long long)ckpt);
	fasvd__free(ctx, it);
	return rc;
}

void fasvd__shard_plan_free(fasvd__shard_plan *p, fasvd_ctx *ctx)
{
	fasvd__free(ctx, p->layer_mine);
	fasvd__free(ctx, p->tensor_mine);
	fasvd__free(ctx, p->layers);
	fasvd__free(ctx, p->tensors);
	memset(p, 0, sizeof *p);
}
