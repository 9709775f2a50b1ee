/* config.json parsing (lib/model/config.c) and the architecture table
 * lookups it relies on: every failure is FASVD_EARCH (or FASVD_EFORMAT for
 * text that is not a JSON object) with a detail naming the key and the file. */
#include "test-helpers.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model_int.h"

#define LABEL "/models/x/config.json"

static int parse(fasvd__config *cfg, const char *json)
{
	return fasvd__config_parse(NULL, cfg, json, strlen(json), LABEL);
}

/* Parse must fail with `code` and a detail containing each of the given
 * words (NULL-terminated) and the file name. */
static void expect_fail(const char *json, int code, ...)
{
	fasvd__config cfg;
	fasvd_clear_error();
	int rc = parse(&cfg, json);
	if (rc != code) {
		print_error("config %s\nreturned %d (%s), expected %d; detail: %s\n", json, rc,
		               fasvd_strerror(rc), code, fasvd_last_error());
		if (rc == 0)
			fasvd__config_clear(NULL, &cfg);
		fail();
	}
	/* On failure nothing is left to free. */
	assert_null(cfg.label);
	assert_null(cfg.text);
	assert_null(cfg.model_type);
	const char *detail = fasvd_last_error();
	if (!strstr(detail, LABEL)) {
		print_error("detail '%s' does not name the file\n", detail);
		fail();
	}
	va_list ap;
	va_start(ap, code);
	for (const char *w; (w = va_arg(ap, const char *)) != NULL;) {
		if (!strstr(detail, w)) {
			print_error("detail '%s' does not mention '%s'\n", detail, w);
			va_end(ap);
			fail();
		}
	}
	va_end(ap);
}

static void test_stories_config(void **state)
{
	(void)state;
	char path[4096];
	fasvd__config cfg;
	assert_ok(fasvd__config_load(NULL, &cfg,
	                             test_data_path("stories260K/config.json", path, sizeof path)));
	assert_string_equal(cfg.arch->name, "llama");
	assert_string_equal(cfg.model_type, "llama");
	assert_int_equal(cfg.hidden, 64);
	assert_int_equal(cfg.n_layers, 5);
	assert_int_equal(cfg.n_heads, 8);
	assert_int_equal(cfg.n_kv_heads, 4);
	assert_int_equal(cfg.head_dim, 8);
	assert_true(cfg.head_dim_given);
	assert_int_equal(cfg.block_rows, 0);
	assert_null(cfg.quant_method);
	assert_non_null(strstr(cfg.text, "LlamaForCausalLM"));
	assert_non_null(strstr(cfg.label, "stories260K/config.json"));
	fasvd__dims d;
	fasvd__config_dims(&cfg, &d);
	assert_int_equal(d.q_head, 8);
	assert_int_equal(d.k_head, 8);
	assert_int_equal(d.v_head, 8);
	assert_int_equal(d.q_in, 64);
	assert_int_equal(d.kv_in, 64);
	assert_int_equal(d.q_pe, 0);
	fasvd__config_clear(NULL, &cfg);
	fasvd__config_clear(NULL, &cfg); /* idempotent */
}

