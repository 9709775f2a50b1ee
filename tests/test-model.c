/* Model handles (lib/model/model.c): the real stories260K checkpoint, the tensor
 * inventory (`fasvd info`), every refusal with its code and a detail naming
 * the tensor / key and the file, fixture determinism, allocation failures. */
#include "test-model-helpers.h"
#include "fixture.h"

#include <pthread.h>

#include <fasvd/svd.h>

/* ------------------------------------------------------------ helpers */

static char *stories(char *buf, size_t n)
{
	return (char *)test_data_path("stories260K", buf, n);
}

/* The detail must contain every word given (NULL-terminated). */
static void detail_has(const char *first, ...)
{
	const char *detail = fasvd_last_error();
	va_list ap;
	va_start(ap, first);
	for (const char *w = first; w; w = va_arg(ap, const char *)) {
		if (!strstr(detail, w)) {
			print_error("detail '%s' does not mention '%s'\n", detail, w);
			va_end(ap);
			fail();
		}
	}
	va_end(ap);
}

#define LLAMA_CFG                                                                      \
	"{\"model_type\":\"llama\",\"hidden_size\":16,\"num_hidden_layers\":2,"        \
	"\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":4}"

/* A hand-made 2-layer llama checkpoint (hidden 16, 4 heads of 4, 2 KV
 * heads); `skip` names a tensor to leave out, `replace`/`ndim`/`r`/`c`
 * describes one tensor written with another shape, `dtype` another dtype. */
typedef struct custom {
	const char *skip;
	const char *replace;
	int ndim;
	int64_t r, c;
	const char *dtype_of;  /* tensor written as I32 */
} custom;

static void write_llama(const char *dir, const custom *cu)
{
	write_text(dir, "config.json", LLAMA_CFG);
	fasvd_st_writer *w;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	for (int l = 0; l < 2; l++) {
		struct {
			const char *suffix;
			int ndim;
			int64_t r, c;
		} t[] = {{"self_attn.q_proj.weight", 2, 16, 16}, {"self_attn.k_proj.weight", 2, 8, 16},
		         {"self_attn.v_proj.weight", 2, 8, 16},  {"self_attn.o_proj.weight", 2, 16, 16},
		         {"input_layernorm.weight", 1, 16, 0},   {"mlp.up_proj.weight", 2, 32, 16}};
		for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
			char name[128];
			snprintf(name, sizeof name, "model.layers.%d.%s", l, t[i].suffix);
			if (cu && cu->skip && strcmp(cu->skip, name) == 0)
				continue;
			if (cu && cu->dtype_of && strcmp(cu->dtype_of, name) == 0) {
				int32_t v[16 * 16] = {0};
				int64_t shape[2] = {t[i].r, t[i].c};
				int64_t n = t[i].ndim == 1 ? t[i].r : t[i].r * t[i].c;
				assert_ok(fasvd_st_writer_add(w, name, "I32", t[i].ndim, shape, v,
				                              (uint64_t)n * 4, 0));
				continue;
			}
			if (cu && cu->replace && strcmp(cu->replace, name) == 0)
				writer_add_f32(w, name, cu->ndim, cu->r, cu->c, 0.1);
			else
				writer_add_f32(w, name, t[i].ndim, t[i].r, t[i].c,
				               t[i].ndim == 1 ? 1.0 : 0.1 * (i + 1));
		}
	}
	char path[2048];
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
}

/* ------------------------------------------------------------ tests */

