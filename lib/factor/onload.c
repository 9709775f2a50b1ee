/* libfasvd — the on-load runtime API (include/fasvd/onload.h): a plan of
 * validated factorisation options, shared read-only by the runtime's loader
 * threads, and one call per weight on the checkpoint's own bytes.
 *
 * The input is wrapped in a borrowed tensor (no copy); FP8 block scales are
 * attached from the caller's F32 grid (copied as doubles: a grid is
 * rows·cols / 16384 values). Everything else is fasvd_factor().
 */
#include "factor/factor_int.h"

#include <fasvd/onload.h>

#include <string.h>

struct fasvd_onload {
	fasvd_ctx *ctx;
	fasvd_factor_opts opts;
	bool dbl;
};

int fasvd_onload_new(fasvd_onload **out, fasvd_ctx *ctx, const fasvd_factor_opts *opts)
{
	static const char fn[] = "fasvd_onload_new";
	if (!out)
		return fasvd__error(FASVD_EINVAL, "%s: out is NULL", fn);
	*out = NULL;
	fasvd_factor_opts o;
	int rc = fasvd__factor_opts_load(&o, opts, fn);
	if (rc)
		return rc;
	if (o.calibration)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: opts->calibration is set: a plan serves many weights; give "
		                    "each weight's statistics with its input (in->calibration)",
		                    fn);
	ctx = fasvd__ctx(ctx);
	fasvd_onload *p = fasvd__calloc(ctx, 1, sizeof *p, "an on-load plan");
	if (!p)
		return FASVD_ENOMEM;
	p->ctx = ctx;
	p->opts = o;
	/* compute 0 follows each input (float64 for float64 weights): the
	 * workspace bound takes the float64 case */
	p->dbl = o.compute ? o.compute == FASVD_COMPUTE_F64 : true;
	*out = p;
	return 0;
}

void fasvd_onload_free(fasvd_onload *plan)
{
	if (plan)
		fasvd__free(plan->ctx, plan);
}

static const fasvd__struct_ver input_ver = FASVD__STRUCT_VER(fasvd_onload_input, calibration_cholesky);

int fasvd_onload_input_init(fasvd_onload_input *in, size_t size)
{
	return fasvd__init_versioned(in, size, NULL, &input_ver);
}

/* The input as a borrowed tensor with its scales attached. */
static int wrap_input(fasvd_tensor **out, const fasvd_onload *plan, const fasvd_onload_input *user,
                      fasvd_onload_input *in, fasvd_factor_opts *o, const char *fn)
{
	*out = NULL;
	if (!plan || !user)
		return fasvd__error(FASVD_EINVAL, "%s: %s is NULL", fn, !plan ? "plan" : "in");
	fasvd_onload_input_init(in, sizeof *in);
	int rc = fasvd__load_versioned(in, user, &input_ver, fn, "in");
	if (rc)
		return rc;
	const char *name = in->name ? in->name : "on-load input";
	if (!in->data)
		return fasvd__error(FASVD_EINVAL, "%s: '%s': data is NULL", fn, name);
	if (in->rows < 1 || in->cols < 1)
		return fasvd__error(FASVD_EINVAL, "%s: '%s': shape [%lld, %lld]: dimensions must be >= 1",
		                    fn, name, (long long)in->rows, (long long)in->cols);
	if (in->row_stride != 0 && in->row_stride < in->cols)
		return fasvd__error(FASVD_EINVAL, "%s: '%s': row_stride %lld < cols %lld", fn, name,
		                    (long long)in->row_stride, (long long)in->cols);
	if (fasvd_dtype_size(in->dtype) == 0)
		return fasvd__error(FASVD_EDTYPE, "%s: '%s': dtype %d is not a fasvd_dtype", fn, name,
		                    (int)in->dtype);
	if (in->heads < 0)
		return fasvd__error(FASVD_EINVAL, "%s: '%s': heads = %lld", fn, name,
		                    (long long)in->heads);
	if (in->block_rows < 0 || in->block_cols < 0)
		return fasvd__error(FASVD_EINVAL, "%s: '%s': negative block size", fn, name);
	*o = plan->opts;
	if (in->heads > 0)
		o->heads = in->heads;
	o->calibration = in->calibration;
	o->calibration_cholesky = in->calibration_cholesky;
	fasvd_tensor *t = NULL;
	int64_t rs = in->row_stride ? in->row_stride : in->cols;
	if ((rc = fasvd_tensor_new_borrowed(&t, plan->ctx, in->dtype, in->data, in->rows, in->cols,
	                                    rs, 1)))
		return fasvd__error_prefix(rc, "%s: '%s'", fn, name);
	if ((rc = fasvd_tensor_set_name(t, name)))
		goto fail;
	if (in->scale_inv) {
		int64_t br = in->block_rows ? in->block_rows : 128;
		int64_t bc = in->block_cols ? in->block_cols : 128;
		int64_t gr = (in->rows + br - 1) / br, gc = (in->cols + bc - 1) / bc;
		fasvd_tensor *g = NULL;
		if ((rc = fasvd_tensor_new_borrowed(&g, plan->ctx, FASVD_DTYPE_F32, in->scale_inv, gr,
		                                    gc, gc, 1)))
			goto fail;
		rc = fasvd_tensor_set_block_scales(t, g, br, bc);
		fasvd_tensor_free(g);
		if (rc) {
			fasvd__error_prefix(rc, "%s: '%s'_scale_inv", fn, name);
			goto fail;
		}
	}
	*out = t;
	return 0;
fail:
	fasvd_tensor_free(t);
	return rc;
}

