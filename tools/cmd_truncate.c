/* fasvd truncate — write a checkpoint whose selected weights are replaced by
 * low-rank factors (fasvd_truncate, include/fasvd/truncate.h). */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
        "usage: fasvd truncate MODEL_DIR -o OUT_DIR (--rank R | --energy-loss TAU) [options]\n"
        "\n"
        "Write a copy of the checkpoint in MODEL_DIR to OUT_DIR in which every selected\n"
        "weight W is replaced by two tensors W.A and W.B with W ~= W.A @ W.B: with the\n"
        "exact backends (every one but randomized, the default auto included) the best\n"
        "rank-r approximation (truncated SVD). The rank is R (clamped to min(rows, cols)),\n"
        "or the smallest rank whose energy loss is at most TAU, where the energy loss\n"
        "sum_{i>r} sigma_i^2 / sum_i sigma_i^2 is a fraction of the SQUARED Frobenius norm.\n"
        "A weight whose factors would not be smaller (rank * (rows + cols) >= rows * cols)\n"
        "stays dense, with a line saying so (--allow-larger replaces it anyway); when no\n"
        "selected weight would be smaller, nothing is written and the command fails.\n"
        "\n"
        "Every other tensor is copied byte for byte, into a shard of the same name as its\n"
        "input shard (the index is rewritten); FP8 weights are dequantised with their\n"
        "_scale_inv, which is removed with them. config.json gets a \"fasvd_lowrank\"\n"
        "section listing each replaced tensor: {\"A\", \"B\", \"rank\", \"heads\", \"inner\", ...};\n"
        "the rest of its text is kept byte for byte. rank 0 (TAU = 1) gives zero factors\n"
        "of inner dimension 1. Other files of MODEL_DIR and its subfolders (tokenizer,\n"
        "1_Pooling/ ...) are copied; other weight formats (*.bin, *.pt ...) are not.\n"
        "The output is written to a temporary folder renamed to OUT_DIR at the end:\n"
        "a failure leaves nothing. OUT_DIR must not exist (or be empty); a symbolic\n"
        "link stays, and the folder it names (a new or empty one) is written.\n"
        "\n"
        "MODEL_DIR may be a GGUF model (FILE.gguf, a split set's first part, or a folder\n"
        "holding one): OUT_DIR then holds only its attention weights and norms, dequantised\n"
        "exactly (factors f32 by default), named as the Hugging Face checkpoint names\n"
        "them, and a config.json synthesised from the metadata (docs/gguf.md).\n"
        "\n"
        "Options:\n"
        "  -o, --output DIR       output model folder (required)\n"
        "  --rank R               truncate every selected weight to rank R (>= 0)\n"
        "  --energy-loss TAU      smallest rank losing at most TAU of the squared\n"
        "                         Frobenius norm, TAU in [0, 1] (e.g. 0.01)\n"
        "  --max-rank N           with --energy-loss: never more than rank N\n"
        "  --tensors GLOB[,...]   tensors to replace (shell globs on tensor names,\n"
        "                         repeatable; 2-D float weights only); default: every\n"
        "                         attention projection weight of the detected architecture\n"
        "  --per-head             factorise each head's rows separately: A [h, rows/h, r],\n"
        "                         B [h, r, cols] (q/k/v_proj, q_b_proj, kv_b_proj, qkv)\n"
        "  --shared-o             o_proj ~= A @ B with A the output basis shared by all\n"
        "                         heads (orthonormal; MLA-o) and B's column block k head k's\n"
        "                         map into it\n"
        "  --dtype f32|f16|bf16|f64  factor dtype (default: the weight's own dtype for\n"
        "                         F32/F16/BF16, bf16 for FP8, f32 for F64)\n"
        "  --split balanced|left|right  where the singular values go: sqrt on both sides\n"
        "                         (default), into A, or into B\n"
        "  --compute f32|f64      SVD precision (default f64: the reported losses are\n"
        "                         exact to rounding; f32 is faster, its losses good to\n"
        "                         about 1e-6 relative)\n"
        "  --backend NAME         auto (default: exact, gesvdx for small ranks, else\n"
        "                         gesdd), gesdd, gesvd, gesvdx, or randomized (faster\n"
        "                         for rank << min(rows, cols) but approximate: its lines\n"
        "                         say so, with the loss achieved and, with\n"
        "                         --energy-loss, the optimum)\n"
        "  --format factors|dense  factors (default): W.A and W.B, and for a transformers\n"
        "                         model a loader (fasvd_lowrank.py, auto_map, model_type\n"
        "                         fasvd_lowrank: load with trust_remote_code=True; plain\n"
        "                         loading fails); dense: W' = A @ B under W's own name,\n"
        "                         dtype and shape (a drop-in checkpoint; every weight is\n"
        "                         written, none kept dense)\n"
        "  --calibration FILE     activation-aware (SVD-LLM whitening): FILE holds the\n"
        "                         Gram X^T X of each weight's inputs, <module>.input_gram\n"
        "                         (docs/truncation.md); the factors minimise\n"
        "                         ||(W - A B) X^T||_F, the rank and TAU apply to it, and\n"
        "                         each line ends with act_lost, the activation-space loss\n"
        "  --no-whiten            with --calibration: plain SVD, act_lost only measured\n"
        "  --allow-larger         replace weights even by factors that are not smaller\n"
        "  --only-if-smaller      the default (kept for older scripts)\n"
        "  -q, --quiet            no per-tensor report\n"
        "  -j, --threads N        threads (default 0: all CPUs)\n"
        "  -h, --help             this help\n"
        "\n"
        "Report (stdout): one line per replaced tensor with its shape, heads, rank, the\n"
        "energy lost (the optimum for the exact backends; for randomized the loss its\n"
        "factors achieve, the line ending \"approximate (optimum X)\"), the measured\n"
        "relative squared error ||W - A B||_F^2 / ||W||_F^2 of the stored factors (equal\n"
        "up to their rounding) and the parameters before and after; a line per weight\n"
        "kept dense; then the totals.\n"
        "\n"
        "Examples:\n"
        "  fasvd truncate ./Llama-3.2-1B -o ./llama-lr --energy-loss 0.01 --dtype f32\n"
        "  fasvd truncate ./DeepSeek-V3 -o ./dsv3-lr --rank 64 --tensors '*.kv_b_proj.weight'\n";

