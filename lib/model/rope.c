/* libfasvd — rotary position embeddings of a model (config.json): which
 * rows of a head are rotated together, at which frequency. Every
 * architecture read from safetensors with RoPE applies it as Hugging Face's
 * rotate_half: row i pairs with row i + d/2 of the first d = head_dim ·
 * partial factor rows of each head; MLA's rope rows (qk_rope_head_dim) pair
 * rows 2i and 2i + 1 instead. Pair i turns at the inverse frequency
 * θ^(−2i/d) (scaled per rope_scaling: linear, llama3, YaRN). */
#include "model/model_int.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

typedef struct rope_src {
	const char *label;
	const json_t *root, *text;
	const char *arch;
} rope_src;

/* A key from text_config first, then the top level (as config.c reads). */
static const json_t *rget(const rope_src *s, const char *key)
{
	const json_t *v = s->text ? json_object_get(s->text, key) : NULL;
	return v ? v : json_object_get(s->root, key);
}

/* A number key (integers accepted); def when absent or null. */
static int rnum(const rope_src *s, const json_t *obj, const char *key, double def, double *out)
{
	const json_t *v = obj ? json_object_get(obj, key) : rget(s, key);
	*out = def;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v) || !isfinite(json_number_value(v)))
		return fasvd__error(FASVD_EARCH, "%s: key '%s' is not a finite number", s->label, key);
	*out = json_number_value(v);
	return 0;
}

/* Gemma3 layers with sliding-window attention use rope_local_base_freq
 * and no scaling: layer_types when given, else every sliding_window_pattern-th
 * layer (default 6) is global. */
static int gemma3_sliding(const rope_src *s, int64_t layer, bool *sliding)
{
	const json_t *types = rget(s, "layer_types");
	if (json_is_array(types)) {
		const json_t *t = json_array_get(types, (size_t)layer);
		if (!json_is_string(t))
			return fasvd__error(FASVD_EARCH, "%s: 'layer_types' has no string for layer %lld",
			                    s->label, (long long)layer);
		*sliding = strcmp(json_string_value(t), "sliding_attention") == 0;
		return 0;
	}
	double pat;
	int rc = rnum(s, NULL, "sliding_window_pattern", 6, &pat);
	if (rc)
		return rc;
	*sliding = pat >= 1 && (layer + 1) % (int64_t)pat != 0;
	return 0;
}

/* Llama 3.1 frequency-dependent scaling (transformers'
 * _compute_llama3_parameters). */
static int scale_llama3(const rope_src *s, const json_t *sc, double factor, double *f, int64_t n)
{
	double lo, hi, old;
	int rc;
	if ((rc = rnum(s, sc, "low_freq_factor", 1, &lo)) ||
	    (rc = rnum(s, sc, "high_freq_factor", 4, &hi)) ||
	    (rc = rnum(s, sc, "original_max_position_embeddings", 8192, &old)))
		return rc;
	if (!(hi > lo))
		return fasvd__error(FASVD_EARCH, "%s: llama3 rope scaling needs high_freq_factor > "
		                    "low_freq_factor", s->label);
	double lo_wl = old / lo, hi_wl = old / hi;
	for (int64_t i = 0; i < n; i++) {
		double wl = 2 * M_PI / f[i];
		if (wl > lo_wl) {
			f[i] /= factor;
		} else if (wl >= hi_wl) {
			double sm = (old / wl - lo) / (hi - lo);
			f[i] = (1 - sm) * f[i] / factor + sm * f[i];
		}
	}
	return 0;
}

/* The dimension (of d rotated rows, base theta) whose pair turns
 * `rot` times over `len` positions (YaRN's find_correction_dim). */
static double yarn_dim(double rot, double d, double theta, double len)
{
	return d * log(len / (rot * 2 * M_PI)) / (2 * log(theta));
}

/* YaRN (transformers' _compute_yarn_parameters): pairs below the
 * beta_fast correction dimension keep their frequency, pairs above the
 * beta_slow one are interpolated (θ_i / factor), with a linear ramp in
 * between. The attention factor (mscale) multiplies cos and sin alike, so
 * the whole QK form of a layer by a positive constant: it is left out
 * (docs/architectures.md), as QK@0 must equal QK. */
