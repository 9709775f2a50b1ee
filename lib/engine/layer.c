/* libfasvd — named spectra lists and the layer-level entry point: every
 * spectrum of docs/spectra-schema.md for one attention layer. */
#include "engine/engine_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------- spectra */

struct spectrum {
	char *name;
	int64_t n_rows, n_cols, mat_rows, mat_cols;
	int64_t max_rank;   /* structural rank bound of the matrix a row describes */
	double *data;
};

struct fasvd_spectra {
	fasvd_ctx *ctx;
	struct spectrum *e;
	int64_t n, cap;
};

int fasvd_spectra_new(fasvd_spectra **out, fasvd_ctx *ctx)
{
	if (!out)
		return fasvd__error(FASVD_EINVAL, "fasvd_spectra_new: out is NULL");
	*out = fasvd__calloc(ctx, 1, sizeof **out, "a spectra list");
	if (!*out)
		return FASVD_ENOMEM;
	(*out)->ctx = ctx;
	return 0;
}

void fasvd_spectra_free(fasvd_spectra *s)
{
	if (!s)
		return;
	for (int64_t i = 0; i < s->n; i++) {
		fasvd__free(s->ctx, s->e[i].name);
		fasvd__free(s->ctx, s->e[i].data);
	}
	fasvd__free(s->ctx, s->e);
	fasvd__free(s->ctx, s);
}

int64_t fasvd_spectra_count(const fasvd_spectra *s)
{
	return s ? s->n : 0;
}

static int64_t entry_index(const fasvd_spectra *s, const char *name)
{
	for (int64_t i = 0; i < s->n; i++)
		if (strcmp(s->e[i].name, name) == 0)
			return i;
	return -1;
}

int fasvd_spectra_find(int64_t *index, const fasvd_spectra *s, const char *name)
{
	if (!s || !name)
		return fasvd__error(FASVD_EINVAL, "fasvd_spectra_find: NULL argument");
	int64_t i = entry_index(s, name);
	if (i < 0)
		return fasvd__error(FASVD_ENOTFOUND, "fasvd_spectra_find: no spectrum '%s'", name);
	if (index)
		*index = i;
	return 0;
}

const char *fasvd_spectra_name(const fasvd_spectra *s, int64_t i)
{
	return s && i >= 0 && i < s->n ? s->e[i].name : NULL;
}

const double *fasvd_spectra_data(const fasvd_spectra *s, int64_t i)
{
	return s && i >= 0 && i < s->n ? s->e[i].data : NULL;
}

int fasvd_spectra_shape(int64_t *n_rows, int64_t *n_cols, int64_t *mat_rows, int64_t *mat_cols,
                        const fasvd_spectra *s, int64_t i)
{
	if (!s || i < 0 || i >= s->n)
		return fasvd__error(FASVD_EINVAL, "fasvd_spectra_shape: entry %lld does not exist",
		                    (long long)i);
	const struct spectrum *e = &s->e[i];
	if (n_rows)
		*n_rows = e->n_rows;
	if (n_cols)
		*n_cols = e->n_cols;
	if (mat_rows)
		*mat_rows = e->mat_rows;
	if (mat_cols)
		*mat_cols = e->mat_cols;
	return 0;
}

int fasvd_spectra_max_rank(int64_t *out, const fasvd_spectra *s, int64_t i)
{
	if (!out || !s || i < 0 || i >= s->n)
		return fasvd__error(FASVD_EINVAL, "fasvd_spectra_max_rank: entry %lld does not exist",
		                    (long long)i);
	*out = s->e[i].max_rank;
	return 0;
}

int fasvd_spectra_set_max_rank(fasvd_spectra *s, int64_t i, int64_t max_rank)
{
	if (!s || i < 0 || i >= s->n)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_spectra_set_max_rank: entry %lld does not exist",
		                    (long long)i);
	struct spectrum *e = &s->e[i];
	int64_t p = e->mat_rows < e->mat_cols ? e->mat_rows : e->mat_cols;
	if (max_rank < 0 || max_rank > p)
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_spectra_set_max_rank: '%s': bound %lld is not in [0, %lld] "
		                    "(min(rows, cols))",
		                    e->name, (long long)max_rank, (long long)p);
	e->max_rank = max_rank;
	return 0;
}