static const char *const dtype_words[] = {"f32", "f16", "bf16", "f64", NULL};
static const fasvd_dtype dtypes[] = {FASVD_DTYPE_F32, FASVD_DTYPE_F16, FASVD_DTYPE_BF16,
                                     FASVD_DTYPE_F64};
static const char *const split_words[] = {"balanced", "left", "right", NULL};
static const fasvd_factor_split splits[] = {FASVD_FACTOR_SPLIT_BALANCED, FASVD_FACTOR_SPLIT_LEFT,
                                            FASVD_FACTOR_SPLIT_RIGHT};
static const char *const format_words[] = {"factors", "dense", NULL};
static const char *const compute_words[] = {"f32", "f64", NULL};
static const char *const backend_words[] = {"auto", "gesdd", "gesvd", "gesvdx", "randomized",
                                            NULL};
static const fasvd_backend backends[] = {FASVD_BACKEND_AUTO, FASVD_BACKEND_GESDD,
                                         FASVD_BACKEND_GESVD, FASVD_BACKEND_GESVDX,
                                         FASVD_BACKEND_RANDOMIZED};

typedef struct report_state {
	bool quiet;
	int64_t n, skipped, approximate;
	long double before, after;
	double worst;
	const char *model, *out; /* for the header, printed before the first line */
	bool fixed_rank;
} report_state;

static void print_header(const char *model, const char *out, bool fixed_rank);

