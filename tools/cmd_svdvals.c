/* fasvd svdvals — singular values of one 2-D tensor of a checkpoint. */
#include "cli.h"

#include <fasvd/gguf.h>
#include <fasvd/svd.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
        "usage: fasvd svdvals CHECKPOINT TENSOR [options]\n"
        "\n"
        "Print the singular values of the 2-D tensor TENSOR, one per line, descending,\n"
        "with 17 significant digits: exactly min(rows, cols) of them (or --rank of them).\n"
        "CHECKPOINT is a .safetensors file, a *.safetensors.index.json, a model folder,\n"
        "or a GGUF file (TENSOR as llama.cpp names it: blk.0.attn_q.weight; every ggml\n"
        "type of docs/gguf.md is dequantised exactly). Dtypes F64, F32, F16, BF16, F8_E4M3 and F8_E5M2 are read; an FP8 tensor\n"
        "with a sibling TENSOR_scale_inv is dequantised with its block scales; when the\n"
        "model folder's config.json declares block quantisation, an FP8 tensor without\n"
        "one is an error (--no-scales reads the raw codes).\n"
        "\n"
        "Options:\n"
        "  --dtype f32|f64      compute precision (default f32); alias --compute\n"
        "  --backend NAME       auto (default), gesdd, gesvd, gesvdx, gram\n"
        "  --rank K             only the K largest values\n"
        "  --block-size R[,C]   FP8 scale block size (default: config.json's\n"
        "                       quantization_config.weight_block_size, else 128,128)\n"
        "  --no-scales          ignore TENSOR_scale_inv (print the raw FP8 codes' spectrum)\n"
        "  -j, --threads N      threads (default 0: all CPUs)\n"
        "  -h, --help           this help\n"
        "\n"
        "Example:\n"
        "  fasvd svdvals model.safetensors model.layers.0.self_attn.o_proj.weight --dtype f64\n";

static const char *const dtype_words[] = {"f32", "f64", NULL};
static const char *const backend_words[] = {"auto", "gesdd", "gesvd", "gesvdx", "gram", NULL};
static const fasvd_backend backends[] = {FASVD_BACKEND_AUTO, FASVD_BACKEND_GESDD,
                                         FASVD_BACKEND_GESVD, FASVD_BACKEND_GESVDX,
                                         FASVD_BACKEND_GRAM};

/* What the model folder's config.json (if any) says about FP8 block
 * quantisation: `quantised` when it has a quantization_config with
 * quant_method "fp8" or a weight_block_size; the block size when given. A
 * missing or unreadable config.json says nothing (svdvals reads any
 * safetensors file); anything but a regular file is not opened (a FIFO
 * would block). */
struct quant {
	bool quantised;
	int64_t rows, cols;
};

static bool positive_dim(const json_t *v, int64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > ((json_int_t)1 << 30))
		return false;
	*out = (int64_t)json_integer_value(v);
	return true;
}

static struct quant read_quant(const char *dir)
{
	struct quant q = {false, 0, 0};
	char path[4200];
	if (!dir || snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
		return q;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return q;
	struct stat sb;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > (16 << 20)) {
		close(fd);
		return q;
	}
	json_t *root = json_loadfd(fd, JSON_REJECT_DUPLICATES, NULL);
	close(fd);
	const json_t *qc = json_object_get(root, "quantization_config");
	if (!qc)
		qc = json_object_get(json_object_get(root, "text_config"), "quantization_config");
	if (json_is_object(qc)) {
		const json_t *m = json_object_get(qc, "quant_method");
		const json_t *b = json_object_get(qc, "weight_block_size");
		if (json_is_string(m) && strcmp(json_string_value(m), "fp8") == 0)
			q.quantised = true;
		if (json_is_array(b) && json_array_size(b) == 2 &&
		    positive_dim(json_array_get(b, 0), &q.rows) &&
		    positive_dim(json_array_get(b, 1), &q.cols))
			q.quantised = true;
		else
			q.rows = q.cols = 0;
	}
	json_decref(root);
	return q;
}

/* An FP8 tensor of a block-quantised checkpoint must have its scales. */
static int check_scales(fasvd_st *st, const char *file, const char *name)
{
	fasvd_st_info inf;
	fasvd_st_info_init(&inf, sizeof inf);
	if (fasvd_st_info_get(&inf, st, name) != 0 ||
	    (strcmp(inf.dtype, "F8_E4M3") != 0 && strcmp(inf.dtype, "F8_E5M2") != 0))
		return CLI_EXIT_OK; /* fasvd_st_tensor reports the other problems */
	size_t n = strlen(name);
	char *sname = malloc(n + sizeof "_scale_inv");
	if (!sname)
		return cli_error(CLI_EXIT_FAIL, "out of memory");
	memcpy(sname, name, n);
	memcpy(sname + n, "_scale_inv", sizeof "_scale_inv");
	int status = CLI_EXIT_OK;
	if (fasvd_st_find(NULL, st, sname) != 0)
		status = cli_error(cli_exit_status(FASVD_ENOTFOUND),
		                   "%s: FP8 tensor '%s' has no block scales: tensor '%s' not found "
		                   "(config.json declares block quantisation; --no-scales reads "
		                   "the raw codes)",
		                   file, name, sname);
	free(sname);
	return status;
}