static int scale_yarn(const rope_src *s, const json_t *sc, double factor, double *f, int64_t d,
                      double theta)
{
	double fast, slow, len;
	int rc;
	if ((rc = rnum(s, sc, "beta_fast", 32, &fast)) || (rc = rnum(s, sc, "beta_slow", 1, &slow)) ||
	    (rc = rnum(s, NULL, "max_position_embeddings", 0, &len)) ||
	    (rc = rnum(s, sc, "original_max_position_embeddings", len, &len)))
		return rc;
	const json_t *tr = json_object_get(sc, "truncate");
	if (!(len > 0) || !(fast > 0) || !(slow > 0))
		return fasvd__error(FASVD_EARCH, "%s: yarn rope scaling needs positive beta_fast, "
		                    "beta_slow and original_max_position_embeddings (or "
		                    "max_position_embeddings)", s->label);
	double lo = yarn_dim(fast, (double)d, theta, len);
	double hi = yarn_dim(slow, (double)d, theta, len);
	if (!json_is_false(tr)) {
		lo = floor(lo);
		hi = ceil(hi);
	}
	lo = fmax(lo, 0);
	hi = fmin(hi, (double)(d - 1));
	if (lo == hi)
		hi += 0.001;
	for (int64_t i = 0; i < d / 2; i++) {
		double ramp = fmin(fmax(((double)i - lo) / (hi - lo), 0), 1);
		f[i] = f[i] / factor * ramp + f[i] * (1 - ramp);
	}
	return 0;
}

/* Apply rope_scaling (or rope_parameters' type) to the inverse
 * frequencies of d rotated rows at base theta; unknown types are refused
 * rather than guessed. */
static int apply_scaling(const rope_src *s, const json_t *sc, double *f, int64_t d, double theta)
{
	int64_t n = d / 2;
	if (!sc || json_is_null(sc))
		return 0;
	if (!json_is_object(sc))
		return fasvd__error(FASVD_EARCH, "%s: 'rope_scaling' is not an object", s->label);
	const json_t *t = json_object_get(sc, "rope_type");
	if (!t)
		t = json_object_get(sc, "type");
	const char *type = json_is_string(t) ? json_string_value(t) : "default";
	if (strcmp(type, "default") == 0)
		return 0;
	double factor, len, old;
	int rc = rnum(s, sc, "factor", 1, &factor);
	if (rc)
		return rc;
	/* YaRN without a factor: the context extension it was set up for. */
	if (strcmp(type, "yarn") == 0 && !json_object_get(sc, "factor") &&
	    ((rc = rnum(s, NULL, "max_position_embeddings", 0, &len)) ||
	     (rc = rnum(s, sc, "original_max_position_embeddings", 0, &old))))
		return rc;
	if (strcmp(type, "yarn") == 0 && !json_object_get(sc, "factor"))
		factor = old > 0 ? len / old : 0;
	if (!(factor > 0))
		return fasvd__error(FASVD_EARCH, "%s: rope scaling factor %g is not positive",
		                    s->label, factor);
	if (strcmp(type, "linear") == 0) {
		for (int64_t i = 0; i < n; i++)
			f[i] /= factor;
		return 0;
	}
	if (strcmp(type, "llama3") == 0)
		return scale_llama3(s, sc, factor, f, n);
	if (strcmp(type, "yarn") == 0)
		return scale_yarn(s, sc, factor, f, d, theta);
	return fasvd__error(FASVD_EARCH, "%s: rope scaling type '%s' is not supported (default, "
	                    "linear, llama3 and yarn are)", s->label, type);
}

/* rope_theta (rope_parameters.rope_theta, rotary_emb_base for GPT-NeoX),
 * the rotated fraction and the scaling object of `layer`. */
