/* fuzz-config: config.json parsing, architecture detection and the
 * config-versus-checkpoint checks of fasvd_model_open, then the layer
 * adapters (fasvd_model_layer_open) and the layer engine on what they build.
 *
 * At start-up one tiny valid checkpoint of every supported architecture is
 * written with fasvd_fixture_write() into the scratch folder (dimensions
 * below). Input layout:
 *   byte 0   which fixture (index into fasvd_arch_name(), modulo the count)
 *   byte 1   flags: bit 0 FASVD_MODEL_REQUIRE_ALL; bit 1 fold_norms = 0;
 *            bit 2 compute the layer spectra of the layers opened;
 *            bit 3 FASVD_COMPUTE_F64
 *   bytes 2.. the fixture's config.json (replaced for this input).
 * Seeds: tests/fuzz/gen-corpus.py runs this target with
 * FUZZ_CONFIG_SEED_DIR=DIR set, which makes the initialisation also write
 * every fixture's own config.json there as a valid seed, then derives
 * invalid ones from them.
 */
#include "fuzz-common.h"
#include "fixture.h"

#define MAX_ARCHS 64
#define MAX_LAYERS_OPENED 3

static char dirs[MAX_ARCHS][4200];
static int64_t n_archs;

/* Small dimensions valid for every architecture: head_dim = hidden / heads
 * (for those without a head_dim key), GQA 4 heads over 2 KV heads where the
 * family has it, MLA ranks above the FP8 block (4) so that edge blocks are
 * partial. */