static int check_entry(const fasvd_spectra *s, const char *name, int64_t n_rows, int64_t n_cols,
                       int64_t mat_rows, int64_t mat_cols)
{
	if (!s || !name || !*name)
		return fasvd__error(FASVD_EINVAL, "fasvd_spectra_add: NULL list or empty name");
	int64_t cells;
	if (n_rows < 1 || n_cols < 1 || mat_rows < 1 || mat_cols < 1 ||
	    !fasvd__mul_i64(n_rows, n_cols, &cells))
		return fasvd__error(FASVD_EINVAL,
		                    "fasvd_spectra_add: '%s': bad shape [%lld x %lld] of a %lld x %lld "
		                    "matrix",
		                    name, (long long)n_rows, (long long)n_cols, (long long)mat_rows,
		                    (long long)mat_cols);
	if (entry_index(s, name) >= 0)
		return fasvd__error(FASVD_EINVAL, "fasvd_spectra_add: '%s' is already in the list",
		                    name);
	return 0;
}

int fasvd__spectra_add_owned(fasvd_spectra *s, const char *name, int64_t n_rows, int64_t n_cols,
                             int64_t mat_rows, int64_t mat_cols, double *data)
{
	int rc = check_entry(s, name, n_rows, n_cols, mat_rows, mat_cols);
	if (rc) {
		if (s)
			fasvd__free(s->ctx, data);
		return rc;
	}
	struct spectrum *e = fasvd__grow(s->ctx, s->e, s->n, &s->cap, sizeof *e, 16,
	                                 "a spectra list");
	if (!e) {
		fasvd__free(s->ctx, data);
		return FASVD_ENOMEM;
	}
	s->e = e;
	char *nm = fasvd__strdup(s->ctx, name);
	if (!nm) {
		fasvd__free(s->ctx, data);
		return FASVD_ENOMEM;
	}
	int64_t p = mat_rows < mat_cols ? mat_rows : mat_cols;
	s->e[s->n++] = (struct spectrum){nm, n_rows, n_cols, mat_rows, mat_cols, p, data};
	return 0;
}

int fasvd_spectra_add(fasvd_spectra *s, const char *name, int64_t n_rows, int64_t n_cols,
                      int64_t mat_rows, int64_t mat_cols, const double *data)
{
	int rc = check_entry(s, name, n_rows, n_cols, mat_rows, mat_cols);
	if (rc)
		return rc;
	if (!data)
		return fasvd__error(FASVD_EINVAL, "fasvd_spectra_add: '%s': data is NULL", name);
	double *copy = fasvd__calloc(s->ctx, (size_t)(n_rows * n_cols), sizeof *copy, "a spectrum");
	if (!copy)
		return FASVD_ENOMEM;
	memcpy(copy, data, (size_t)(n_rows * n_cols) * sizeof *copy);
	return fasvd__spectra_add_owned(s, name, n_rows, n_cols, mat_rows, mat_cols, copy);
}

/* --------------------------------------------------------------- layer */

static const fasvd__struct_ver desc_ver = FASVD__STRUCT_VER(fasvd_layer_desc, kva_pe_col_scale);

int fasvd_layer_desc_init(fasvd_layer_desc *d, size_t size)
{
	return fasvd__init_versioned(d, size, NULL, &desc_ver);
}

static const fasvd__struct_ver opts_ver = FASVD__STRUCT_VER(fasvd_layer_opts, groups);