static void test_defaults_and_head_dim(void **state)
{
	(void)state;
	fasvd__config cfg;
	/* kv heads default to heads; head_dim to hidden / heads. */
	assert_ok(parse(&cfg, "{\"model_type\":\"mistral\",\"hidden_size\":96,"
	                      "\"num_hidden_layers\":2,\"num_attention_heads\":6}"));
	assert_int_equal(cfg.n_kv_heads, 6);
	assert_int_equal(cfg.head_dim, 16);
	assert_false(cfg.head_dim_given);
	fasvd__config_clear(NULL, &cfg);
	/* head_dim may differ from hidden / heads; null means default. */
	assert_ok(parse(&cfg, "{\"model_type\":\"qwen3\",\"hidden_size\":64,"
	                      "\"num_hidden_layers\":1,\"num_attention_heads\":4,"
	                      "\"num_key_value_heads\":2,\"head_dim\":24}"));
	assert_int_equal(cfg.head_dim, 24);
	fasvd__config_clear(NULL, &cfg);
	assert_ok(parse(&cfg, "{\"model_type\":\"llama\",\"hidden_size\":64,"
	                      "\"num_hidden_layers\":1,\"num_attention_heads\":4,"
	                      "\"num_key_value_heads\":null,\"head_dim\":null}"));
	assert_int_equal(cfg.n_kv_heads, 4);
	assert_int_equal(cfg.head_dim, 16);
	fasvd__config_clear(NULL, &cfg);
	/* Integral reals, as some exporters write them, are integers. */
	assert_ok(parse(&cfg, "{\"model_type\":\"llama\",\"hidden_size\":64.0,"
	                      "\"num_hidden_layers\":1,\"num_attention_heads\":4}"));
	assert_int_equal(cfg.hidden, 64);
	fasvd__config_clear(NULL, &cfg);
	/* phi3 ignores a head_dim key (its attention uses hidden / heads). */
	assert_ok(parse(&cfg, "{\"model_type\":\"phi3\",\"hidden_size\":64,"
	                      "\"num_hidden_layers\":1,\"num_attention_heads\":4,"
	                      "\"num_key_value_heads\":2,\"head_dim\":5}"));
	assert_int_equal(cfg.head_dim, 16);
	assert_int_equal(cfg.n_kv_heads, 2);
	fasvd__config_clear(NULL, &cfg);
	/* Without head_dim, transformers' config classes default it per
	 * architecture, whatever hidden / heads is: Qwen3Config 128,
	 * GemmaConfig and Gemma2Config 256; Qwen3MoeConfig has no such
	 * default (hidden / heads = 1024 / 16). */
	static const struct {
		const char *type;
		int64_t hd;
	} defaults[] = {{"qwen3", 128}, {"qwen3_moe", 64}, {"gemma", 256}, {"gemma2", 256},
	                {"gemma3_text", 256}};
	for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
		char text[256];
		snprintf(text, sizeof text,
		         "{\"model_type\":\"%s\",\"hidden_size\":1024,"
		         "\"num_hidden_layers\":2,\"num_attention_heads\":16,"
		         "\"num_key_value_heads\":8}",
		         defaults[i].type);
		assert_ok(parse(&cfg, text));
		assert_int_equal(cfg.head_dim, defaults[i].hd);
		assert_false(cfg.head_dim_given);
		fasvd__dims d;
		fasvd__config_dims(&cfg, &d);
		assert_int_equal(d.q_head, defaults[i].hd);
		fasvd__config_clear(NULL, &cfg);
	}
	/* A Qwen3 config whose hidden / heads is no integer is read too. */
	assert_ok(parse(&cfg, "{\"model_type\":\"qwen3\",\"hidden_size\":100,"
	                      "\"num_hidden_layers\":1,\"num_attention_heads\":3}"));
	assert_int_equal(cfg.head_dim, 128);
	fasvd__config_clear(NULL, &cfg);
}

static void test_gpt2_bert_neox(void **state)
{
	(void)state;
	fasvd__config cfg;
	assert_ok(parse(&cfg, "{\"model_type\":\"gpt2\",\"n_embd\":768,\"n_layer\":12,"
	                      "\"n_head\":12,\"n_positions\":1024}"));
	assert_string_equal(cfg.arch->name, "gpt2");
	assert_int_equal(cfg.hidden, 768);
	assert_int_equal(cfg.n_layers, 12);
	assert_int_equal(cfg.n_heads, 12);
	assert_int_equal(cfg.n_kv_heads, 12);
	assert_int_equal(cfg.head_dim, 64);
	fasvd__config_clear(NULL, &cfg);
	/* GPT-2 without its own key names: the HF names are not GPT-2's. */
	expect_fail("{\"model_type\":\"gpt2\",\"hidden_size\":768,\"n_layer\":12,\"n_head\":12}",
	            FASVD_EARCH, "'n_embd'", "missing", NULL);
	/* No GQA in GPT-2, GPT-NeoX, BERT. */
	expect_fail("{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":1,\"n_head\":4,"
	            "\"num_key_value_heads\":2}",
	            FASVD_EARCH, "num_key_value_heads", "gpt2", NULL);
	assert_ok(parse(&cfg, "{\"model_type\":\"bert\",\"hidden_size\":384,"
	                      "\"num_hidden_layers\":6,\"num_attention_heads\":12}"));
	assert_string_equal(cfg.arch->name, "bert");
	assert_int_equal(cfg.head_dim, 32);
	assert_int_equal(cfg.arch->norm, FASVD_NORM_NONE);
	fasvd__config_clear(NULL, &cfg);
	assert_ok(parse(&cfg, "{\"model_type\":\"gpt_neox\",\"hidden_size\":512,"
	                      "\"num_hidden_layers\":6,\"num_attention_heads\":8}"));
	assert_int_equal(cfg.arch->layout, FASVD__LAYOUT_QKV_HEADS);
	assert_int_equal(cfg.head_dim, 64);
	fasvd__config_clear(NULL, &cfg);
	/* Aliases map to their adapter; model_type keeps the file's spelling. */
	assert_ok(parse(&cfg, "{\"model_type\":\"roberta\",\"hidden_size\":64,"
	                      "\"num_hidden_layers\":1,\"num_attention_heads\":4}"));
	assert_string_equal(cfg.arch->name, "bert");
	assert_string_equal(cfg.model_type, "roberta");
	fasvd__config_clear(NULL, &cfg);
}