/* True when `path` starts with GGUF's magic. */
static bool is_gguf(const char *path)
{
	char magic[4];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	bool yes = fd >= 0 && read(fd, magic, 4) == 4 && memcmp(magic, "GGUF", 4) == 0;
	if (fd >= 0)
		close(fd);
	return yes;
}

/* Tensor `name` of GGUF file `path` (a matrix: 2-D). */
static int gguf_tensor(fasvd_gguf **gg, fasvd_tensor **t, cli *c, const char *path,
                       const char *name)
{
	int64_t i;
	int nd = 0;
	int rc = fasvd_gguf_open(gg, c->ctx, path);
	if (!rc)
		rc = fasvd_gguf_find_tensor(&i, *gg, name);
	if (!rc)
		rc = fasvd_gguf_tensor_info(NULL, &nd, NULL, NULL, NULL, NULL, *gg, i);
	if (!rc && nd != 2)
		return cli_error(CLI_EXIT_FAIL, "%s: tensor '%s' is %d-D; only a 2-D tensor has a "
		                 "spectrum", path, name, nd);
	if (!rc)
		rc = fasvd_gguf_tensor(t, *gg, name);
	return rc ? cli_lib_error(rc) : CLI_EXIT_OK;
}

/* Print the singular values of t (freed here). */
static int print_svdvals(cli *c, fasvd_tensor *t, int dtype, int backend, int64_t rank)
{
	double *s = NULL;
	int rc;
	int64_t m = fasvd_tensor_rows(t), n = fasvd_tensor_cols(t);
	int64_t k = m < n ? m : n;
	if (rank && rank < k)
		k = rank;
	s = malloc((size_t)k * sizeof *s);
	if (!s) {
		fasvd_tensor_free(t);
		return cli_error(CLI_EXIT_FAIL, "out of memory for %lld singular values",
		                 (long long)k);
	}
	fasvd_svd_opts o;
	fasvd_svd_opts_init(&o, sizeof o);
	o.compute = dtype == 1 ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
	o.backend = backends[backend];
	o.rank = rank;
	fasvd_svd_report rep;
	fasvd_svd_report_init(&rep, sizeof rep);
	rc = fasvd_svdvals(s, k, c->ctx, t, &o, &rep);
	int status = CLI_EXIT_OK;
	if (rc)
		status = cli_lib_error(rc);
	else
		for (int64_t i = 0; i < k; i++)
			printf("%.17g\n", s[i]);
	free(s);
	fasvd_tensor_free(t);
	return status;
}

static int run(cli *c, int argc, char **argv)
{
	int dtype = 0, backend = 0;
	int64_t rank = 0;
	const char *block = NULL;
	bool no_scales = false;
	const cli_opt opts[] = {
		{"dtype", 0, CLI_OPT_CHOICE, &dtype, dtype_words, 0, 0},
		{"compute", 0, CLI_OPT_CHOICE, &dtype, dtype_words, 0, 0},
		{"backend", 0, CLI_OPT_CHOICE, &backend, backend_words, 0, 0},
		{"rank", 0, CLI_OPT_INT, &rank, NULL, 1, INT64_MAX},
		{"block-size", 0, CLI_OPT_STRING, &block, NULL, 0, 0},
		{"no-scales", 0, CLI_OPT_FLAG, &no_scales, NULL, 0, 0},
		{NULL, 0, 0, NULL, NULL, 0, 0},
	};
	const char *pos[2];
	CLI_PARSE_OR_RETURN(cli_parse(c, argc, argv, opts, pos, 2, 2, NULL));
	int64_t br = 128, bc = 128;
	if (block && !cli_parse_pair(block, &br, &bc))
		return cli_usage_error(c, "--block-size: '%s' is not R,C (two positive integers)",
		                       block);

	fasvd_st *st = NULL;
	fasvd_gguf *gg = NULL;
	fasvd_tensor *t = NULL;
	int status;
	if (is_gguf(pos[0])) {
		status = gguf_tensor(&gg, &t, c, pos[0], pos[1]);
		if (status) {
			fasvd_gguf_free(gg);
			return status;
		}
		status = print_svdvals(c, t, dtype, backend, rank);
		fasvd_gguf_free(gg);
		return status;
	}
	int rc = fasvd_st_open(&st, c->ctx, pos[0]);
	if (!rc && !no_scales) {
		struct quant q = read_quant(fasvd_st_dir(st));
		if (!block && q.rows)
			br = q.rows, bc = q.cols;
		status = q.quantised ? check_scales(st, pos[0], pos[1]) : CLI_EXIT_OK;
		if (status) {
			fasvd_st_free(st);
			return status;
		}
	}
	if (!rc)
		rc = fasvd_st_set_block_size(st, br, bc);
	if (!rc)
		rc = fasvd_st_tensor(&t, st, pos[1], no_scales ? FASVD_ST_NO_SCALES : 0);
	if (rc) {
		status = cli_lib_error(rc);
		fasvd_st_free(st);
		return status;
	}
	status = print_svdvals(c, t, dtype, backend, rank);
	fasvd_st_free(st);
	return status;
}

const cli_cmd cli_cmd_svdvals = {
	"svdvals",
	"Singular values of one 2-D tensor of a safetensors checkpoint",
	usage,
	run,
};