static void test_stories260k(void **state)
{
	(void)state;
	char dir[4096];
	fasvd_model *m;
	assert_ok(fasvd_model_open(&m, NULL, stories(dir, sizeof dir), FASVD_MODEL_REQUIRE_ALL));
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_string_equal(info.model_type, "llama");
	assert_string_equal(info.arch, "llama");
	assert_string_equal(info.layer_prefix, "model.layers.%d.");
	assert_int_equal(info.n_layers, 5);
	assert_int_equal(info.n_heads, 8);
	assert_int_equal(info.n_kv_heads, 4);
	assert_int_equal(info.head_dim, 8);
	assert_int_equal(info.hidden, 64);
	assert_int_equal(info.mla, 0);
	assert_int_equal(info.norm, FASVD_NORM_RMS);
	assert_string_equal(info.weight_dtypes, "F32");
	assert_int_equal(info.has_bias, 0);
	assert_int_equal(info.n_shards, 1);
	assert_int_equal(info.n_missing, 0);
	/* q, k, v, o, input_layernorm per layer */
	assert_int_equal(info.n_needed, 25);
	assert_int_equal(fasvd_model_input_count(m), 25);
	uint64_t per_layer = (64 * 64 + 32 * 64 + 32 * 64 + 64 * 64 + 64) * 4;
	assert_int_equal(info.bytes_needed, 5 * per_layer);
	assert_non_null(strstr(info.config_path, "stories260K/config.json"));
	assert_non_null(strstr(fasvd_model_config_json(m), "\"num_key_value_heads\": 4"));

	/* GQA: query head i uses KV head i / 2. */
	for (int64_t i = 0; i < 8; i++)
		assert_int_equal(fasvd_gqa_group(i, info.n_heads, info.n_kv_heads), i / 2);

	const fasvd_st *st = fasvd_model_checkpoint(m);
	for (int64_t layer = 0; layer < 5; layer += 4) {
		fasvd_model_layer_opts lo;
		fasvd_model_layer_opts_init(&lo, sizeof lo);
		lo.fold_norms = 0;
		fasvd_model_layer *l;
		assert_ok(fasvd_model_layer_open(&l, m, layer, &lo));
		const fasvd_layer_desc *d = fasvd_model_layer_desc(l);
		assert_int_equal(d->n_heads, 8);
		assert_int_equal(d->n_kv_heads, 4);
		assert_int_equal(fasvd_heads_count(d->q), 8);
		assert_int_equal(fasvd_heads_count(d->k), 4);
		assert_int_equal(fasvd_heads_count(d->v), 4);
		assert_int_equal(fasvd_heads_count(d->o), 8);
		assert_int_equal(fasvd_heads_rows(d->q), 8);
		assert_int_equal(fasvd_heads_cols(d->q), 64);
		assert_int_equal(fasvd_heads_rows(d->o), 8);
		assert_int_equal(fasvd_heads_cols(d->o), 64);
		assert_null(d->q_pe);
		assert_null(d->kva);
		/* K head 3 is rows 24..31 of k_proj; O head 5 is o_proj columns
		 * 40..47 transposed. */
		char name[128];
		fasvd_tensor *k, *o, *kv, *ov;
		snprintf(name, sizeof name, "model.layers.%lld.self_attn.k_proj.weight",
		         (long long)layer);
		assert_ok(fasvd_st_tensor(&k, st, name, 0));
		snprintf(name, sizeof name, "model.layers.%lld.self_attn.o_proj.weight",
		         (long long)layer);
		assert_ok(fasvd_st_tensor(&o, st, name, 0));
		assert_ok(fasvd_heads_view(&kv, d->k, 3));
		assert_ok(fasvd_heads_view(&ov, d->o, 5));
		for (int64_t r = 0; r < 8; r++)
			for (int64_t c = 0; c < 64; c++) {
				double a, b;
				assert_ok(fasvd_tensor_get(&a, kv, r, c));
				assert_ok(fasvd_tensor_get(&b, k, 24 + r, c));
				assert_true(a == b);
				assert_ok(fasvd_tensor_get(&a, ov, r, c));
				assert_ok(fasvd_tensor_get(&b, o, c, 40 + r));
				assert_true(a == b);
			}
		fasvd_tensor_free(kv);
		fasvd_tensor_free(ov);
		fasvd_tensor_free(k);
		fasvd_tensor_free(o);

		/* The descriptor is what fasvd_layer_spectra takes. */
		fasvd_spectra *sp;
		assert_ok(fasvd_layer_spectra(&sp, NULL, d, NULL));
		int64_t idx;
		assert_ok(fasvd_spectra_find(&idx, sp, "head.QK"));
		int64_t nr, nc, mr, mc;
		assert_ok(fasvd_spectra_shape(&nr, &nc, &mr, &mc, sp, idx));
		assert_int_equal(nr, 8);
		assert_int_equal(mr, 64);
		assert_int_equal(mc, 64);
		/* GQA on real weights: head i's QK spectrum is that of the
		 * materialised Q_iᵀ·K_{i/2} (float64 reference), not of the
		 * product with another KV head. */
		const double *qk = fasvd_spectra_data(sp, idx);
		double qh[8 * 64], kh[8 * 64], s[64];
		for (int64_t i = 0; i < 8; i++) {
			double worst_other = 0;
			for (int64_t g = 0; g < 4; g++) {
				fasvd_tensor *prod;
				assert_ok(fasvd_tensor_new(&prod, NULL, FASVD_DTYPE_F64, 64, 64));
				double *p = fasvd_tensor_data_mut(prod);
				assert_ok(fasvd_heads_decode_f64(qh, 64, FASVD_LAYOUT_ROW_MAJOR,
				                                 d->q, i));
				assert_ok(fasvd_heads_decode_f64(kh, 64, FASVD_LAYOUT_ROW_MAJOR,
				                                 d->k, g));
				for (int a = 0; a < 64; a++)
					for (int b = 0; b < 64; b++) {
						double acc = 0;
						for (int r = 0; r < 8; r++)
							acc += qh[r * 64 + a] * kh[r * 64 + b];
						p[a * 64 + b] = acc;
					}
				fasvd_svd_opts so;
				fasvd_svd_opts_init(&so, sizeof so);
				so.compute = FASVD_COMPUTE_F64;
				assert_ok(fasvd_svdvals(s, 64, NULL, prod, &so, NULL));
				fasvd_tensor_free(prod);
				double diff = 0;
				for (int j = 0; j < 64; j++)
					diff = fmax(diff, fabs(qk[i * nc + j] - s[j]));
				if (g == i / 2)
					assert_true(diff <= 1e-4 * s[0]);
				else
					worst_other = fmax(worst_other, diff / s[0]);
			}
			assert_true(worst_other > 1e-2);
		}
		assert_ok(fasvd_spectra_find(&idx, sp, "head.K"));
		assert_ok(fasvd_spectra_shape(&nr, &nc, &mr, &mc, sp, idx));
		assert_int_equal(nr, 4);
		assert_int_equal(nc, 8);
		fasvd_spectra_free(sp);
		fasvd_model_layer_free(l);
	}
	fasvd_model_free(m);
}