/* DeepSeek-V3's config.json (attention-relevant keys as published). */
static const char *dsv3 =
        "{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"model_type\":\"deepseek_v3\","
        "\"hidden_size\":7168,\"num_hidden_layers\":61,\"num_attention_heads\":128,"
        "\"num_key_value_heads\":128,\"q_lora_rank\":1536,\"kv_lora_rank\":512,"
        "\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,\"v_head_dim\":128,"
        "\"quantization_config\":{\"activation_scheme\":\"dynamic\",\"fmt\":\"e4m3\","
        "\"quant_method\":\"fp8\",\"weight_block_size\":[128,128]}}";

static void test_mla(void **state)
{
	(void)state;
	fasvd__config cfg;
	assert_ok(parse(&cfg, dsv3));
	assert_string_equal(cfg.arch->name, "deepseek_v3");
	assert_true(fasvd__arch_is_mla(cfg.arch));
	assert_int_equal(cfg.n_heads, 128);
	assert_int_equal(cfg.n_kv_heads, 128);
	assert_int_equal(cfg.q_lora_rank, 1536);
	assert_int_equal(cfg.kv_lora_rank, 512);
	assert_int_equal(cfg.qk_nope, 128);
	assert_int_equal(cfg.qk_rope, 64);
	assert_int_equal(cfg.v_head, 128);
	assert_int_equal(cfg.block_rows, 128);
	assert_int_equal(cfg.block_cols, 128);
	assert_string_equal(cfg.quant_method, "fp8");
	fasvd__dims d;
	fasvd__config_dims(&cfg, &d);
	assert_int_equal(d.q_head, 128);
	assert_int_equal(d.q_pe, 64);
	assert_int_equal(d.k_head, 128);
	assert_int_equal(d.v_head, 128);
	assert_int_equal(d.q_in, 1536);
	assert_int_equal(d.kv_in, 512);
	assert_int_equal(d.hidden, 7168);
	fasvd__config_clear(NULL, &cfg);

	/* DeepSeek-V2-Lite: no query compression (q_lora_rank null); MLA has one
	 * K/V per head whatever num_key_value_heads says. */
	assert_ok(parse(&cfg, "{\"model_type\":\"deepseek_v2\",\"hidden_size\":2048,"
	                      "\"num_hidden_layers\":27,\"num_attention_heads\":16,"
	                      "\"num_key_value_heads\":16,\"q_lora_rank\":null,\"kv_lora_rank\":512,"
	                      "\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,\"v_head_dim\":128}"));
	assert_int_equal(cfg.q_lora_rank, 0);
	fasvd__config_dims(&cfg, &d);
	assert_int_equal(d.q_in, 2048);
	assert_int_equal(d.kv_in, 512);
	assert_int_equal(cfg.n_kv_heads, 16);
	fasvd__config_clear(NULL, &cfg);

	/* Kimi-K2 names its own model_type. */
	assert_ok(parse(&cfg, "{\"model_type\":\"kimi_k2\",\"architectures\":[\"DeepseekV3ForCausalLM\"],"
	                      "\"hidden_size\":7168,\"num_hidden_layers\":61,\"num_attention_heads\":64,"
	                      "\"num_key_value_heads\":64,\"q_lora_rank\":1536,\"kv_lora_rank\":512,"
	                      "\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,\"v_head_dim\":128}"));
	assert_string_equal(cfg.arch->name, "kimi_k2");
	assert_int_equal(cfg.n_heads, 64);
	fasvd__config_clear(NULL, &cfg);

	expect_fail("{\"model_type\":\"deepseek_v3\",\"hidden_size\":64,\"num_hidden_layers\":1,"
	            "\"num_attention_heads\":4,\"kv_lora_rank\":32,\"qk_nope_head_dim\":8,"
	            "\"qk_rope_head_dim\":4,\"v_head_dim\":8}",
	            FASVD_EARCH, "'q_lora_rank'", "missing", NULL);
	expect_fail("{\"model_type\":\"deepseek_v3\",\"hidden_size\":64,\"num_hidden_layers\":1,"
	            "\"num_attention_heads\":4,\"q_lora_rank\":16,\"qk_nope_head_dim\":8,"
	            "\"qk_rope_head_dim\":4,\"v_head_dim\":8}",
	            FASVD_EARCH, "'kv_lora_rank'", NULL);
	expect_fail("{\"model_type\":\"deepseek_v3\",\"hidden_size\":64,\"num_hidden_layers\":1,"
	            "\"num_attention_heads\":4,\"q_lora_rank\":16,\"kv_lora_rank\":32,"
	            "\"qk_nope_head_dim\":8,\"qk_rope_head_dim\":0,\"v_head_dim\":8}",
	            FASVD_EARCH, "'qk_rope_head_dim'", "= 0", NULL);
}