int fasvd_layer_opts_init(fasvd_layer_opts *o, size_t size)
{
	static const fasvd_layer_opts defaults = {
		.stack_norm = FASVD_STACK_NORM_SIGMA1,
		.stack_method = FASVD_STACK_AUTO,
		.groups = FASVD_LAYER_ALL,
	};
	return fasvd__init_versioned(o, size, &defaults, &opts_ver);
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* State of one layer computation. */
struct layer {
	fasvd_ctx *ctx;
	const fasvd_layer_desc *d;
	fasvd_layer_opts o;
	fasvd_compute compute;
	fasvd_spectra *out;
	/* R factors and per-head spectra (n x width) of Q, Q_pe, K, V, O. */
	fasvd_rfactors *rf[5];
	double *hs[5];
	/* Fused per-head spectra QK, VO. */
	double *fs[2];
};

enum { P_Q, P_QPE, P_K, P_V, P_O };
static const char *const plain_names[5] = {"Q", "Q_pe", "K", "V", "O"};

static const fasvd_heads *part(const fasvd_layer_desc *d, int p)
{
	switch (p) {
	case P_Q: return d->q;
	case P_QPE: return d->q_pe;
	case P_K: return d->k;
	case P_V: return d->v;
	default: return d->o;
	}
}

static int validate(const fasvd_layer_desc *d)
{
	const char *fn = "fasvd_layer_spectra";
	if (d->n_heads < 1 || d->n_kv_heads < 1 || d->n_heads % d->n_kv_heads)
		return fasvd__error(FASVD_EINVAL,
		                    "%s: n_heads %lld is not a positive multiple of n_kv_heads %lld", fn,
		                    (long long)d->n_heads, (long long)d->n_kv_heads);
	for (int p = 0; p < 5; p++) {
		const fasvd_heads *h = part(d, p);
		if (!h)
			continue;
		int64_t want = p == P_K || p == P_V ? d->n_kv_heads : d->n_heads;
		if (h->n != want) {
			char lab[300];
			return fasvd__error(FASVD_EINVAL, "%s: %s heads (%s) number %lld, expected %lld",
			                    fn, plain_names[p], fasvd__tensor_label(h->t, lab, sizeof lab),
			                    (long long)h->n, (long long)want);
		}
	}
	struct {
		const fasvd_heads *a, *b;
		bool rows;
		const char *what;
	} pairs[] = {
		{d->q, d->k, true, "q and k head sizes (rows)"},
		{d->v, d->o, true, "v and o head sizes (rows)"},
		{d->q, d->q_pe, false, "q and q_pe input dimensions (columns)"},
		{d->k, d->v, false, "k and v input dimensions (columns)"},
	};
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		if (!pairs[i].a || !pairs[i].b)
			continue;
		int64_t x = pairs[i].rows ? pairs[i].a->rows : pairs[i].a->cols;
		int64_t y = pairs[i].rows ? pairs[i].b->rows : pairs[i].b->cols;
		if (x != y)
			return fasvd__error(FASVD_ESHAPE, "%s: %s differ: %lld vs %lld", fn, pairs[i].what,
			                    (long long)x, (long long)y);
	}
	const fasvd_tensor *subs[3] = {d->qa, d->kva, d->kva_pe};
	const double *sc[3] = {d->qa_col_scale, d->kva_col_scale, d->kva_pe_col_scale};
	for (int i = 0; i < 3; i++)
		if (sc[i] && !subs[i])
			return fasvd__error(FASVD_EINVAL, "%s: a subspace column scale without its tensor",
			                    fn);
	return 0;
}

static double *alloc_vals(struct layer *L, int64_t n, int64_t w)
{
	return fasvd__calloc(L->ctx, (size_t)(n * w), sizeof(double), "spectra");
}

/* Copy a (n x w) array into the output list; bound: the structural rank of
 * the matrices (0: min(mr, mc)). */
static int emit(struct layer *L, const char *name, const double *v, int64_t n, int64_t w,
                int64_t mr, int64_t mc, int64_t bound)
{
	int rc = fasvd_spectra_add(L->out, name, n, w, mr, mc, v);
	if (!rc && bound)
		rc = fasvd_spectra_set_max_rank(L->out, L->out->n - 1, min64(bound, min64(mr, mc)));
	return rc;
}