static void fixture_opts(fasvd_fixture_opts *o, const char *arch)
{
	fasvd_fixture_opts_init(o, sizeof *o);
	o->n_layers = 2;
	o->n_heads = 4;
	o->hidden = 32;
	o->head_dim = 8;
	o->intermediate = -1;
	o->block_size = 4;
	o->rank = 2;
	if (!strncmp(arch, "deepseek", 8) || !strcmp(arch, "kimi_k2")) {
		o->head_dim = 0;
		o->q_lora_rank = strcmp(arch, "deepseek_v2") == 0 ? 0 : 12;
		o->kv_lora_rank = 10;
		o->qk_nope_head_dim = 6;
		o->qk_rope_head_dim = 4;
		o->v_head_dim = 5;
		o->n_shards = 2;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *root = fuzz_tmpdir();
	const char *seed_dir = getenv("FUZZ_CONFIG_SEED_DIR");
	n_archs = fasvd_arch_count();
	if (n_archs > MAX_ARCHS)
		n_archs = MAX_ARCHS;
	for (int64_t i = 0; i < n_archs; i++) {
		const char *arch = fasvd_arch_name(i);
		snprintf(dirs[i], sizeof dirs[i], "%.4000s/%.64s", root, arch);
		fasvd_fixture_opts o;
		fixture_opts(&o, arch);
		int rc = fasvd_fixture_write(NULL, dirs[i], arch, &o);
		if (rc) {
			fprintf(stderr, "fuzz-config: cannot write the %s fixture: %s\n", arch,
			        fasvd_last_error());
			exit(1);
		}
		if (seed_dir) {
			/* Seed = fixture byte, flags 0x04 (spectra), the config. */
			char path[4400], out[4400];
			snprintf(path, sizeof path, "%.4200s/config.json", dirs[i]);
			FILE *f = fopen(path, "rb");
			snprintf(out, sizeof out, "%.4000s/valid-%.64s", seed_dir, arch);
			FILE *g = fopen(out, "wb");
			if (!f || !g) {
				fprintf(stderr, "fuzz-config: cannot copy %s to %s\n", path, out);
				exit(1);
			}
			fputc((int)i, g);
			fputc(0x04, g);
			int ch;
			while ((ch = fgetc(f)) != EOF)
				fputc(ch, g);
			fclose(f);
			fclose(g);
		}
	}
	return 0;
}

static void check_layer(fasvd_model *m, int64_t layer, unsigned flags)
{
	fasvd_model_layer_opts lo;
	fasvd_model_layer_opts_init(&lo, sizeof lo);
	lo.fold_norms = !(flags & 2);
	fasvd_model_layer *l = (fasvd_model_layer *)1;
	int rc = fasvd_model_layer_open(&l, m, layer, &lo);
	if (rc) {
		fuzz_check_error(rc, "fasvd_model_layer_open");
		FUZZ_CHECK(l == NULL, "*out not NULL on failure");
		return;
	}
	FUZZ_CHECK(fasvd_model_layer_index(l) == layer, "layer index");
	const fasvd_layer_desc *d = fasvd_model_layer_desc(l);
	FUZZ_CHECK(d != NULL, "no desc");
	const fasvd_heads *hs[] = {d->q, d->q_pe, d->k, d->v, d->o};
	for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
		if (!hs[i])
			continue;
		int64_t r = fasvd_heads_rows(hs[i]), c = fasvd_heads_cols(hs[i]);
		int64_t n = fasvd_heads_count(hs[i]);
		FUZZ_CHECK(r >= 1 && c >= 1 && n >= 1, "heads %zu: %lld x %lld x %lld", i,
		           (long long)n, (long long)r, (long long)c);
		if (r * c > FUZZ_MAX_DECODE)
			continue;
		double *buf = malloc((size_t)(r * c) * sizeof *buf);
		FUZZ_CHECK(buf, "out of memory");
		for (int64_t h = 0; h < n; h += n - 1 > 0 ? n - 1 : 1) {
			rc = fasvd_heads_decode_f64(buf, c, FASVD_LAYOUT_ROW_MAJOR, hs[i], h);
			if (rc)
				fuzz_check_error(rc, "fasvd_heads_decode_f64");
		}
		free(buf);
	}
	if (flags & 4) {
		fasvd_layer_opts o;
		fasvd_layer_opts_init(&o, sizeof o);
		o.compute = (flags & 8) ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
		fasvd_spectra *s = (fasvd_spectra *)1;
		rc = fasvd_layer_spectra(&s, NULL, d, &o);
		if (rc) {
			fuzz_check_error(rc, "fasvd_layer_spectra");
			FUZZ_CHECK(s == NULL, "*out not NULL on failure");
		} else {
			int64_t n = fasvd_spectra_count(s);
			for (int64_t i = 0; i < n; i++) {
				int64_t nr, nc;
				FUZZ_CHECK(fasvd_spectra_shape(&nr, &nc, NULL, NULL, s, i) == 0, "shape");
				const double *v = fasvd_spectra_data(s, i);
				for (int64_t j = 0; j < nr * nc; j++)
					FUZZ_CHECK(v[j] >= 0 && isfinite(v[j]), "%s[%lld] = %g",
					           fasvd_spectra_name(s, i), (long long)j, v[j]);
			}
			fasvd_spectra_free(s);
		}
	}
	fasvd_model_layer_free(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > (1u << 16) || n_archs == 0)
		return 0;
	const char *dir = dirs[data[0] % n_archs];
	unsigned flags = data[1];
	char path[4400];
	snprintf(path, sizeof path, "%s/config.json", dir);
	fuzz_write_file(path, data + 2, size - 2);

	fasvd_model *m = (fasvd_model *)1;
	fasvd_clear_error();
	int rc = fasvd_model_open(&m, NULL, dir, (flags & 1) ? FASVD_MODEL_REQUIRE_ALL : 0);
	if (rc) {
		fuzz_check_error(rc, "fasvd_model_open");
		FUZZ_CHECK(m == NULL, "*out not NULL on failure");
		return 0;
	}
	fasvd_model_info info;
	fasvd_model_info_init(&info, sizeof info);
	FUZZ_CHECK(fasvd_model_info_get(&info, m) == 0, "info: %s", fasvd_last_error());
	FUZZ_CHECK(info.model_type && info.arch && fasvd_arch_supported(info.arch),
	           "model_type/arch");
	FUZZ_CHECK(info.n_layers >= 1 && info.n_heads >= 1 && info.n_kv_heads >= 1 &&
	                   info.n_heads % info.n_kv_heads == 0 && info.hidden >= 1,
	           "dimensions L %lld H %lld KV %lld hidden %lld accepted", (long long)info.n_layers,
	           (long long)info.n_heads, (long long)info.n_kv_heads, (long long)info.hidden);
	FUZZ_CHECK(info.n_missing >= 0 && info.n_missing <= info.n_needed, "missing %lld of %lld",
	           (long long)info.n_missing, (long long)info.n_needed);
	FUZZ_CHECK(fasvd_model_config_json(m) != NULL, "config text");
	int64_t n_in = fasvd_model_input_count(m);
	for (int64_t i = 0; i < n_in && i < 4096; i++) {
		fasvd_model_input in;
		fasvd_model_input_init(&in, sizeof in);
		FUZZ_CHECK(fasvd_model_input_get(&in, m, i) == 0, "input %lld: %s", (long long)i,
		           fasvd_last_error());
		FUZZ_CHECK(in.role && in.name, "input %lld has no role/name", (long long)i);
		FUZZ_CHECK(in.layer >= 0 && in.layer < info.n_layers, "input layer %lld",
		           (long long)in.layer);
	}
	for (int64_t layer = 0; layer < info.n_layers && layer < MAX_LAYERS_OPENED; layer++) {
		int64_t first, count;
		FUZZ_CHECK(fasvd_model_layer_inputs(&first, &count, m, layer) == 0 && first >= 0 &&
		                   first + count <= n_in,
		           "layer inputs of %lld", (long long)layer);
		check_layer(m, layer, flags);
	}
	fasvd_model_layer *l = (fasvd_model_layer *)1;
	FUZZ_CHECK(fasvd_model_layer_open(&l, m, info.n_layers, NULL) == FASVD_EINVAL && l == NULL,
	           "layer n_layers accepted");
	fasvd_model_free(m);
	return 0;
}