static void test_quantization_errors(void **state)
{
	(void)state;
	const char *base = "{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":1,"
	                   "\"num_attention_heads\":4,\"quantization_config\":";
	char buf[512];
	snprintf(buf, sizeof buf, "%s{\"quant_method\":\"fp8\",\"weight_block_size\":[128]}}", base);
	expect_fail(buf, FASVD_EARCH, "weight_block_size", NULL);
	snprintf(buf, sizeof buf, "%s{\"quant_method\":\"fp8\",\"weight_block_size\":[0,128]}}",
	         base);
	expect_fail(buf, FASVD_EARCH, "weight_block_size[0]", NULL);
	snprintf(buf, sizeof buf, "%s{\"weight_block_size\":[128,\"128\"]}}", base);
	expect_fail(buf, FASVD_EARCH, "weight_block_size[1]", "a string", NULL);
	snprintf(buf, sizeof buf, "%s{\"quant_method\":\"gptq\",\"bits\":4}}", base);
	expect_fail(buf, FASVD_EARCH, "quant_method", "gptq", NULL);
	snprintf(buf, sizeof buf, "%s[1,2]}", base);
	expect_fail(buf, FASVD_EARCH, "quantization_config", "an array", NULL);
	/* null quantization_config: not quantised. */
	fasvd__config cfg;
	snprintf(buf, sizeof buf, "%snull}", base);
	assert_ok(parse(&cfg, buf));
	assert_int_equal(cfg.block_rows, 0);
	fasvd__config_clear(NULL, &cfg);
	/* Non-square blocks are accepted as written. */
	snprintf(buf, sizeof buf, "%s{\"quant_method\":\"fp8\",\"weight_block_size\":[64,32]}}",
	         base);
	assert_ok(parse(&cfg, buf));
	assert_int_equal(cfg.block_rows, 64);
	assert_int_equal(cfg.block_cols, 32);
	fasvd__config_clear(NULL, &cfg);
}