/* The model folder may be given as the checkpoint file too. */
static void test_open_paths(void **state)
{
	(void)state;
	char dir[4096], path[4200];
	stories(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	fasvd_model *m;
	assert_ok(fasvd_model_open(&m, NULL, path, 0));
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_int_equal(info.n_layers, 5);
	fasvd_model_free(m);

	/* a sharded fixture opened through its index */
	char tmp[1024];
	tmpdir_make(tmp, sizeof tmp, "paths");
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.n_shards = 2;
	assert_ok(fasvd_fixture_write(NULL, tmp, "qwen2", &fo));
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", tmp);
	assert_ok(fasvd_model_open(&m, NULL, path, FASVD_MODEL_REQUIRE_ALL));
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_int_equal(info.n_shards, 2);
	assert_string_equal(info.dir, tmp);
	fasvd_model_free(m);
	/* one shard that the index lists stands for the whole checkpoint */
	snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", tmp);
	assert_ok(fasvd_model_open(&m, NULL, path, FASVD_MODEL_REQUIRE_ALL));
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_int_equal(info.n_shards, 2);
	assert_int_equal(info.n_missing, 0);
	fasvd_model_free(m);
	tmpdir_remove(tmp);

	/* info->size below the first published size is refused (ABI growth:
	 * tests/test-versioning.c) */
	assert_ok(fasvd_model_open(&m, NULL, dir, 0));
	fasvd_model_info small;
	fasvd_model_info_init(&small, sizeof small);
	small.size = offsetof(fasvd_model_info, arch);
	assert_fasvd(fasvd_model_info_get(&small, m), FASVD_EINVAL);
	small.size = 0;
	assert_fasvd(fasvd_model_info_get(&small, m), FASVD_EINVAL);
	fasvd_model_free(m);
}

static void test_bad_arguments(void **state)
{
	(void)state;
	char dir[4096];
	fasvd_model *m = (fasvd_model *)&m;
	assert_fasvd(fasvd_model_open(&m, NULL, NULL, 0), FASVD_EINVAL);
	assert_null(m);
	assert_fasvd(fasvd_model_open(NULL, NULL, "x", 0), FASVD_EINVAL);
	assert_fasvd(fasvd_model_open(&m, NULL, stories(dir, sizeof dir), 0x80), FASVD_EINVAL);
	assert_null(m);
	fasvd_model_free(NULL);
	fasvd_model_layer_free(NULL);
	assert_null(fasvd_model_layer_desc(NULL));
	assert_int_equal(fasvd_model_layer_index(NULL), -1);
	assert_null(fasvd_model_checkpoint(NULL));
	assert_null(fasvd_model_config_json(NULL));
	assert_int_equal(fasvd_model_input_count(NULL), 0);
	assert_fasvd(fasvd_model_info_init(NULL, sizeof(fasvd_model_info)), FASVD_EINVAL);
	assert_fasvd(fasvd_model_input_init(NULL, sizeof(fasvd_model_input)), FASVD_EINVAL);
	assert_fasvd(fasvd_model_layer_opts_init(NULL, sizeof(fasvd_model_layer_opts)), FASVD_EINVAL);

	assert_ok(fasvd_model_open(&m, NULL, dir, 0));
	fasvd_model_layer *l = (fasvd_model_layer *)&l;
	assert_fasvd(fasvd_model_layer_open(&l, m, 5, NULL), FASVD_EINVAL);
	assert_null(l);
	detail_has("layer 5", "[0, 5)", NULL);
	assert_fasvd(fasvd_model_layer_open(&l, m, -1, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_model_layer_open(NULL, m, 0, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_model_layer_open(&l, NULL, 0, NULL), FASVD_EINVAL);
	fasvd_model_layer_opts lo;
	fasvd_model_layer_opts_init(&lo, sizeof lo);
	lo.fold_norms = 2;
	assert_fasvd(fasvd_model_layer_open(&l, m, 0, &lo), FASVD_EINVAL);
	lo.size = 0;
	lo.fold_norms = 1;
	assert_fasvd(fasvd_model_layer_open(&l, m, 0, &lo), FASVD_EINVAL);
	fasvd_model_input in;
	fasvd_model_input_init(&in, sizeof in);
	assert_fasvd(fasvd_model_input_get(&in, m, 25), FASVD_EINVAL);
	assert_fasvd(fasvd_model_input_get(&in, m, -1), FASVD_EINVAL);
	assert_fasvd(fasvd_model_input_get(NULL, m, 0), FASVD_EINVAL);
	int64_t first, count;
	assert_fasvd(fasvd_model_layer_inputs(&first, &count, m, 5), FASVD_EINVAL);
	assert_ok(fasvd_model_layer_inputs(&first, &count, m, 4));
	assert_int_equal(first, 20);
	assert_int_equal(count, 5);
	fasvd_model_free(m);
}

static void test_config_errors(void **state)
{
	(void)state;
	char dir[1024];
	fasvd_model *m;
	tmpdir_make(dir, sizeof dir, "cfg");
	write_llama(dir, NULL);
	/* no config.json */
	char path[2048];
	snprintf(path, sizeof path, "%s/config.json", dir);
	assert_int_equal(remove(path), 0);
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_ENOTFOUND);
	detail_has(path, NULL);
	/* unknown architecture: the supported ones are listed */
	write_text(dir, "config.json", "{\"model_type\":\"rwkv\",\"hidden_size\":16}");
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_EARCH);
	detail_has(path, "\"rwkv\"", "llama", "deepseek_v3", "gpt_neox", NULL);
	/* zero / missing values */
	write_text(dir, "config.json",
	           "{\"model_type\":\"llama\",\"hidden_size\":16,\"num_hidden_layers\":0,"
	           "\"num_attention_heads\":4}");
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_EARCH);
	detail_has(path, "'num_hidden_layers'", NULL);
	write_text(dir, "config.json",
	           "{\"model_type\":\"llama\",\"hidden_size\":16,\"num_hidden_layers\":2}");
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_EARCH);
	detail_has(path, "'num_attention_heads'", "missing", NULL);
	/* heads not divisible by KV heads */
	write_text(dir, "config.json",
	           "{\"model_type\":\"llama\",\"hidden_size\":16,\"num_hidden_layers\":2,"
	           "\"num_attention_heads\":4,\"num_key_value_heads\":3}");
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_EARCH);
	detail_has(path, "'num_key_value_heads' = 3", NULL);
	/* config not matching the tensors: hidden, head count, head_dim */
	write_text(dir, "config.json",
	           "{\"model_type\":\"llama\",\"hidden_size\":32,\"num_hidden_layers\":2,"
	           "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":4}");
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_EARCH);
	detail_has(path, "model.layers.0.self_attn.", "hidden_size = 32", "model.safetensors", NULL);
	write_text(dir, "config.json",
	           "{\"model_type\":\"llama\",\"hidden_size\":16,\"num_hidden_layers\":2,"
	           "\"num_attention_heads\":4,\"num_key_value_heads\":4,\"head_dim\":4}");
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_EARCH);
	detail_has("'model.layers.0.self_attn.k_proj.weight'", "[8, 16]",
	           "num_key_value_heads*head_dim = 16", NULL);
	/* tensors of another architecture than the config says */
	write_text(dir, "config.json",
	           "{\"model_type\":\"gpt2\",\"n_embd\":16,\"n_layer\":2,\"n_head\":4}");
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_ENOTFOUND);
	detail_has("model.safetensors", "gpt2", "'h.%d.attn.c_attn.weight'",
	           "'transformer.h.%d.attn.c_attn.weight'", NULL);
	/* more layers than the checkpoint could hold */
	write_text(dir, "config.json",
	           "{\"model_type\":\"llama\",\"hidden_size\":16,\"num_hidden_layers\":1000000000,"
	           "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":4}");
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_EARCH);
	detail_has(path, "'num_hidden_layers' = 1000000000", "12 tensors", NULL);
	/* not JSON */
	write_text(dir, "config.json", "model_type = llama");
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_EFORMAT);
	detail_has(path, NULL);
	/* and the good config works */
	write_text(dir, "config.json", LLAMA_CFG);
	assert_ok(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL));
	fasvd_model_free(m);
	tmpdir_remove(dir);
}

