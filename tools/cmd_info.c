/* fasvd info — what libfasvd sees in a model folder: architecture,
 * dimensions, dtypes, the tensors an analysis needs (found and missing) and
 * the bytes it will read. */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
        "usage: fasvd info MODEL_DIR [--json] [--tensors]\n"
        "\n"
        "Describe the model in MODEL_DIR (a folder with config.json and a safetensors\n"
        "checkpoint, single file or sharded; a checkpoint file or index inside such a\n"
        "folder also works; a shard listed by the folder's model.safetensors.index.json\n"
        "stands for the whole sharded checkpoint): the detected architecture and tensor\n"
        "prefix, layers, query and key/value heads, the canonical per-head shapes (Q,\n"
        "Q_pe, K, V, O: head dimension as rows), MLA latent ranks, weight dtypes and FP8\n"
        "block size, whether projections have biases (ignored), the checkpoint tensors\n"
        "the analysis needs — found and missing — and the bytes `fasvd analyze` will\n"
        "read. A `fasvd truncate` output is described as its architecture; each weight\n"
        "stored as factors A·B is listed with its rank (and heads, --per-head), with\n"
        "the parameters kept against the dense ones (JSON: \"factored\", \"rank\",\n"
        "\"factor_heads\", \"params\", \"params_dense\"). Nothing but headers is read.\n"
        "\n"
        "A model with missing tensors is still described (exit status 0); `fasvd analyze`\n"
        "refuses it.\n"
        "\n"
        "Options:\n"
        "  --json        one JSON object on stdout (every needed tensor listed)\n"
        "  --tensors     also list every needed tensor (text output)\n"
        "  -h, --help    this help\n"
        "\n"
        "Example:\n"
        "  fasvd info ~/models/DeepSeek-V3 --json\n";

static const char *norm_name(fasvd_norm_kind k)
{
	switch (k) {
	case FASVD_NORM_NONE: return "none (post-norm: nothing folded)";
	case FASVD_NORM_RMS: return "RMSNorm, folded as diag(gamma)";
	case FASVD_NORM_RMS_GEMMA: return "Gemma RMSNorm, folded as diag(1 + gamma)";
	case FASVD_NORM_LAYER: return "LayerNorm, folded as diag(gamma) (bias ignored)";
	}
	return "?";
}

static const char *norm_word(fasvd_norm_kind k)
{
	switch (k) {
	case FASVD_NORM_NONE: return "none";
	case FASVD_NORM_RMS: return "rms";
	case FASVD_NORM_RMS_GEMMA: return "rms_one_plus";
	case FASVD_NORM_LAYER: return "layer";
	}
	return "?";
}

static void human_bytes(uint64_t b, char *buf, size_t n)
{
	const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, n, "%llu B", (unsigned long long)b);
	else
		snprintf(buf, n, "%.2f %s (%llu bytes)", v, unit[u], (unsigned long long)b);
}

/* The architecture, layer, head and per-head shape lines. */
static void print_text_dims(const fasvd_model_info *in)
{
	printf("architecture %s", in->arch);
	if (strcmp(in->model_type, in->arch) != 0)
		printf(" (model_type \"%s\")", in->model_type);
	if (in->nested_config)
		printf(", dimensions from text_config");
	printf("%s\n", in->mla ? ", multi-head latent attention" : "");
	printf("layers       %lld\n", (long long)in->n_layers);
	if (in->mla)
		printf("heads        %lld (one K and V per head, from the shared latent)\n",
		       (long long)in->n_heads);
	else if (in->n_kv_heads == in->n_heads)
		printf("heads        %lld query, %lld key/value (MHA)\n", (long long)in->n_heads,
		       (long long)in->n_kv_heads);
	else
		printf("heads        %lld query, %lld key/value (%s: %lld query heads per KV head)\n",
		       (long long)in->n_heads, (long long)in->n_kv_heads,
		       in->n_kv_heads == 1 ? "MQA" : "GQA", (long long)(in->n_heads / in->n_kv_heads));
	printf("hidden       %lld\n", (long long)in->hidden);
	if (!in->mla)
		printf("head_dim     %lld\n", (long long)in->head_dim);
	printf("per head     Q %lldx%lld", (long long)in->q_head, (long long)in->q_in);
	if (in->mla)
		printf(", Q_pe %lldx%lld", (long long)in->q_rope, (long long)in->q_in);
	printf(", K %lldx%lld, V %lldx%lld, O %lldx%lld\n", (long long)in->k_head,
	       (long long)in->kv_in, (long long)in->v_head, (long long)in->kv_in,
	       (long long)in->v_head, (long long)in->hidden);
	if (in->mla) {
		if (in->q_lora_rank)
			printf("latent       q_lora_rank %lld, kv_lora_rank %lld, shared RoPE key %lld\n",
			       (long long)in->q_lora_rank, (long long)in->kv_lora_rank,
			       (long long)in->q_rope);
		else
			printf("latent       no query compression, kv_lora_rank %lld, shared RoPE key "
			       "%lld\n",
			       (long long)in->kv_lora_rank, (long long)in->q_rope);
	}
}