static void test_missing_zero_bad_values(void **state)
{
	(void)state;
	expect_fail("{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"num_attention_heads\":4}",
	            FASVD_EARCH, "'hidden_size'", "missing", NULL);
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":null,\"num_hidden_layers\":2,"
	            "\"num_attention_heads\":4}",
	            FASVD_EARCH, "'hidden_size'", "null", NULL);
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":0,"
	            "\"num_attention_heads\":4}",
	            FASVD_EARCH, "'num_hidden_layers'", "= 0", NULL);
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
	            "\"num_attention_heads\":-4}",
	            FASVD_EARCH, "'num_attention_heads'", "-4", NULL);
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":64.5,\"num_hidden_layers\":2,"
	            "\"num_attention_heads\":4}",
	            FASVD_EARCH, "'hidden_size'", "64.5", NULL);
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":\"64\",\"num_hidden_layers\":2,"
	            "\"num_attention_heads\":4}",
	            FASVD_EARCH, "'hidden_size'", "a string", NULL);
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":true,\"num_hidden_layers\":2,"
	            "\"num_attention_heads\":4}",
	            FASVD_EARCH, "'hidden_size'", "a boolean", NULL);
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
	            "\"num_attention_heads\":4,\"head_dim\":0}",
	            FASVD_EARCH, "'head_dim'", NULL);
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":99999999999,\"num_hidden_layers\":2,"
	            "\"num_attention_heads\":4}",
	            FASVD_EARCH, "'hidden_size'", NULL);
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":1e300,\"num_hidden_layers\":2,"
	            "\"num_attention_heads\":4}",
	            FASVD_EARCH, "'hidden_size'", NULL);
}

static void test_inconsistent(void **state)
{
	(void)state;
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
	            "\"num_attention_heads\":8,\"num_key_value_heads\":3}",
	            FASVD_EARCH, "'num_attention_heads' = 8", "'num_key_value_heads' = 3", NULL);
	expect_fail("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
	            "\"num_attention_heads\":6}",
	            FASVD_EARCH, "'hidden_size' = 64", "'num_attention_heads' = 6", "head_dim", NULL);
	/* With an explicit head_dim the division is not needed. */
	fasvd__config cfg;
	assert_ok(parse(&cfg, "{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
	                      "\"num_attention_heads\":6,\"head_dim\":8}"));
	assert_int_equal(cfg.head_dim, 8);
	fasvd__config_clear(NULL, &cfg);
}

static void test_unknown_arch(void **state)
{
	(void)state;
	expect_fail("{\"model_type\":\"mamba\",\"hidden_size\":64}", FASVD_EARCH, "\"mamba\"",
	            "not supported", "deepseek_v3", "llama", "gpt2", "bert", "kimi_k2", NULL);
	expect_fail("{\"hidden_size\":64}", FASVD_EARCH, "'model_type'", "missing", "llama", NULL);
	expect_fail("{\"model_type\":7}", FASVD_EARCH, "'model_type'", "an integer", NULL);
	/* A known class name stands in for a missing model_type. */
	fasvd__config cfg;
	assert_ok(parse(&cfg, "{\"architectures\":[\"Foo\",\"Qwen2ForCausalLM\"],\"hidden_size\":64,"
	                      "\"num_hidden_layers\":1,\"num_attention_heads\":4,"
	                      "\"num_key_value_heads\":2}"));
	assert_string_equal(cfg.arch->name, "qwen2");
	assert_string_equal(cfg.model_type, "qwen2");
	fasvd__config_clear(NULL, &cfg);
}

static void test_not_json(void **state)
{
	(void)state;
	expect_fail("{\"model_type\": \"llama\",", FASVD_EFORMAT, "not valid JSON", NULL);
	expect_fail("[1, 2]", FASVD_EFORMAT, "an array", NULL);
	expect_fail("", FASVD_EFORMAT, NULL);
	expect_fail("{\"model_type\":\"llama\",\"model_type\":\"gpt2\"}", FASVD_EFORMAT,
	            "duplicate", NULL);
	/* the key is named however long it is (jansson quotes only short ones) */
	expect_fail("{\"model_type\":\"llama\",\n\"num_attention_heads_of_the_model\":4,\n"
	            "\"num_attention_heads_of_the_model\":8}",
	            FASVD_EFORMAT, "duplicate name 'num_attention_heads_of_the_model'", "line 3",
	            NULL);
	/* Invalid UTF-8 */
	expect_fail("{\"model_type\":\"ll\xff\"}", FASVD_EFORMAT, NULL);
}