/* The rank bound of a head's matrix: min(its rows, its cols) (not f->r,
 * which is smaller for the reduced heads of a factored weight). */
static int64_t head_bound(const fasvd_rfactors *f)
{
	return min64(f->m, f->k);
}

/* The rank bound of a fused head A_iᵀ·B_j: each factor has rank at most
 * min(its head rows, its head cols). */
static int64_t fused_bound(const fasvd_rfactors *a, const fasvd_rfactors *b)
{
	return min64(head_bound(a), head_bound(b));
}

static int do_plain_heads(struct layer *L, bool need)
{
	for (int p = 0; p < 5; p++) {
		const fasvd_heads *h = part(L->d, p);
		if (!h)
			continue;
		fasvd_rfactors_opts ro;
		fasvd_rfactors_opts_init(&ro, sizeof ro);
		ro.compute = L->compute;
		int rc = fasvd_rfactors_new(&L->rf[p], L->ctx, h, &ro);
		if (rc)
			return fasvd__error_prefix(rc, "%s", plain_names[p]);
		if (!need)
			continue;
		int64_t w = min64(h->rows, h->cols);
		if (!(L->hs[p] = alloc_vals(L, h->n, w)))
			return FASVD_ENOMEM;
		if ((rc = fasvd_rfactors_svdvals(L->hs[p], w, L->rf[p])))
			return fasvd__error_prefix(rc, "%s", plain_names[p]);
	}
	return 0;
}

static int do_fused_heads(struct layer *L)
{
	const fasvd_layer_desc *d = L->d;
	int pa[2] = {P_Q, P_V}, pb[2] = {P_K, P_O};
	for (int f = 0; f < 2; f++) {
		const fasvd_rfactors *a = L->rf[pa[f]], *b = L->rf[pb[f]];
		if (!a || !b)
			continue;
		int64_t w = min64(a->m, b->m);
		if (!(L->fs[f] = alloc_vals(L, d->n_heads, w)))
			return FASVD_ENOMEM;
		int rc = fasvd_fuse_svdvals(L->fs[f], w, L->ctx, a, b);
		if (rc)
			return fasvd__error_prefix(rc, "%s", f ? "VO" : "QK");
	}
	return 0;
}

static int emit_heads(struct layer *L)
{
	char name[32];
	int rc;
	for (int p = 0; p < 5; p++) {
		const fasvd_heads *h = part(L->d, p);
		if (!h)
			continue;
		snprintf(name, sizeof name, "head.%s", plain_names[p]);
		if ((rc = emit(L, name, L->hs[p], h->n, min64(h->rows, h->cols), h->rows, h->cols,
		               0)))
			return rc;
	}
	if (L->fs[0]) {
		const fasvd_heads *q = L->d->q, *k = L->d->k;
		int64_t w = min64(q->cols, k->cols), b = fused_bound(L->rf[P_Q], L->rf[P_K]);
		if ((rc = emit(L, "head.QK", L->fs[0], L->d->n_heads, w, q->cols, k->cols, b)) ||
		    (rc = emit(L, "head.KQ", L->fs[0], L->d->n_heads, w, k->cols, q->cols, b)))
			return rc;
	}
	if (L->fs[1]) {
		const fasvd_heads *v = L->d->v, *o = L->d->o;
		if ((rc = emit(L, "head.VO", L->fs[1], L->d->n_heads, min64(v->cols, o->cols), v->cols,
		               o->cols, fused_bound(L->rf[P_V], L->rf[P_O]))))
			return rc;
	}
	return 0;
}