/* Parameters a factored input keeps (A's and B's elements) and those of
 * the dense weight it stands for. */
static void factored_params(const fasvd_model_input *t, int64_t *kept, int64_t *dense)
{
	int64_t h = t->factor_heads > 0 ? t->factor_heads : 1;
	*kept = h * t->rank * (t->shape[0] / h + t->shape[1]);
	*dense = t->shape[0] * t->shape[1];
}

/* Weights stored as factors A·B (fasvd truncate): their count, parameters
 * kept against dense, and each one's rank (one line per layer). */
static void print_text_factored(fasvd_model *m)
{
	int64_t n = fasvd_model_input_count(m), nf = 0, nw = 0, kept = 0, dense = 0, line = -1;
	for (int64_t i = 0; i < n; i++) {
		fasvd_model_input t;
		fasvd_model_input_init(&t, sizeof t);
		if (fasvd_model_input_get(&t, m, i) || t.is_norm)
			continue;
		nw++;
		if (!t.factored)
			continue;
		int64_t k, d;
		factored_params(&t, &k, &d);
		kept += k;
		dense += d;
		nf++;
	}
	if (!nf)
		return;
	printf("factored     %lld of %lld weights stored as A·B (fasvd truncate): %lld of %lld "
	       "parameters (%.1f %%); spectra are computed from the factors\n",
	       (long long)nf, (long long)nw, (long long)kept, (long long)dense,
	       100.0 * (double)kept / (double)dense);
	for (int64_t i = 0; i < n; i++) {
		fasvd_model_input t;
		fasvd_model_input_init(&t, sizeof t);
		if (fasvd_model_input_get(&t, m, i) || !t.factored)
			continue;
		if (t.layer != line)
			printf("%s  L%-3lld", line < 0 ? "" : "\n", (long long)t.layer);
		line = t.layer;
		printf(" %s rank %lld", t.role, (long long)t.rank);
		if (t.factor_heads > 1)
			printf(" x %lld heads", (long long)t.factor_heads);
	}
	printf("\n");
}

/* The needed tensors: every one with list_all, else the first 20 missing. */
static void print_text_inputs(fasvd_model *m, bool list_all)
{
	int64_t n = fasvd_model_input_count(m), shown = 0;
	for (int64_t i = 0; i < n; i++) {
		fasvd_model_input t;
		fasvd_model_input_init(&t, sizeof t);
		if (fasvd_model_input_get(&t, m, i))
			continue;
		if (list_all) {
			char shape[64];
			if (t.ndim == 2)
				snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)t.shape[0],
				         (long long)t.shape[1]);
			else
				snprintf(shape, sizeof shape, "[%lld]", (long long)t.shape[0]);
			if (t.present && t.factored)
				printf("  L%-3lld %-18s %-7s %-12s %10llu  %s.A/.B (rank %lld)\n",
				       (long long)t.layer, t.role, t.dtype, shape,
				       (unsigned long long)t.nbytes, t.name, (long long)t.rank);
			else if (t.present)
				printf("  L%-3lld %-18s %-7s %-12s %10llu  %s\n", (long long)t.layer, t.role,
				       t.dtype, shape, (unsigned long long)(t.nbytes + t.scale_nbytes), t.name);
			else
				printf("  L%-3lld %-18s MISSING %s\n", (long long)t.layer, t.role, t.name);
			if (t.scale_name && !t.scale_present)
				printf("  L%-3lld %-18s MISSING %s\n", (long long)t.layer, "scale_inv",
				       t.scale_name);
			continue;
		}
		/* missing ones only, the first 20 */
		if (!t.present || (t.scale_name && !t.scale_present)) {
			if (shown++ < 20)
				printf("  missing: %s (layer %lld %s)\n",
				       t.present ? t.scale_name : t.name, (long long)t.layer, t.role);
		}
	}
	if (!list_all && shown > 20)
		printf("  ... and %lld more missing\n", (long long)(shown - 20));
}