/* A file of another format is named before config.json is looked at; a
 * folder without config.json says what a model folder holds and lists
 * what it found. */
static void test_other_formats(void **state)
{
	(void)state;
	char tmp[1024], path[1200];
	tmpdir_make(tmp, sizeof tmp, "formats");
	write_text(tmp, "model-Q8_0.gguf", "GGUF\3\4\5\6\7\10\11\12\13\14\15\16");
	write_text(tmp, "tokenizer.json", "{}");
	fasvd_model *m = (fasvd_model *)&m;
	snprintf(path, sizeof path, "%s/model-Q8_0.gguf", tmp);
	assert_fasvd(fasvd_model_open(&m, NULL, path, 0), FASVD_EFORMAT);
	assert_null(m);
	/* GGUF is read as a model: this one is truncated, and named so. */
	detail_has(path, "shorter than the 24-byte GGUF header", NULL);
	assert_fasvd(fasvd_model_open(&m, NULL, tmp, 0), FASVD_EFORMAT);
	detail_has("model-Q8_0.gguf", "shorter than the 24-byte GGUF header", NULL);
	/* with config.json, the checkpoint search lists the folder */
	write_text(tmp, "config.json", LLAMA_CFG);
	assert_fasvd(fasvd_model_open(&m, NULL, tmp, 0), FASVD_ENOTFOUND);
	detail_has("no safetensors checkpoint", "model-Q8_0.gguf (a GGUF file)", NULL);
	tmpdir_remove(tmp);
}