static int on_entry(void *arg, const fasvd_truncate_entry *e)
{
	report_state *st = arg;
	const fasvd_factor_report *r = &e->report;
	/* no header over a run that fails before its first tensor */
	if (!st->quiet && st->n == 0)
		print_header(st->model, st->out, st->fixed_rank);
	st->n++;
	st->before += (long double)r->params_before;
	st->after += (long double)(e->skipped ? r->params_before : r->params_after);
	if (e->skipped)
		st->skipped++;
	else if (r->energy_lost > st->worst)
		st->worst = r->energy_lost;
	if (st->quiet)
		return 0;
	char shape[64];
	if (r->heads > 1)
		snprintf(shape, sizeof shape, "%lldx[%lld,%lld]", (long long)r->heads,
		         (long long)(r->rows / r->heads), (long long)r->cols);
	else
		snprintf(shape, sizeof shape, "[%lld,%lld]", (long long)r->rows, (long long)r->cols);
	if (e->skipped) {
		printf("%-56s %-16s %5lld  kept dense: rank-%lld factors would have %lld parameters, "
		       "not fewer than its %lld\n",
		       e->name, shape, (long long)r->rank, (long long)r->rank,
		       (long long)(r->heads * r->inner * (r->rows / r->heads + r->cols)),
		       (long long)r->params_before);
		return 0;
	}
	double saved = r->params_before > 0
	                       ? 100.0 * (1.0 - (double)r->params_after / (double)r->params_before)
	                       : 0;
	char note[64] = "";
	if (r->approximate && r->optimal_energy_lost >= 0)
		snprintf(note, sizeof note, " approximate (optimum %.4e)", r->optimal_energy_lost);
	else if (r->approximate)
		snprintf(note, sizeof note, " approximate (optimum not computed)");
	if (r->act_energy_lost >= 0) /* --calibration: the loss on the layer's inputs */
		snprintf(note + strlen(note), sizeof note - strlen(note), " act_lost %.4e",
		         r->act_energy_lost);
	printf("%-56s %-16s %5lld %12.4e %12.4e %12lld %12lld %7.1f%% %-4s %s%s\n", e->name,
	       shape, (long long)r->rank, r->energy_lost, r->rel_error_sq,
	       (long long)r->params_before, (long long)r->params_after, saved,
	       fasvd_dtype_name(e->dtype), fasvd_backend_name(r->backend), note);
	if (r->approximate)
		st->approximate++;
	return 0;
}

/* The report's title and column header. */
static void print_header(const char *model, const char *out, bool fixed_rank)
{
	printf("# fasvd truncate %s -> %s (%s)\n", model, out,
	       fixed_rank ? "fixed rank" : "energy loss");
	printf("# energy_lost = sum_{i>r} sigma_i^2 / sum sigma_i^2 (fraction of the squared "
	       "Frobenius norm; the optimum, except on lines marked approximate: the loss of "
	       "those factors); rel_err2 = ||W - A B||_F^2 / ||W||_F^2 of the stored factors\n");
	printf("%-56s %-16s %5s %12s %12s %12s %12s %8s %-4s %s\n", "# tensor", "shape", "rank",
	       "energy_lost", "rel_err2", "params", "params_lr", "saved", "type", "backend");
}

static void print_totals(const report_state *st, const char *out)
{
	double saved = st->before > 0 ? 100.0 * (1.0 - (double)(st->after / st->before)) : 0;
	printf("# %lld tensors (%lld kept dense: factors not smaller), parameters %.0Lf -> %.0Lf "
	       "(%.1f%% saved in them), largest energy lost %.4e%s; written to %s\n",
	       (long long)st->n, (long long)st->skipped, st->before, st->after, saved, st->worst,
	       st->approximate ? " (approximate factors: see their lines)" : "", out);
}

/* Usage errors of the options that go together (0: none). */
static int check_args(cli *c, const char *out, int64_t rank, double tau, int64_t max_rank,
                      bool only_smaller, bool allow_larger)
{
	if (!out)
		return cli_usage_error(c, "-o OUT_DIR is required");
	if ((rank >= 0) == !isnan(tau))
		return cli_usage_error(c, "give exactly one of --rank R and --energy-loss TAU");
	if (!isnan(tau) && !(tau >= 0 && tau <= 1))
		return cli_usage_error(c, "--energy-loss %g: must be in [0, 1] (a fraction of the "
		                          "squared Frobenius norm)",
		                       tau);
	if (max_rank && rank >= 0)
		return cli_usage_error(c, "--max-rank goes with --energy-loss");
	if (only_smaller && allow_larger)
		return cli_usage_error(c, "--only-if-smaller and --allow-larger contradict each "
		                          "other");
	return 0;
}