static void print_text(fasvd_model *m, const fasvd_model_info *in, bool list_all)
{
	printf("model        %s\n", in->dir);
	printf("config       %s\n", in->config_path);
	print_text_dims(in);
	printf("norm         %s\n", norm_name(in->norm));
	printf("weights      %s", in->weight_dtypes[0] ? in->weight_dtypes : "(none found)");
	if (in->block_rows)
		printf(", %lldx%lld block scales", (long long)in->block_rows,
		       (long long)in->block_cols);
	printf("\nbiases       %s\n", in->has_bias ? "present (ignored in the spectra)" : "none");
	printf("prefix       %s\n", in->layer_prefix);
	printf("checkpoint   %lld file%s\n", (long long)in->n_shards, in->n_shards == 1 ? "" : "s");
	printf("tensors      %lld needed, %lld found, %lld missing\n", (long long)in->n_needed,
	       (long long)(in->n_needed - in->n_missing), (long long)in->n_missing);
	char hb[96];
	human_bytes(in->bytes_needed, hb, sizeof hb);
	printf("reads        %s\n", hb);
	print_text_factored(m);
	print_text_inputs(m, list_all);
}

static json_t *jint(int64_t v)
{
	return json_integer((json_int_t)v);
}

/* The per-head shapes and MLA ranks of in, into o; nonzero on failure. */
static int json_dims(json_t *o, const fasvd_model_info *in)
{
	int bad = 0;
	json_t *ph = json_object();
	bad |= !ph || json_object_set_new(o, "per_head", ph);
	if (ph) {
		json_t *q = json_pack("[II]", (json_int_t)in->q_head, (json_int_t)in->q_in);
		json_t *k = json_pack("[II]", (json_int_t)in->k_head, (json_int_t)in->kv_in);
		json_t *v = json_pack("[II]", (json_int_t)in->v_head, (json_int_t)in->kv_in);
		json_t *ov = json_pack("[II]", (json_int_t)in->v_head, (json_int_t)in->hidden);
		bad |= json_object_set_new(ph, "Q", q);
		if (in->mla)
			bad |= json_object_set_new(
			        ph, "Q_pe", json_pack("[II]", (json_int_t)in->q_rope, (json_int_t)in->q_in));
		bad |= json_object_set_new(ph, "K", k);
		bad |= json_object_set_new(ph, "V", v);
		bad |= json_object_set_new(ph, "O", ov);
	}
	if (in->mla) {
		bad |= json_object_set_new(o, "q_lora_rank",
		                           in->q_lora_rank ? jint(in->q_lora_rank) : json_null());
		bad |= json_object_set_new(o, "kv_lora_rank", jint(in->kv_lora_rank));
		bad |= json_object_set_new(o, "qk_rope_head_dim", jint(in->q_rope));
	}
	return bad;
}

/* The entry of needed tensor t into e; missing names (tensor, scale) are
 * appended to miss. Nonzero on failure. */
static int json_input(json_t *e, json_t *miss, const fasvd_model_input *t)
{
	int bad = 0;
	bad |= json_object_set_new(e, "layer", jint(t->layer));
	bad |= json_object_set_new(e, "role", json_string(t->role));
	bad |= json_object_set_new(e, "name", json_string(t->name));
	bad |= json_object_set_new(e, "present", json_boolean(t->present));
	if (t->present) {
		json_t *shape = json_array();
		for (int d = 0; d < t->ndim && d < 2 && shape; d++)
			bad |= json_array_append_new(shape, jint(t->shape[d]));
		bad |= json_object_set_new(e, "dtype", json_string(t->dtype));
		bad |= json_object_set_new(e, "shape", shape);
		bad |= json_object_set_new(e, "file", json_string(t->file));
		bad |= json_object_set_new(e, "bytes", json_integer((json_int_t)t->nbytes));
		if (t->has_bias)
			bad |= json_object_set_new(e, "has_bias", json_true());
		if (t->factored) {
			int64_t kept, dense;
			factored_params(t, &kept, &dense);
			bad |= json_object_set_new(e, "factored", json_true());
			bad |= json_object_set_new(e, "rank", jint(t->rank));
			bad |= json_object_set_new(e, "factor_heads", jint(t->factor_heads));
			bad |= json_object_set_new(e, "params", jint(kept));
			bad |= json_object_set_new(e, "params_dense", jint(dense));
		}
	} else {
		bad |= json_array_append_new(miss, json_string(t->name));
	}
	if (t->scale_name) {
		json_t *s = json_object();
		bad |= !s || json_object_set_new(e, "scale_inv", s);
		if (s) {
			bad |= json_object_set_new(s, "name", json_string(t->scale_name));
			bad |= json_object_set_new(s, "present", json_boolean(t->scale_present));
			if (t->scale_present) {
				bad |= json_object_set_new(s, "file", json_string(t->scale_file));
				bad |= json_object_set_new(s, "bytes",
				                           json_integer((json_int_t)t->scale_nbytes));
			} else {
				bad |= json_array_append_new(miss, json_string(t->scale_name));
			}
		}
	}
	return bad;
}