/* Divisors of the heads for the stack (NULL for NONE). */
static int plain_norms(struct layer *L, int p, double **out)
{
	*out = NULL;
	if (L->o.stack_norm == FASVD_STACK_NORM_NONE)
		return 0;
	const fasvd_rfactors *f = L->rf[p];
	double *nv = alloc_vals(L, f->n, 1);
	if (!nv)
		return FASVD_ENOMEM;
	for (int64_t i = 0; i < f->n; i++) {
		const double *sv = f->sv + i * f->r;
		double ss = 0;
		for (int64_t q = f->r - 1; q >= 0; q--)
			ss += sv[q] * sv[q];
		nv[i] = L->o.stack_norm == FASVD_STACK_NORM_SIGMA1 ? sv[0] : sqrt(ss);
	}
	*out = nv;
	return 0;
}

static int fused_norms(struct layer *L, int which, const fasvd_rfactors *a,
                       const fasvd_rfactors *b, double **out)
{
	*out = NULL;
	if (L->o.stack_norm == FASVD_STACK_NORM_NONE)
		return 0;
	int64_t n = fasvd_fuse_count(a, b);
	double *nv = alloc_vals(L, n, 1);
	if (!nv)
		return FASVD_ENOMEM;
	if (L->o.stack_norm == FASVD_STACK_NORM_SIGMA1) {
		int64_t w = min64(L->rf[which ? P_V : P_Q]->m, L->rf[which ? P_O : P_K]->m);
		for (int64_t i = 0; i < n; i++)
			nv[i] = L->fs[which][i * w];
	} else {
		int rc = fasvd_fuse_norms(nv, L->ctx, a, b);
		if (rc) {
			fasvd__free(L->ctx, nv);
			return rc;
		}
	}
	*out = nv;
	return 0;
}

/* One stacked or subspace spectrum. The layer's stacks are independent
 * problems of very unequal size (two of them, O and VO, dominate): they run
 * concurrently, largest first, each on its own worker with single-threaded
 * BLAS when there are at least as many problems as threads (which keeps
 * every core busy without oversubscription and suits the eigensolver: see
 * gram_eigvals in stack.c), else with threads / problems BLAS threads each. */
struct sjob {
	const char *name;
	const fasvd_heads *h;          /* plain stack or subspace */
	const fasvd_rfactors *a, *b;   /* fused stack */
	fasvd_stack_norm norm;
	double *norms;                 /* owned, or NULL */
	int64_t w, rows, cols;         /* values; the stacked matrix's shape */
	int64_t bound;                 /* its structural rank bound */
	double cost;                   /* for ordering */
	double *s;                     /* result (owned until emitted) */
};

struct sjobs {
	struct layer *L;
	struct sjob job[16];
	int order[16];
	int n;
	fasvd_ctx inner;               /* the context for each job's work */
};

/* Work of the Gram path for a solved shape: Gram + eigensolver. */
static double gram_cost(int64_t rows, int64_t cols)
{
	double m = (double)min64(rows, cols), k = (double)(rows > cols ? rows : cols);
	return m * m * k + 4.0 * m * m * m;
}

static int sjob_task(void *arg, int64_t idx, int worker)
{
	(void)worker;
	struct sjobs *J = arg;
	struct layer *L = J->L;
	struct sjob *j = &J->job[J->order[idx]];
	fasvd_stack_opts so;
	fasvd_stack_opts_init(&so, sizeof so);
	so.compute = L->compute;
	so.norm = j->norm;
	so.method = L->o.stack_method;
	so.head_norms = j->norms;
	int rc = j->a ? fasvd_stack_fused_svdvals(j->s, j->w, &J->inner, j->a, j->b, &so, NULL)
	              : fasvd_stack_svdvals(j->s, j->w, &J->inner, j->h, &so, NULL);
	if (rc)
		return fasvd__error_prefix(rc, "%s", j->name);
	return 0;
}

static const char *const stack_names[5] = {"stack.Q", "stack.Q_pe", "stack.K", "stack.V",
                                           "stack.O"};