static void test_missing_and_bad_tensors(void **state)
{
	(void)state;
	char dir[1024];
	fasvd_model *m;
	fasvd_model_layer *l;

	/* a missing weight: listed, refused by its layer and by REQUIRE_ALL */
	tmpdir_make(dir, sizeof dir, "miss");
	custom cu = {.skip = "model.layers.1.self_attn.k_proj.weight"};
	write_llama(dir, &cu);
	assert_fasvd(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL), FASVD_ENOTFOUND);
	detail_has("'model.layers.1.self_attn.k_proj.weight'", "model.safetensors", NULL);
	assert_ok(fasvd_model_open(&m, NULL, dir, 0));
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_int_equal(info.n_needed, 10);
	assert_int_equal(info.n_missing, 1);
	uint64_t full = (16 * 16 + 8 * 16 + 8 * 16 + 16 * 16 + 16) * 4;
	assert_int_equal(info.bytes_needed, 2 * full - 8 * 16 * 4);
	int64_t first, count;
	assert_ok(fasvd_model_layer_inputs(&first, &count, m, 1));
	int seen = 0;
	for (int64_t i = first; i < first + count; i++) {
		fasvd_model_input in;
		fasvd_model_input_init(&in, sizeof in);
		assert_ok(fasvd_model_input_get(&in, m, i));
		assert_int_equal(in.layer, 1);
		if (strcmp(in.role, "k_proj") == 0) {
			seen = 1;
			assert_int_equal(in.present, 0);
			assert_null(in.dtype);
			assert_null(in.file);
			assert_string_equal(in.name, "model.layers.1.self_attn.k_proj.weight");
		} else {
			assert_int_equal(in.present, 1);
			assert_string_equal(in.dtype, "F32");
			assert_non_null(strstr(in.file, "model.safetensors"));
		}
	}
	assert_true(seen);
	assert_ok(fasvd_model_layer_open(&l, m, 0, NULL));
	fasvd_model_layer_free(l);
	assert_fasvd(fasvd_model_layer_open(&l, m, 1, NULL), FASVD_ENOTFOUND);
	detail_has("'model.layers.1.self_attn.k_proj.weight'", "model.safetensors", NULL);
	fasvd_model_free(m);
	tmpdir_remove(dir);

	/* a missing norm: needed only when folding */
	tmpdir_make(dir, sizeof dir, "miss");
	cu = (custom){.skip = "model.layers.0.input_layernorm.weight"};
	write_llama(dir, &cu);
	assert_ok(fasvd_model_open(&m, NULL, dir, 0));
	assert_fasvd(fasvd_model_layer_open(&l, m, 0, NULL), FASVD_ENOTFOUND);
	detail_has("'model.layers.0.input_layernorm.weight'", "norm folding", NULL);
	fasvd_model_layer_opts lo;
	fasvd_model_layer_opts_init(&lo, sizeof lo);
	lo.fold_norms = 0;
	assert_ok(fasvd_model_layer_open(&l, m, 0, &lo));
	assert_null(fasvd_heads_col_scale(fasvd_model_layer_desc(l)->q));
	fasvd_model_layer_free(l);
	fasvd_model_free(m);
	tmpdir_remove(dir);

	/* 1-D where 2-D is needed, 2-D norm: ESHAPE naming tensor and file */
	tmpdir_make(dir, sizeof dir, "shape");
	cu = (custom){.replace = "model.layers.1.self_attn.q_proj.weight", .ndim = 1, .r = 256};
	write_llama(dir, &cu);
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_ESHAPE);
	detail_has("'model.layers.1.self_attn.q_proj.weight'", "1-D", "model.safetensors", NULL);
	tmpdir_remove(dir);
	tmpdir_make(dir, sizeof dir, "shape");
	cu = (custom){.replace = "model.layers.0.input_layernorm.weight", .ndim = 2, .r = 4, .c = 4};
	write_llama(dir, &cu);
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_ESHAPE);
	detail_has("'model.layers.0.input_layernorm.weight'", "1-D norm", NULL);
	tmpdir_remove(dir);
	/* a norm of the wrong length */
	tmpdir_make(dir, sizeof dir, "shape");
	cu = (custom){.replace = "model.layers.0.input_layernorm.weight", .ndim = 1, .r = 15};
	write_llama(dir, &cu);
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_EARCH);
	detail_has("'model.layers.0.input_layernorm.weight'", "[15]", "hidden_size = 16", NULL);
	tmpdir_remove(dir);
	/* a dtype libfasvd cannot decode */
	tmpdir_make(dir, sizeof dir, "dtype");
	cu = (custom){.dtype_of = "model.layers.0.self_attn.v_proj.weight"};
	write_llama(dir, &cu);
	assert_fasvd(fasvd_model_open(&m, NULL, dir, 0), FASVD_EDTYPE);
	detail_has("'model.layers.0.self_attn.v_proj.weight'", "I32", NULL);
	tmpdir_remove(dir);
}