static int print_json(fasvd_model *m, const fasvd_model_info *in)
{
	json_t *o = json_object(), *dt = json_array(), *tens = json_array(), *miss = json_array();
	if (!o || !dt || !tens || !miss)
		goto nomem;
	int bad = 0;
	bad |= json_object_set_new(o, "model", json_string(in->dir));
	bad |= json_object_set_new(o, "config", json_string(in->config_path));
	bad |= json_object_set_new(o, "model_type", json_string(in->model_type));
	bad |= json_object_set_new(o, "architecture", json_string(in->arch));
	bad |= json_object_set_new(o, "mla", json_boolean(in->mla));
	bad |= json_object_set_new(o, "nested_config", json_boolean(in->nested_config));
	bad |= json_object_set_new(o, "layers", jint(in->n_layers));
	bad |= json_object_set_new(o, "heads", jint(in->n_heads));
	bad |= json_object_set_new(o, "kv_heads", jint(in->n_kv_heads));
	bad |= json_object_set_new(o, "hidden", jint(in->hidden));
	bad |= json_object_set_new(o, "head_dim", in->mla ? json_null() : jint(in->head_dim));
	bad |= json_dims(o, in);
	bad |= json_object_set_new(o, "norm", json_string(norm_word(in->norm)));
	/* the dtype list as an array */
	char dts[64];
	snprintf(dts, sizeof dts, "%s", in->weight_dtypes);
	for (char *tok = strtok(dts, ", "); tok; tok = strtok(NULL, ", "))
		bad |= json_array_append_new(dt, json_string(tok));
	bad |= json_object_set_new(o, "weight_dtypes", dt);
	dt = NULL;
	bad |= json_object_set_new(
	        o, "weight_block_size",
	        in->block_rows ? json_pack("[II]", (json_int_t)in->block_rows, (json_int_t)in->block_cols)
	                       : json_null());
	bad |= json_object_set_new(o, "has_bias", json_boolean(in->has_bias));
	bad |= json_object_set_new(o, "layer_prefix", json_string(in->layer_prefix));
	bad |= json_object_set_new(o, "shards", jint(in->n_shards));
	bad |= json_object_set_new(o, "tensors_needed", jint(in->n_needed));
	bad |= json_object_set_new(o, "tensors_found", jint(in->n_needed - in->n_missing));
	bad |= json_object_set_new(o, "tensors_missing", jint(in->n_missing));
	bad |= json_object_set_new(o, "bytes_needed", json_integer((json_int_t)in->bytes_needed));

	int64_t n = fasvd_model_input_count(m);
	for (int64_t i = 0; i < n && !bad; i++) {
		fasvd_model_input t;
		fasvd_model_input_init(&t, sizeof t);
		if (fasvd_model_input_get(&t, m, i))
			continue;
		json_t *e = json_object();
		bad |= !e || json_array_append_new(tens, e);
		if (!e)
			break;
		bad |= json_input(e, miss, &t);
	}
	bad |= json_object_set_new(o, "missing", miss);
	miss = NULL;
	bad |= json_object_set_new(o, "tensors", tens);
	tens = NULL;
	if (bad)
		goto nomem;
	char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!text)
		return cli_error(CLI_EXIT_FAIL, "out of memory writing JSON");
	printf("%s\n", text);
	free(text);
	return CLI_EXIT_OK;
nomem:
	json_decref(o);
	json_decref(dt);
	json_decref(tens);
	json_decref(miss);
	return cli_error(CLI_EXIT_FAIL, "out of memory building JSON");
}

static int run(cli *c, int argc, char **argv)
{
	bool json = false, list = false;
	const cli_opt opts[] = {
		{"json", 0, CLI_OPT_FLAG, &json, NULL, 0, 0},
		{"tensors", 0, CLI_OPT_FLAG, &list, NULL, 0, 0},
		{NULL, 0, 0, NULL, NULL, 0, 0},
	};
	const char *pos[1];
	CLI_PARSE_OR_RETURN(cli_parse(c, argc, argv, opts, pos, 1, 1, NULL));
	fasvd_model *m = NULL;
	int rc = fasvd_model_open(&m, c->ctx, pos[0], 0);
	if (rc)
		return cli_lib_error(rc);
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	if ((rc = fasvd_model_info_get(&info, m))) {
		fasvd_model_free(m);
		return cli_lib_error(rc);
	}
	int status = CLI_EXIT_OK;
	if (json)
		status = print_json(m, &info);
	else
		print_text(m, &info, list);
	fasvd_model_free(m);
	return status;
}

const cli_cmd cli_cmd_info = {
	"info",
	"Describe a model folder: architecture, heads, dims, dtypes, tensors, bytes",
	usage,
	run,
};