static int add_jobs(struct layer *L, struct sjobs *J, struct fasvd_heads *subh)
{
	int rc;
	if (L->o.groups & FASVD_LAYER_STACK) {
		for (int p = 0; p < 5; p++) {
			const fasvd_heads *h = part(L->d, p);
			if (!h)
				continue;
			struct sjob *j = &J->job[J->n++];
			j->name = stack_names[p];
			j->h = h;
			j->norm = L->o.stack_norm;
			j->rows = h->n * h->rows;
			j->cols = h->cols;
			j->w = min64(j->rows, j->cols);
			j->cost = gram_cost(j->rows, j->cols);
			if ((rc = plain_norms(L, p, &j->norms)))
				return rc;
		}
		struct {
			const char *name;
			int pa, pb, which;
		} fused[3] = {{"stack.QK", P_Q, P_K, 0},
		              {"stack.KQ", P_K, P_Q, 0},
		              {"stack.VO", P_V, P_O, 1}};
		for (int f = 0; f < 3; f++) {
			const fasvd_rfactors *a = L->rf[fused[f].pa], *b = L->rf[fused[f].pb];
			if (!a || !b)
				continue;
			struct sjob *j = &J->job[J->n++];
			j->name = fused[f].name;
			j->a = a;
			j->b = b;
			j->norm = L->o.stack_norm;
			int64_t n = fasvd_fuse_count(a, b);
			j->rows = n * a->m;
			j->cols = b->m;
			j->w = min64(j->rows, j->cols);
			/* n blocks of rank <= fused_bound, whose rows all lie in the
			 * span of B's b->n heads (n_kv of them for QK under GQA) */
			j->bound = min64(j->w, min64(n * fused_bound(a, b), b->n * head_bound(b)));
			j->cost = gram_cost(n * a->r, b->m);
			if ((rc = fused_norms(L, fused[f].which, a, b, &j->norms)))
				return rc;
		}
	}
	if (L->o.groups & FASVD_LAYER_SUB) {
		const fasvd_tensor *t[3] = {L->d->qa, L->d->kva, L->d->kva_pe};
		const double *sc[3] = {L->d->qa_col_scale, L->d->kva_col_scale,
		                       L->d->kva_pe_col_scale};
		const char *names[3] = {"sub.QA", "sub.KVA", "sub.KVA_pe"};
		for (int i = 0; i < 3; i++) {
			if (!t[i])
				continue;
			int64_t rows = fasvd_tensor_rows(t[i]), cols = fasvd_tensor_cols(t[i]);
			if ((rc = fasvd__heads_init(&subh[i], L->ctx, t[i], FASVD_AXIS_ROWS, 1, rows, 0, 0,
			                            sc[i])))
				return fasvd__error_prefix(rc, "%s", names[i]);
			struct sjob *j = &J->job[J->n++];
			j->name = names[i];
			j->h = &subh[i];
			j->norm = FASVD_STACK_NORM_NONE;
			j->rows = rows;
			j->cols = cols;
			j->w = min64(rows, cols);
			j->cost = gram_cost(rows, cols);
		}
	}
	for (int i = 0; i < J->n; i++)
		if (!(J->job[i].s = alloc_vals(L, 1, J->job[i].w)))
			return FASVD_ENOMEM;
	return 0;
}

static int do_stacks(struct layer *L)
{
	struct sjobs J;
	struct fasvd_heads subh[3];
	memset(&J, 0, sizeof J);
	J.L = L;
	int rc = add_jobs(L, &J, subh);
	if (!rc && J.n) {
		/* Largest first (stable: insertion sort on a handful of jobs). */
		for (int i = 0; i < J.n; i++) {
			int q = i;
			while (q > 0 && J.job[J.order[q - 1]].cost < J.job[i].cost) {
				J.order[q] = J.order[q - 1];
				q--;
			}
			J.order[q] = i;
		}
		fasvd_ctx *c = fasvd__ctx(L->ctx);
		int threads = fasvd__threads(c);
		int workers = threads < J.n ? threads : J.n;
		fasvd_ctx outer = *c;
		outer.threads = workers;
		outer.is_default = false;
		J.inner = *c;
		J.inner.threads = threads / workers;
		J.inner.is_default = false;
		rc = fasvd__parallel_for(&outer, J.n, sjob_task, &J);
	}
	for (int i = 0; i < J.n && !rc; i++) {
		struct sjob *j = &J.job[i];
		rc = fasvd__spectra_add_owned(L->out, j->name, 1, j->w, j->rows, j->cols, j->s);
		j->s = NULL;
		if (!rc && j->bound)
			rc = fasvd_spectra_set_max_rank(L->out, L->out->n - 1, j->bound);
	}
	for (int i = 0; i < J.n; i++) {
		fasvd__free(L->ctx, J.job[i].s);
		fasvd__free(L->ctx, J.job[i].norms);
	}
	return rc;
}