static void test_nested_text_config(void **state)
{
	(void)state;
	fasvd__config cfg;
	/* Gemma-3 multimodal: the text model's keys nested, defaults omitted. */
	assert_ok(parse(&cfg, "{\"architectures\":[\"Gemma3ForConditionalGeneration\"],"
	                      "\"model_type\":\"gemma3\",\"text_config\":{\"hidden_size\":2560,"
	                      "\"model_type\":\"gemma3_text\",\"num_hidden_layers\":34},"
	                      "\"vision_config\":{\"hidden_size\":1152}}"));
	assert_string_equal(cfg.arch->name, "gemma3");
	assert_true(cfg.nested);
	assert_int_equal(cfg.hidden, 2560);
	assert_int_equal(cfg.n_layers, 34);
	assert_int_equal(cfg.n_heads, 8);
	assert_int_equal(cfg.n_kv_heads, 4);
	assert_int_equal(cfg.head_dim, 256);
	assert_int_equal(cfg.arch->norm, FASVD_NORM_RMS_GEMMA);
	fasvd__config_clear(NULL, &cfg);
	/* An unknown wrapper around a known text model. */
	assert_ok(parse(&cfg, "{\"model_type\":\"llava\",\"text_config\":{\"model_type\":\"llama\","
	                      "\"hidden_size\":128,\"num_hidden_layers\":3,"
	                      "\"num_attention_heads\":4}}"));
	assert_string_equal(cfg.arch->name, "llama");
	assert_string_equal(cfg.model_type, "llama");
	assert_int_equal(cfg.hidden, 128);
	fasvd__config_clear(NULL, &cfg);
	/* Nested errors say where the key was read. */
	expect_fail("{\"model_type\":\"gemma3\",\"text_config\":{\"hidden_size\":0,"
	            "\"num_hidden_layers\":2}}",
	            FASVD_EARCH, "'text_config.hidden_size'", NULL);
}

struct fifo_unblocker {
	char path[128];
	int done;   /* set once the open returned */
	int needed; /* set when the helper had to open the writer end */
};