/* NaN in a norm vector: refused when folding, named. */
static void test_nonfinite_norm(void **state)
{
	(void)state;
	char dir[1024];
	tmpdir_make(dir, sizeof dir, "nan");
	write_text(dir, "config.json", LLAMA_CFG);
	fasvd_st_writer *w;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	for (int l = 0; l < 2; l++) {
		char name[128];
		const char *s[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
		int64_t rows[] = {16, 8, 8, 16};
		for (int i = 0; i < 4; i++) {
			snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.weight", l, s[i]);
			writer_add_f32(w, name, 2, rows[i], 16, 0.1);
		}
		float g[16];
		for (int i = 0; i < 16; i++)
			g[i] = 1.0f;
		if (l == 1)
			g[7] = NAN;
		snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
		int64_t shape[1] = {16};
		assert_ok(fasvd_st_writer_add(w, name, "F32", 1, shape, g, sizeof g, 0));
	}
	char path[2048];
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
	fasvd_model *m;
	fasvd_model_layer *l;
	assert_ok(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL));
	assert_ok(fasvd_model_layer_open(&l, m, 0, NULL));
	fasvd_model_layer_free(l);
	assert_fasvd(fasvd_model_layer_open(&l, m, 1, NULL), FASVD_ENONFINITE);
	detail_has("'model.layers.1.input_layernorm.weight'", "index 7", NULL);
	fasvd_model_layer_opts lo;
	fasvd_model_layer_opts_init(&lo, sizeof lo);
	lo.fold_norms = 0;
	assert_ok(fasvd_model_layer_open(&l, m, 1, &lo));
	fasvd_model_layer_free(l);
	fasvd_model_free(m);
	tmpdir_remove(dir);
}

/* Rewrite one FP8 fixture tensor: drop a scale_inv, or give it the wrong
 * grid. Works on a single-file fixture by copying every other tensor. */
static void rewrite_fp8(const char *dir, const char *victim, int mode)
{
	char path[2048];
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	fasvd_st *st;
	assert_ok(fasvd_st_open(&st, NULL, path));
	fasvd_st_writer *w;
	assert_ok(fasvd_st_writer_new(&w, NULL));
	for (int64_t i = 0; i < fasvd_st_count(st); i++) {
		const char *name = fasvd_st_name(st, i);
		fasvd_st_info info;
		fasvd_st_info_init(&info, sizeof info);
		assert_ok(fasvd_st_info_get(&info, st, name));
		const void *data;
		uint64_t nbytes;
		assert_ok(fasvd_st_raw(&data, &nbytes, st, name));
		if (strcmp(name, victim) == 0) {
			if (mode == 0)
				continue; /* drop */
			/* wrong grid: one column short */
			int64_t shape[2] = {info.shape[0], info.shape[1] - 1};
			assert_ok(fasvd_st_writer_add(w, name, info.dtype, 2, shape, data,
			                              (uint64_t)(shape[0] * shape[1]) * 4, 0));
			continue;
		}
		assert_ok(fasvd_st_writer_add(w, name, info.dtype, info.ndim, info.shape, data, nbytes,
		                              0));
	}
	fasvd_st_free(st);
	assert_ok(fasvd_st_writer_write(w, path));
	fasvd_st_writer_free(w);
}