static int run(cli *c, int argc, char **argv)
{
	const char *out = NULL, *calibration = NULL;
	int64_t rank = -1, max_rank = 0;
	double tau = NAN; /* not given */
	cli_list tensors = {NULL, 0};
	bool per_head = false, shared_o = false, only_smaller = false, allow_larger = false;
	bool quiet = false, no_whiten = false;
	int dtype = -1, split = 0, compute = 1, backend = 0, format = 0;
	const cli_opt opts[] = {
		{"output", 'o', CLI_OPT_STRING, &out, NULL, 0, 0},
		{"rank", 0, CLI_OPT_INT, &rank, NULL, 0, INT64_MAX},
		{"energy-loss", 0, CLI_OPT_DOUBLE, &tau, NULL, 0, 0},
		{"max-rank", 0, CLI_OPT_INT, &max_rank, NULL, 1, INT64_MAX},
		{"tensors", 0, CLI_OPT_LIST, &tensors, NULL, 0, 0},
		{"per-head", 0, CLI_OPT_FLAG, &per_head, NULL, 0, 0},
		{"shared-o", 0, CLI_OPT_FLAG, &shared_o, NULL, 0, 0},
		{"dtype", 0, CLI_OPT_CHOICE, &dtype, dtype_words, 0, 0},
		{"split", 0, CLI_OPT_CHOICE, &split, split_words, 0, 0},
		{"compute", 0, CLI_OPT_CHOICE, &compute, compute_words, 0, 0},
		{"backend", 0, CLI_OPT_CHOICE, &backend, backend_words, 0, 0},
		{"format", 0, CLI_OPT_CHOICE, &format, format_words, 0, 0},
		{"calibration", 0, CLI_OPT_STRING, &calibration, NULL, 0, 0},
		{"no-whiten", 0, CLI_OPT_FLAG, &no_whiten, NULL, 0, 0},
		{"only-if-smaller", 0, CLI_OPT_FLAG, &only_smaller, NULL, 0, 0},
		{"allow-larger", 0, CLI_OPT_FLAG, &allow_larger, NULL, 0, 0},
		{"quiet", 'q', CLI_OPT_FLAG, &quiet, NULL, 0, 0},
		{NULL, 0, 0, NULL, NULL, 0, 0},
	};
	const char *pos[1];
	int status = cli_parse(c, argc, argv, opts, pos, 1, 1, NULL);
	if (status) {
		cli_list_free(&tensors);
		return status < 0 ? 0 : status;
	}
	status = check_args(c, out, rank, tau, max_rank, only_smaller, allow_larger);
	if (!status && no_whiten && !calibration)
		status = cli_usage_error(c, "--no-whiten goes with --calibration");
	if (status) {
		cli_list_free(&tensors);
		return status;
	}

	fasvd_factor_opts fo;
	fasvd_factor_opts_init(&fo, sizeof fo);
	fo.rank = rank >= 0 ? rank : FASVD_FACTOR_RANK_TAU;
	if (rank < 0)
		fo.tau = tau;
	fo.max_rank = max_rank;
	fo.split = splits[split];
	fo.compute = compute == 1 ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
	fo.backend = backends[backend];
	fo.whiten = !no_whiten;
	fasvd_truncate_opts o;
	fasvd_truncate_opts_init(&o, sizeof o);
	o.factor = &fo;
	if (dtype >= 0)
		o.dtype = dtypes[dtype];
	o.patterns = (const char *const *)tensors.v;
	o.n_patterns = tensors.n;
	o.per_head = per_head;
	o.shared_o = shared_o;
	o.only_if_smaller = !allow_larger;
	o.format = format == 1 ? FASVD_TRUNCATE_FORMAT_DENSE : FASVD_TRUNCATE_FORMAT_FACTORS;
	o.calibration = calibration;

	report_state st = {quiet, 0, 0, 0, 0, 0, 0, pos[0], out, rank >= 0};
	int rc = fasvd_truncate(c->ctx, pos[0], out, &o, on_entry, &st);
	cli_list_free(&tensors);
	if (rc)
		return cli_lib_error(rc);
	if (!quiet)
		print_totals(&st, out);
	return CLI_EXIT_OK;
}

const cli_cmd cli_cmd_truncate = {
	"truncate",
	"Replace weights by low-rank factors and write a new checkpoint",
	usage,
	run,
};