static void *unblock_fifo(void *p)
{
	struct fifo_unblocker *u = p;
	for (int i = 0; i < 1000 && !__atomic_load_n(&u->done, __ATOMIC_ACQUIRE); i++)
		usleep(10000);
	if (!__atomic_load_n(&u->done, __ATOMIC_ACQUIRE)) {
		u->needed = 1;
		int fd = open(u->path, O_WRONLY | O_NONBLOCK);
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

static void test_load_errors(void **state)
{
	(void)state;
	fasvd__config cfg;
	assert_fasvd(fasvd__config_load(NULL, &cfg, "/nonexistent/dir/config.json"),
	             FASVD_ENOTFOUND);
	assert_non_null(strstr(fasvd_last_error(), "/nonexistent/dir/config.json"));
	assert_fasvd(fasvd__config_load(NULL, &cfg, NULL), FASVD_EINVAL);
	assert_fasvd(fasvd__config_parse(NULL, NULL, "{}", 2, "x"), FASVD_EINVAL);
	/* A directory is not a readable config. */
	assert_true(fasvd__config_load(NULL, &cfg, "/") < 0);
	/* Nor is a FIFO, refused at once (opening one without a writer
	 * blocked forever); a helper opens the writer end after ten seconds so
	 * that a blocking open fails this test rather than hanging it. */
	char dir[] = "/tmp/fasvd-test-config-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct fifo_unblocker u = {.done = 0, .needed = 0};
	snprintf(u.path, sizeof u.path, "%s/config.json", dir);
	assert_int_equal(mkfifo(u.path, 0600), 0);
	pthread_t tid;
	assert_int_equal(pthread_create(&tid, NULL, unblock_fifo, &u), 0);
	int rc = fasvd__config_load(NULL, &cfg, u.path);
	__atomic_store_n(&u.done, 1, __ATOMIC_RELEASE);
	pthread_join(tid, NULL);
	unlink(u.path);
	rmdir(dir);
	assert_int_equal(u.needed, 0);
	assert_int_equal(rc, FASVD_EIO);
	assert_non_null(strstr(fasvd_last_error(), "not a regular file"));
	assert_non_null(strstr(fasvd_last_error(), u.path));
}

static void test_alloc_failures(void **state)
{
	(void)state;
	/* Every allocation failing in turn gives ENOMEM and leaks nothing. */
	for (long k = 1; k < 64; k++) {
		test_alloc_state st = {0, 0, 0, 0};
		fasvd_allocator al = {test_alloc_fn, test_free_fn, &st};
		fasvd_ctx *ctx;
		assert_ok(fasvd_ctx_new(&ctx, &al));
		st.fail_at = st.allocs + k;
		fasvd__config cfg;
		int rc = fasvd__config_parse(ctx, &cfg, dsv3, strlen(dsv3), LABEL);
		if (rc == 0)
			fasvd__config_clear(ctx, &cfg);
		else
			assert_int_equal(rc, FASVD_ENOMEM);
		fasvd_ctx_free(ctx);
		bool failed = st.allocs >= st.fail_at;
		assert_int_equal(st.allocs - (failed ? 1 : 0), st.frees);
		if (rc == 0) {
			assert_false(failed);
			break;
		}
	}
}

static void test_arch_table(void **state)
{
	(void)state;
	const char *want[] = {"deepseek_v2", "deepseek_v3", "kimi_k2", "llama", "mistral",
	                      "qwen2", "qwen3", "gemma", "gemma2", "gemma3",
	                      "phi3", "gpt2", "gpt_neox", "bert"};
	assert_int_equal(fasvd_arch_count(), (int64_t)(sizeof want / sizeof want[0]));
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		assert_string_equal(fasvd_arch_name((int64_t)i), want[i]);
		assert_int_equal(fasvd_arch_supported(want[i]), 1);
		const fasvd__arch *a = fasvd__arch_find(want[i]);
		assert_non_null(a);
		assert_non_null(a->prefixes[0]);
		assert_non_null(strstr(a->prefixes[0], "%d"));
		assert_non_null(a->suffix[FASVD__R_O]);
		switch (a->layout) {
		case FASVD__LAYOUT_SEPARATE:
			assert_non_null(a->suffix[FASVD__R_Q]);
			assert_non_null(a->suffix[FASVD__R_K]);
			assert_non_null(a->suffix[FASVD__R_V]);
			break;
		case FASVD__LAYOUT_QKV_ROWS:
		case FASVD__LAYOUT_CONV1D:
		case FASVD__LAYOUT_QKV_HEADS:
			assert_non_null(a->suffix[FASVD__R_QKV]);
			break;
		case FASVD__LAYOUT_MLA:
			for (int r = FASVD__R_QA; r <= FASVD__R_KVB; r++)
				assert_non_null(a->suffix[r]);
			assert_non_null(a->suffix[FASVD__R_Q]);
			assert_non_null(a->suffix[FASVD__R_QA_NORM]);
			assert_non_null(a->suffix[FASVD__R_KVA_NORM]);
			break;
		}
		if (a->norm != FASVD_NORM_NONE)
			assert_non_null(a->suffix[FASVD__R_IN_NORM]);
	}
	assert_null(fasvd_arch_name(-1));
	assert_null(fasvd_arch_name(fasvd_arch_count()));
	assert_int_equal(fasvd_arch_supported("mixtral"), 1);
	assert_int_equal(fasvd_arch_supported("gemma3_text"), 1);
	assert_int_equal(fasvd_arch_supported("deepseek"), 0);
	assert_int_equal(fasvd_arch_supported("llam"), 0);
	assert_int_equal(fasvd_arch_supported(""), 0);
	assert_int_equal(fasvd_arch_supported(NULL), 0);
	assert_string_equal(fasvd__arch_find("qwen3_moe")->name, "qwen3");
	assert_string_equal(fasvd__arch_find_class("GPT2LMHeadModel")->name, "gpt2");
	assert_null(fasvd__arch_find_class("GPT2"));
	char list[512];
	fasvd__arch_list(list, sizeof list);
	assert_string_equal(list, "deepseek_v2, deepseek_v3, kimi_k2, llama, mistral, qwen2, "
	                          "qwen3, gemma, gemma2, gemma3, phi3, gpt2, gpt_neox, bert");
	char tiny[8];
	fasvd__arch_list(tiny, sizeof tiny); /* truncates, stays terminated */
	assert_true(strlen(tiny) < sizeof tiny);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stories_config),
		cmocka_unit_test(test_defaults_and_head_dim),
		cmocka_unit_test(test_gpt2_bert_neox),
		cmocka_unit_test(test_mla),
		cmocka_unit_test(test_quantization_errors),
		cmocka_unit_test(test_missing_zero_bad_values),
		cmocka_unit_test(test_inconsistent),
		cmocka_unit_test(test_unknown_arch),
		cmocka_unit_test(test_not_json),
		cmocka_unit_test(test_nested_text_config),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_arch_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