static void test_fp8_scale_errors(void **state)
{
	(void)state;
	char dir[1024];
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.n_shards = 1;
	fo.n_layers = 1;
	const char *w = "model.layers.0.self_attn.kv_b_proj.weight";
	const char *s = "model.layers.0.self_attn.kv_b_proj.weight_scale_inv";

	tmpdir_make(dir, sizeof dir, "fp8");
	assert_ok(fasvd_fixture_write(NULL, dir, "deepseek_v3", &fo));
	rewrite_fp8(dir, s, 0);
	fasvd_model *m;
	fasvd_model_layer *l;
	assert_fasvd(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL), FASVD_ENOTFOUND);
	detail_has(s, w, NULL);
	assert_ok(fasvd_model_open(&m, NULL, dir, 0));
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	assert_ok(fasvd_model_info_get(&info, m));
	assert_int_equal(info.n_missing, 1);
	assert_fasvd(fasvd_model_layer_open(&l, m, 0, NULL), FASVD_ENOTFOUND);
	detail_has(s, "model.safetensors", NULL);
	fasvd_model_free(m);
	tmpdir_remove(dir);

	tmpdir_make(dir, sizeof dir, "fp8");
	assert_ok(fasvd_fixture_write(NULL, dir, "deepseek_v3", &fo));
	rewrite_fp8(dir, s, 1);
	assert_ok(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL));
	assert_fasvd(fasvd_model_layer_open(&l, m, 0, NULL), FASVD_ESHAPE);
	detail_has("kv_b_proj.weight_scale_inv", NULL);
	fasvd_model_free(m);
	tmpdir_remove(dir);
}

static int same_file(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	assert_non_null(fa);
	assert_non_null(fb);
	int same = 1, ca, cb;
	do {
		ca = fgetc(fa);
		cb = fgetc(fb);
		if (ca != cb)
			same = 0;
	} while (same && ca != EOF);
	fclose(fa);
	fclose(fb);
	return same;
}

static void test_fixture_deterministic(void **state)
{
	(void)state;
	char a[1024], b[1024], c[1024], pa[2048], pb[2048], pc[2048];
	tmpdir_make(a, sizeof a, "det");
	tmpdir_make(b, sizeof b, "det");
	tmpdir_make(c, sizeof c, "det");
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.seed = 5;
	fo.n_shards = 1;
	assert_ok(fasvd_fixture_write(NULL, a, "gpt2", &fo));
	assert_ok(fasvd_fixture_write(NULL, b, "gpt2", &fo));
	fo.seed = 6;
	assert_ok(fasvd_fixture_write(NULL, c, "gpt2", &fo));
	snprintf(pa, sizeof pa, "%s/model.safetensors", a);
	snprintf(pb, sizeof pb, "%s/model.safetensors", b);
	snprintf(pc, sizeof pc, "%s/model.safetensors", c);
	assert_true(same_file(pa, pb));
	assert_false(same_file(pa, pc));
	snprintf(pa, sizeof pa, "%s/config.json", a);
	snprintf(pb, sizeof pb, "%s/config.json", b);
	assert_true(same_file(pa, pb));
	/* a single-file rewrite of a sharded folder removes the stale index */
	fo.n_shards = 2;
	assert_ok(fasvd_fixture_write(NULL, a, "gpt2", &fo));
	snprintf(pa, sizeof pa, "%s/model.safetensors.index.json", a);
	assert_int_equal(access(pa, R_OK), 0);
	fo.n_shards = 1;
	assert_ok(fasvd_fixture_write(NULL, a, "gpt2", &fo));
	assert_int_equal(access(pa, R_OK), -1);
	tmpdir_remove(a);
	tmpdir_remove(b);
	tmpdir_remove(c);
}

static void test_fixture_errors(void **state)
{
	(void)state;
	char dir[1024];
	tmpdir_make(dir, sizeof dir, "fxerr");
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	assert_fasvd(fasvd_fixture_write(NULL, dir, "mamba", NULL), FASVD_EARCH);
	/* The generator's own checks report through its own detail. */
	assert_non_null(strstr(fasvd_fixture_last_error(), "mamba"));
	assert_non_null(strstr(fasvd_fixture_last_error(), "deepseek_v3"));
	assert_fasvd(fasvd_fixture_write(NULL, NULL, "llama", NULL), FASVD_EINVAL);
	assert_fasvd(fasvd_fixture_write(NULL, dir, NULL, NULL), FASVD_EINVAL);
	fo.n_kv_heads = 2;
	assert_fasvd(fasvd_fixture_write(NULL, dir, "gpt2", &fo), FASVD_EINVAL);
	fo.n_kv_heads = 3;
	assert_fasvd(fasvd_fixture_write(NULL, dir, "llama", &fo), FASVD_EINVAL);
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.head_dim = 8;
	assert_fasvd(fasvd_fixture_write(NULL, dir, "bert", &fo), FASVD_EINVAL);
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.n_heads = -1;
	assert_fasvd(fasvd_fixture_write(NULL, dir, "llama", &fo), FASVD_EINVAL);
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.size = 0;
	assert_fasvd(fasvd_fixture_write(NULL, dir, "llama", &fo), FASVD_EINVAL);
	assert_fasvd(fasvd_fixture_write(NULL, "/nonexistent/a/b", "llama", NULL), FASVD_EIO);
	tmpdir_remove(dir);
}

/* Every allocation failing in turn: the documented error, nothing leaked.
 * `step` runs the operation on a context whose k-th allocation fails, for
 * k = 1, 2, ... until the operation completes without reaching it. */