int fasvd_onload_factor(fasvd_tensor **a, fasvd_tensor **b, const fasvd_onload *plan,
                        const fasvd_onload_input *in, fasvd_factor_report *report)
{
	static const char fn[] = "fasvd_onload_factor";
	if (a)
		*a = NULL;
	if (b)
		*b = NULL;
	if (!a || !b)
		return fasvd__error(FASVD_EINVAL, "%s: %s is NULL", fn, !a ? "a" : "b");
	fasvd_onload_input i;
	fasvd_factor_opts o;
	fasvd_tensor *t;
	int rc = wrap_input(&t, plan, in, &i, &o, fn);
	if (rc)
		return rc;
	rc = fasvd__factor_any(a, b, NULL, NULL, 0, plan->ctx, t, &o, i.cancel, i.cancel_arg, report,
	                       fn);
	fasvd_tensor_free(t);
	return rc;
}

int fasvd_onload_factor_into(void *a, void *b, int64_t capacity, const fasvd_onload *plan,
                             const fasvd_onload_input *in, fasvd_factor_report *report)
{
	static const char fn[] = "fasvd_onload_factor_into";
	if (!a || !b)
		return fasvd__error(FASVD_EINVAL, "%s: %s is NULL", fn, !a ? "a" : "b");
	fasvd_onload_input i;
	fasvd_factor_opts o;
	fasvd_tensor *t;
	int rc = wrap_input(&t, plan, in, &i, &o, fn);
	if (rc)
		return rc;
	rc = fasvd__factor_any(NULL, NULL, a, b, capacity, plan->ctx, t, &o, i.cancel, i.cancel_arg,
	                       report, fn);
	fasvd_tensor_free(t);
	return rc;
}

/* Check the arguments of a per-matrix query (out, named out_name, and
 * plan not NULL; the shape) and resolve its head count into *h. */
static int plan_heads(const void *out, const char *out_name, const fasvd_onload *plan,
                      int64_t rows, int64_t cols, int64_t heads, int64_t *h, const char *fn)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "%s: %s is NULL", fn, out_name);
	if (!plan)
		return fasvd__error(FASVD_EINVAL, "%s: plan is NULL", fn);
	if (heads < 0)
		return fasvd__error(FASVD_EINVAL, "%s: heads = %lld", fn, (long long)heads);
	*h = heads > 0 ? heads : plan->opts.heads > 1 ? plan->opts.heads : 1;
	if (rows < 1 || cols < 1 || rows % *h)
		return fasvd__error(FASVD_ESHAPE, "%s: shape [%lld, %lld] with %lld heads", fn,
		                    (long long)rows, (long long)cols, (long long)*h);
	return 0;
}

int fasvd_onload_max_inner(int64_t *out, const fasvd_onload *plan, int64_t rows, int64_t cols,
                           int64_t heads)
{
	int64_t h;
	int rc = plan_heads(out, "out", plan, rows, cols, heads, &h, "fasvd_onload_max_inner");
	if (rc)
		return rc;
	int64_t p = rows / h < cols ? rows / h : cols;
	int64_t r = fasvd__factor_max_rank(&plan->opts, p);
	*out = r > 0 ? r : 1;
	return 0;
}

int fasvd_onload_workspace(uint64_t *bytes, const fasvd_onload *plan, int64_t rows, int64_t cols,
                           int64_t heads)
{
	int64_t h;
	int rc = plan_heads(bytes, "bytes", plan, rows, cols, heads, &h, "fasvd_onload_workspace");
	if (rc)
		return rc;
	fasvd_factor_opts o = plan->opts;
	o.heads = h;
	return fasvd__factor_workspace(bytes, rows, cols, &o, plan->dbl,
	                               fasvd__parallel_workers(plan->ctx, h));
}