int fasvd_layer_spectra(fasvd_spectra **out, fasvd_ctx *ctx, const fasvd_layer_desc *d,
                        const fasvd_layer_opts *opts)
{
	const char *fn = "fasvd_layer_spectra";
	if (!out)
		return fasvd__error(FASVD_EINVAL, "%s: out is NULL", fn);
	*out = NULL;
	if (!d)
		return fasvd__error(FASVD_EINVAL, "%s: desc is NULL", fn);
	struct layer L;
	memset(&L, 0, sizeof L);
	L.ctx = ctx;
	fasvd_layer_desc desc;
	fasvd_layer_desc_init(&desc, sizeof desc);
	L.d = &desc;
	fasvd_layer_opts_init(&L.o, sizeof L.o);
	int rc = fasvd__load_versioned(&desc, d, &desc_ver, fn, "desc");
	if (rc || (opts && (rc = fasvd__load_versioned(&L.o, opts, &opts_ver, fn, "opts"))))
		return rc;
	if (L.o.stack_norm != FASVD_STACK_NORM_SIGMA1 &&
	    L.o.stack_norm != FASVD_STACK_NORM_FROBENIUS && L.o.stack_norm != FASVD_STACK_NORM_NONE)
		return fasvd__error(FASVD_EINVAL, "%s: unknown stack_norm %d", fn, (int)L.o.stack_norm);
	if (L.o.groups & ~FASVD_LAYER_ALL)
		return fasvd__error(FASVD_EINVAL, "%s: unknown group bits 0x%x", fn,
		                    L.o.groups & ~FASVD_LAYER_ALL);
	bool dbl;
	if ((rc = fasvd__compute_resolve(ctx, L.o.compute, &dbl, fn)))
		return rc;
	L.compute = dbl ? FASVD_COMPUTE_F64 : FASVD_COMPUTE_F32;
	if ((rc = validate(&desc)))
		return rc;
	if ((rc = fasvd_spectra_new(&L.out, ctx)))
		return rc;
	int saved = fasvd__blas_enter(ctx);
	bool heads = L.o.groups & FASVD_LAYER_HEAD, stacks = L.o.groups & FASVD_LAYER_STACK;
	if (heads || stacks) {
		/* Per-head spectra are needed for σ₁ normalisation of the stacks. */
		bool need = heads || L.o.stack_norm == FASVD_STACK_NORM_SIGMA1;
		if ((rc = do_plain_heads(&L, need)))
			goto out;
		if (need && (rc = do_fused_heads(&L)))
			goto out;
		if (heads && (rc = emit_heads(&L)))
			goto out;
	}
	if ((stacks || (L.o.groups & FASVD_LAYER_SUB)) && (rc = do_stacks(&L)))
		goto out;
out:
	fasvd__blas_leave(saved);
	for (int p = 0; p < 5; p++) {
		fasvd_rfactors_free(L.rf[p]);
		fasvd__free(ctx, L.hs[p]);
	}
	fasvd__free(ctx, L.fs[0]);
	fasvd__free(ctx, L.fs[1]);
	if (rc) {
		fasvd_spectra_free(L.out);
		return fasvd__error_prefix(rc, "%s", fn);
	}
	*out = L.out;
	return 0;
}