typedef int (*oom_step)(fasvd_ctx *ctx, const char *dir);

static void every_allocation_fails(oom_step step, const char *dir)
{
	int completed = 0;
	for (long k = 1; k < 5000 && !completed; k++) {
		test_alloc_state st = {0, 0, 0, 0};
		fasvd_allocator al = {test_alloc_fn, test_free_fn, &st};
		fasvd_ctx *ctx;
		assert_ok(fasvd_ctx_new(&ctx, &al));
		st.fail_at = st.allocs + k;
		int rc = step(ctx, dir);
		if (rc)
			assert_int_equal(rc, FASVD_ENOMEM);
		else
			completed = st.allocs < st.fail_at;
		fasvd_ctx_free(ctx);
		assert_int_equal(st.allocs - (st.allocs >= st.fail_at ? 1 : 0), st.frees);
	}
	assert_true(completed);
}

static int oom_open_layer(fasvd_ctx *ctx, const char *dir)
{
	fasvd_model *m;
	int rc = fasvd_model_open(&m, ctx, dir, FASVD_MODEL_REQUIRE_ALL);
	if (rc) {
		assert_null(m);
		return rc;
	}
	fasvd_model_layer *l;
	rc = fasvd_model_layer_open(&l, m, 0, NULL);
	if (rc == 0)
		fasvd_model_layer_free(l);
	else
		assert_null(l);
	fasvd_model_free(m);
	return rc;
}

static int oom_fixture(fasvd_ctx *ctx, const char *dir)
{
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.n_layers = 1;
	fo.n_shards = 2;
	return fasvd_fixture_write(ctx, dir, "gpt2", &fo);
}

static void test_alloc_failures(void **state)
{
	(void)state;
	char dir[1024];
	tmpdir_make(dir, sizeof dir, "oom");
	fasvd_fixture_opts fo;
	fasvd_fixture_opts_init(&fo, sizeof fo);
	fo.n_layers = 1;
	fo.n_shards = 2;
	assert_ok(fasvd_fixture_write(NULL, dir, "deepseek_v3", &fo));
	every_allocation_fails(oom_open_layer, dir);
	every_allocation_fails(oom_fixture, dir);
	tmpdir_remove(dir);
}

/* One open model used by several threads at once (documented as safe):
 * each opens every layer and decodes every head; results equal a
 * single-threaded pass. */
typedef struct thread_job {
	fasvd_model *m;
	double sum;
	int rc;
} thread_job;

static void *layer_worker(void *arg)
{
	thread_job *j = arg;
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	j->rc = fasvd_model_info_get(&info, j->m);
	for (int64_t layer = 0; layer < info.n_layers && !j->rc; layer++) {
		fasvd_model_layer *l;
		if ((j->rc = fasvd_model_layer_open(&l, j->m, layer, NULL)))
			break;
		const fasvd_layer_desc *d = fasvd_model_layer_desc(l);
		const fasvd_heads *hs[5] = {d->q, d->q_pe, d->k, d->v, d->o};
		for (int k = 0; k < 5 && !j->rc; k++) {
			int64_t n = fasvd_heads_rows(hs[k]) * fasvd_heads_cols(hs[k]);
			double *buf = malloc((size_t)n * sizeof *buf);
			for (int64_t i = 0; i < fasvd_heads_count(hs[k]) && !j->rc; i++) {
				j->rc = fasvd_heads_decode_f64(buf, fasvd_heads_cols(hs[k]),
				                               FASVD_LAYOUT_ROW_MAJOR, hs[k], i);
				for (int64_t e = 0; e < n; e++)
					j->sum += buf[e] * (double)(e % 7 + 1);
			}
			free(buf);
		}
		fasvd_model_layer_free(l);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	char dir[1024];
	tmpdir_make(dir, sizeof dir, "thr");
	assert_ok(fasvd_fixture_write(NULL, dir, "deepseek_v3", NULL));
	fasvd_model *m;
	assert_ok(fasvd_model_open(&m, NULL, dir, FASVD_MODEL_REQUIRE_ALL));
	thread_job ref = {m, 0, 0};
	layer_worker(&ref);
	assert_ok(ref.rc);
	thread_job jobs[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		jobs[i] = (thread_job){m, 0, 0};
		assert_int_equal(pthread_create(&th[i], NULL, layer_worker, &jobs[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_ok(jobs[i].rc);
		assert_true(jobs[i].sum == ref.sum);
	}
	fasvd_model_free(m);
	tmpdir_remove(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stories260k),
		cmocka_unit_test(test_open_paths),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_other_formats),
		cmocka_unit_test(test_missing_and_bad_tensors),
		cmocka_unit_test(test_nonfinite_norm),
		cmocka_unit_test(test_fp8_scale_errors),
		cmocka_unit_test(test_fixture_deterministic),
		cmocka_unit_test(test_fixture_errors),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