static int rope_params(const rope_src *s, int64_t layer, double *theta, double *frac,
                       const json_t **scaling)
{
	const json_t *par = rget(s, "rope_parameters");
	bool neox = strcmp(s->arch, "gpt_neox") == 0, g3 = strcmp(s->arch, "gemma3") == 0;
	int rc;
	*scaling = json_is_object(par) ? par : rget(s, "rope_scaling");
	if ((rc = rnum(s, json_is_object(par) ? par : NULL, "rope_theta", g3 ? 1e6 : 1e4, theta)))
		return rc;
	if (neox && !rget(s, "rope_theta") && (rc = rnum(s, NULL, "rotary_emb_base", 1e4, theta)))
		return rc;
	if ((rc = rnum(s, NULL, neox ? "rotary_pct" : "partial_rotary_factor", neox ? 0.25 : 1,
	               frac)))
		return rc;
	if (neox && rget(s, "partial_rotary_factor") &&
	    (rc = rnum(s, NULL, "partial_rotary_factor", 0.25, frac)))
		return rc;
	bool sliding = false;
	if (g3 && (rc = gemma3_sliding(s, layer, &sliding)))
		return rc;
	if (sliding) {
		*scaling = NULL;
		return rnum(s, NULL, "rope_local_base_freq", 1e4, theta);
	}
	return 0;
}

static int fill_pairs(fasvd_ctx *ctx, fasvd__rope *r, const rope_src *s, int64_t layer,
                      int64_t head_dim, bool interleave)
{
	double theta, frac;
	const json_t *scaling;
	int rc = rope_params(s, layer, &theta, &frac, &scaling);
	if (rc)
		return rc;
	int64_t d = (int64_t)(head_dim * frac);
	if (!(theta > 0) || !(frac > 0 && frac <= 1) || d < 2)
		return fasvd__error(FASVD_EARCH, "%s: rope base %g and rotary fraction %g give no "
		                    "rotated pairs in a head of %lld", s->label, theta, frac,
		                    (long long)head_dim);
	r->n_pairs = d / 2;
	r->a = fasvd__calloc(ctx, (size_t)r->n_pairs, sizeof *r->a, "rope pairs");
	r->b = fasvd__calloc(ctx, (size_t)r->n_pairs, sizeof *r->b, "rope pairs");
	r->inv_freq = fasvd__calloc(ctx, (size_t)r->n_pairs, sizeof(double), "rope pairs");
	if (!r->a || !r->b || !r->inv_freq)
		return FASVD_ENOMEM;
	for (int64_t i = 0; i < r->n_pairs; i++) {
		r->a[i] = interleave ? 2 * i : i;
		r->b[i] = interleave ? 2 * i + 1 : i + d / 2;
		r->inv_freq[i] = pow(theta, -(double)(2 * i) / (double)d);
	}
	return apply_scaling(s, scaling, r->inv_freq, d, theta);
}

int fasvd__config_rope(fasvd_ctx *ctx, fasvd__rope *r, const fasvd__config *cfg, bool gguf,
                       int64_t head_dim, int64_t layer)
{
	memset(r, 0, sizeof *r);
	const char *arch = cfg->arch->name;
	if (gguf)
		return fasvd__error(FASVD_EARCH, "%s: rotary offsets are not read from GGUF files "
		                    "(whose Q/K rows may be permuted); use the safetensors "
		                    "checkpoint", cfg->label);
	if (strcmp(arch, "gpt2") == 0 || strcmp(arch, "bert") == 0)
		return fasvd__error(FASVD_EARCH, "%s: %s has no rotary position embedding (its "
		                    "positions are absolute): rotary offsets do not apply",
		                    cfg->label, arch);
	json_error_t err;
	json_t *root = json_loads(cfg->text, 0, &err);
	if (!root)
		return fasvd__error(FASVD_EFORMAT, "%s: %s", cfg->label, err.text);
	const json_t *tc = json_object_get(root, "text_config");
	rope_src s = {cfg->label, root, cfg->nested && json_is_object(tc) ? tc : NULL, arch};
	/* MLA rotates q_pe and k_pe in interleaved pairs (2i, 2i + 1): the
	 * DeepSeek reference multiplies complex pairs, transformers
	 * de-interleaves before rotate_half unless rope_interleave is false. */
	bool interleave = fasvd__arch_is_mla(cfg->arch) && !json_is_false(rget(&s, "rope_interleave"));
	int rc = fill_pairs(ctx, r, &s, layer, head_dim, interleave);
	json_decref(root);
	if (rc)
		fasvd__rope_clear(ctx, r);
	return rc;
}

void fasvd__rope_clear(fasvd_ctx *ctx, fasvd__rope *r)
{
	fasvd__free(ctx, r->a);
	fasvd__free(ctx, r->b);
	fasvd__free(ctx, r->inv_freq);
	memset(r, 0, sizeof *r);
}
