"""Singular values and vectors, fused and stacked head spectra, shared
subspaces, attention-map spectra and low-rank factors, on numpy arrays."""

import ctypes

import numpy as np

from . import _lib as L
from . import errors
from ._core import (Heads, Tensor, get_context, heads as _heads, parse_choice, parse_compute,
                    tensor as _tensor)

__all__ = ["svdvals", "svd", "fused_vo", "fused_qk", "fused", "stacked", "shared_subspace",
           "SharedSubspace", "attention_map", "attention_svdvals", "factor", "factor_fused",
           "factor_shared"]

_BACKEND_NAMES = {v: k for k, v in L.BACKENDS.items()}
_METHOD_NAMES = {v: k for k, v in L.STACK_METHODS.items()}


def _dptr(a):
    return a.ctypes.data_as(L.P(L.c_double))


def _default_compute(compute, arrays):
    """compute=None: "f64" when every input is float64 (or integers, lists:
    converted to float64), else "f32"."""
    if compute is not None:
        return parse_compute(compute)
    for a in arrays:
        if isinstance(a, Heads):
            a = a.tensor
        if isinstance(a, Tensor):
            if a.dtype != "f64":
                return L.COMPUTE_F32
            continue
        dt = a.dtype if isinstance(a, np.ndarray) else np.asarray(a).dtype
        if not ((dt.kind == "f" and dt.itemsize == 8) or dt.kind in "uib"):
            return L.COMPUTE_F32
    return L.COMPUTE_F64


def _owned_to_numpy(t):
    """Copy an owned C-order F32/F64 tensor into numpy and free it."""
    try:
        rows = L.lib.fasvd_tensor_rows(t)
        cols = L.lib.fasvd_tensor_cols(t)
        code = L.lib.fasvd_tensor_dtype(t)
        ptr = L.lib.fasvd_tensor_data(t)
        if code == L.DTYPE_F64:
            ct, nd = L.c_double, np.float64
        elif code == L.DTYPE_F32:
            ct, nd = L.c_float, np.float32
        else:
            out = np.empty((rows, cols), dtype=np.float64)
            L.call("fasvd_tensor_to_f64", _dptr(out), cols, L.LAYOUT_ROW_MAJOR, t, 0)
            return out
        if rows * cols == 0:
            return np.zeros((rows, cols), dtype=nd)
        buf = (ct * (rows * cols)).from_address(ptr)
        return np.array(np.frombuffer(buf, dtype=nd).reshape(rows, cols))
    finally:
        L.lib.fasvd_tensor_free(t)


def _svd_opts(compute, backend, rank, oversample, power_iters, seed):
    o = L.struct_init(L.SvdOpts)
    o.compute = compute
    o.backend = parse_choice(backend, L.BACKENDS, "backend")
    if rank is not None:
        if int(rank) < 1:
            raise errors.InvalidArgument("rank=%r must be >= 1 (None: all values)" % (rank,))
        o.rank = int(rank)
    if oversample is not None:
        o.oversample = int(oversample)
    if power_iters is not None:
        o.power_iters = int(power_iters)
    if seed is not None:
        o.seed = int(seed)
    return o


def _report_dict(rep):
    return {"backend": _BACKEND_NAMES.get(rep.backend, "?"), "fallback": bool(rep.fallback),
            "error_estimate": rep.error_estimate}


def svdvals(a, dtype=None, compute=None, backend=None, rank=None, scale_inv=None, block=128,
            oversample=None, power_iters=None, seed=None, threads=None, ctx=None,
            return_report=False):
    """Singular values of a matrix, descending, as float64.

    ``a``: a 2-D array in any layout (C or Fortran order, transposed, sliced,
    negative strides: read in place, see :func:`fasvd.tensor`), of float64,
    float32 or float16, or bf16 / fp8 codes with ``dtype=`` ("bf16",
    "f8_e4m3", "f8_e5m2") and optional ``scale_inv`` block scales; or a
    stack [..., M, N] (each matrix is done in turn, like numpy). Also a
    :class:`fasvd.Tensor`.
    ``compute``: "f32" or "f64"; None chooses "f64" for float64 input (and
    integer arrays, converted to float64) and "f32" otherwise. Accuracy
    against a float64 reference (docs/accuracy.md): within 1e-4 * sigma_1 in
    f32, 1e-10 * sigma_1 in f64.
    ``backend``: "auto" (default), "gesdd", "gesvd", "gesvdx", "gram",
    "randomized" (approximate, needs ``rank``; ``oversample``,
    ``power_iters``, ``seed`` tune it). ``rank``: only the top ``rank``
    values (None: all min(M, N)).
    Returns an array [..., k]; with ``return_report`` also a dict (backend
    used, fallback, error_estimate; a list of dicts for stacks).
    Raises NonFiniteError (NaN/Inf element, named), DtypeError, ShapeError,
    InvalidArgument, RangeError, LapackError, OutOfMemory.
    """
    if not isinstance(a, Tensor):
        arr = np.asarray(a)
        if arr.ndim > 2:
            if scale_inv is not None:
                raise errors.InvalidArgument("scale_inv= applies to one 2-D matrix")
            lead = arr.shape[:-2]
            outs, reps = [], []
            for idx in np.ndindex(*lead):
                s, r = svdvals(arr[idx], dtype=dtype, compute=compute, backend=backend,
                               rank=rank, oversample=oversample, power_iters=power_iters,
                               seed=seed, threads=threads, ctx=ctx, return_report=True)
                outs.append(s)
                reps.append(r)
            k = outs[0].shape[0] if outs else min(arr.shape[-2:])
            out = np.array(outs, dtype=np.float64).reshape(lead + (k,))
            return (out, reps) if return_report else out
        a = arr
    cmp = _default_compute(compute, [a])
    t = _tensor(a, dtype=dtype, scale_inv=scale_inv, block=block, name="a", ctx=ctx,
                threads=threads)
    m, n = t.shape
    k = min(m, n) if rank is None else min(int(rank), m, n)
    opts = _svd_opts(cmp, backend, rank, oversample, power_iters, seed)
    rep = L.struct_init(L.SvdReport)
    s = np.empty(max(k, 1), dtype=np.float64)
    L.call("fasvd_svdvals", _dptr(s), s.size, t.ctx, t, ctypes.byref(opts), ctypes.byref(rep))
    s = s[:k]
    return (s, _report_dict(rep)) if return_report else s


def svd(a, rank=None, energy_loss=None, dtype=None, compute=None, backend=None,
        scale_inv=None, block=128, oversample=None, power_iters=None, seed=None,
        threads=None, ctx=None, return_report=False):
    """Truncated thin SVD: ``(U, S, Vt)`` with ``a ≈ U @ diag(S) @ Vt``.

    ``rank``: keep the top ``rank`` singular triplets; ``energy_loss`` (τ):
    keep the smallest rank whose lost fraction of SQUARED Frobenius energy,
    sum_{i>r} s_i^2 / sum s_i^2, is at most τ (chosen from the exact
    spectrum first); both: the smaller of the two; neither: all min(M, N).
    U is [M, r] and Vt [r, N], float64 with compute "f64" (the default for
    float64 input) else float32; S is float64 [r]. r may be 0 (τ = 1, or a
    zero matrix with a τ): empty arrays. Other arguments as
    :func:`svdvals` ("gram" is values only and refused here).
    Raises as :func:`svdvals`.
    """
    cmp = _default_compute(compute, [a])
    t = _tensor(a, dtype=dtype, scale_inv=scale_inv, block=block, name="a", ctx=ctx,
                threads=threads)
    m, n = t.shape
    r = min(m, n)
    if rank is not None:
        if int(rank) < 0:
            raise errors.InvalidArgument("rank=%r must be >= 0" % (rank,))
        r = min(r, int(rank))
    if energy_loss is not None:
        s_all = svdvals(t, compute=("f64" if cmp == L.COMPUTE_F64 else "f32"))
        r = min(r, effective_rank(s_all, energy_loss))
    nd = np.float64 if cmp == L.COMPUTE_F64 else np.float32
    if r == 0:
        out = (np.zeros((m, 0), nd), np.zeros(0), np.zeros((0, n), nd))
        return out + ({"backend": None, "fallback": False, "error_estimate": 0.0},) \
            if return_report else out
    opts = _svd_opts(cmp, backend, r, oversample, power_iters, seed)
    rep = L.struct_init(L.SvdReport)
    s = np.empty(r, dtype=np.float64)
    u = L.tensor_p()
    vt = L.tensor_p()
    L.call("fasvd_svd", ctypes.byref(u), _dptr(s), r, ctypes.byref(vt), t.ctx, t,
           ctypes.byref(opts), ctypes.byref(rep))
    U = _owned_to_numpy(u)
    Vt = _owned_to_numpy(vt)
    return (U, s, Vt, _report_dict(rep)) if return_report else (U, s, Vt)


# ------------------------------------------------------------ fused / stacked


def _infer_dim(arr, n, axis):
    """head_dim from a 2-D weight split into n heads along axis."""
    ext = arr.shape[0 if axis == "rows" else 1]
    if ext % n:
        raise errors.ShapeError("%d %s do not split into %d heads"
                                % (ext, axis, n))
    return ext // n


def _pair(a, b, role_a, role_b, n_a, n_b, head_dim, dtype, ctx, threads):
    """Heads handles for a fused pair (roles "V","O" or "Q","K"), inferring
    head counts and the head dimension the way the docstrings describe."""
    axes = {"Q": "rows", "K": "rows", "V": "rows", "O": "cols"}
    arrs = []
    for x in (a, b):
        if isinstance(x, (Heads, Tensor)):
            arrs.append(x)
        else:
            arrs.append(x if isinstance(x, np.ndarray) else np.asarray(x))
    # head_dim from whatever already says it
    hd = head_dim
    for x, n, role in ((arrs[0], n_a, role_a), (arrs[1], n_b, role_b)):
        if hd is not None:
            break
        if isinstance(x, Heads):
            hd = x.head_shape[0]
        elif isinstance(x, np.ndarray) and x.ndim == 3:
            hd = x.shape[1]
        elif n is not None and not isinstance(x, Heads):
            shape = x.shape
            if len(shape) == 2:
                ext = shape[0 if axes[role] == "rows" else 1]
                if ext % int(n):
                    raise errors.ShapeError("%s: %d %s do not split into %d heads"
                                            % (role, ext, axes[role], int(n)))
                hd = ext // int(n)
    if hd is None:
        raise errors.InvalidArgument(
            "cannot tell the heads apart: give n_heads (and n_kv_heads for GQA) or "
            "head_dim, or pass 3-D per-head arrays or fasvd.Heads")
    out = []
    for x, n, role in ((arrs[0], n_a, role_a), (arrs[1], n_b, role_b)):
        if isinstance(x, Heads):
            out.append(x)
            continue
        ax = axes[role] if (isinstance(x, Tensor) or x.ndim == 2) else "rows"
        out.append(_heads(x, n_heads=n, head_dim=hd, axis=ax, dtype=dtype, name=role,
                          ctx=ctx, threads=threads))
    return out


def _fused_heads(a, b, kind, n_heads, n_kv_heads, head_dim, dtype, ctx, threads):
    """(left, right) heads of the fused product `kind`: VO = fuse(V, O),
    QK = fuse(Q, K), KQ = fuse(K, Q); a, b are (V, O) or (Q, K)."""
    kd = str(kind).upper() if kind is not None else None
    if kd == "VO":
        return _pair(a, b, "V", "O", n_kv_heads, n_heads, head_dim, dtype, ctx, threads)
    if kd in ("QK", "KQ"):
        hq, hk = _pair(a, b, "Q", "K", n_heads, n_kv_heads, head_dim, dtype, ctx, threads)
        return (hq, hk) if kd == "QK" else (hk, hq)
    raise errors.InvalidArgument("kind=%r: two weights make 'VO', 'QK' or 'KQ'" % (kind,))


def _rfactors(h, ctx, compute, keep_q=False):
    o = L.struct_init(L.RfactorsOpts)
    o.compute = compute
    o.keep_q = 1 if keep_q else 0
    r = L.rfactors_p()
    L.call("fasvd_rfactors_new", ctypes.byref(r), ctx, h, ctypes.byref(o))
    return r


class _RPair:
    """R factors of two heads handles, freed on exit."""

    def __init__(self, ha, hb, ctx, compute):
        self.ha, self.hb, self.ctx = ha, hb, ctx
        self.ra = self.rb = None
        try:
            self.ra = _rfactors(ha, ctx, compute)
            self.rb = _rfactors(hb, ctx, compute)
        except BaseException:
            self.close()
            raise
        self.n = L.lib.fasvd_fuse_count(self.ra, self.rb)
        if self.n < 0:
            self.close()
            raise errors.ShapeError(
                "heads do not pair: %d x %s and %d x %s (head sizes must agree and one "
                "count must be a multiple of the other)"
                % (ha.count, ha.head_shape, hb.count, hb.head_shape))

    def close(self):
        for attr in ("ra", "rb"):
            r = getattr(self, attr)
            if r:
                L.lib.fasvd_rfactors_free(r)
            setattr(self, attr, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fused(a, b, kind, n_heads=None, n_kv_heads=None, head_dim=None, dtype=None, compute=None,
          threads=None, ctx=None):
    """Per-head singular values of fused products (see :func:`fused_vo`,
    :func:`fused_qk`). ``kind``: "VO" (a = V, b = O), "QK" (a = Q, b = K) or
    "KQ" (a = Q, b = K; the products K^T Q, same values as QK)."""
    ha, hb = _fused_heads(a, b, kind, n_heads, n_kv_heads, head_dim, dtype, ctx, threads)
    cmp = _default_compute(compute, [ha, hb])
    c = get_context(threads, ctx)
    with _RPair(ha, hb, c, cmp) as rp:
        k = min(ha.head_shape[1], hb.head_shape[1])
        s = np.zeros((rp.n, k), dtype=np.float64)
        L.call("fasvd_fuse_svdvals", _dptr(s), k, c, rp.ra, rp.rb)
    return s


def fused_vo(v, o, n_heads=None, n_kv_heads=None, head_dim=None, dtype=None, compute=None,
             threads=None, ctx=None):
    """Per-head singular values of VO_i = V_{g(i)}^T · O_i, never materialised.

    ``v``: v_proj [n_kv_heads*head_dim, kv_in] (Linear layout) or per-head
    [n_kv_heads, head_dim, kv_in]; ``o``: o_proj [hidden, n_heads*head_dim]
    (Linear layout: head i owns a block of columns) or per-head
    [n_heads, head_dim, hidden] (docs/design.md orientation); either may be a
    :class:`fasvd.Heads`. GQA / MQA: head i uses V head
    g(i) = i // (n_heads // n_kv_heads). For 2-D inputs give ``n_heads``
    (``n_kv_heads`` is then derived from v's rows) or ``head_dim``.
    Returns float64 [n_heads, min(kv_in, hidden)], each row descending,
    zeros past the rank (<= head_dim). ``compute`` as :func:`svdvals`.
    Raises ShapeError (heads that do not pair), InvalidArgument,
    NonFiniteError, DtypeError, LapackError.
    """
    return fused(v, o, "VO", n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim,
                 dtype=dtype, compute=compute, threads=threads, ctx=ctx)


def fused_qk(q, k, n_heads=None, n_kv_heads=None, head_dim=None, dtype=None, compute=None,
             threads=None, ctx=None):
    """Per-head singular values of QK_i = Q_i^T · K_{g(i)} (q_in x kv_in),
    never materialised. ``q``: q_proj [n_heads*head_dim, q_in] or
    [n_heads, head_dim, q_in]; ``k``: k_proj [n_kv_heads*head_dim, kv_in] or
    [n_kv_heads, head_dim, kv_in]; or :class:`fasvd.Heads` (MLA: the nope
    rows, see :func:`fasvd.heads` offset/stride). Returns float64
    [n_heads, min(q_in, kv_in)]. Otherwise as :func:`fused_vo`."""
    return fused(q, k, "QK", n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim,
                 dtype=dtype, compute=compute, threads=threads, ctx=ctx)


def _one_weight_heads(w, role, n_heads, head_dim, dtype, scale_inv, block, ctx, threads):
    """Heads of one weight: a Heads as is; a 3-D array per head; a 2-D
    weight split in row blocks, or column blocks for role "O" (o_proj)."""
    if isinstance(w, Heads):
        return w
    arr = w if isinstance(w, (Tensor, np.ndarray)) else np.asarray(w)
    two_d = isinstance(arr, Tensor) or arr.ndim == 2
    return _heads(arr, n_heads=n_heads, head_dim=head_dim,
                  axis=("cols" if role == "O" and two_d else "rows"), dtype=dtype,
                  scale_inv=scale_inv, block=block, name=role, ctx=ctx, threads=threads)


def _stack_opts(norm, method, compute, head_norms, n):
    o = L.struct_init(L.StackOpts)
    o.compute = compute
    o.norm = parse_choice(norm, L.STACK_NORMS, "norm")
    o.method = parse_choice(method, L.STACK_METHODS, "method")
    hn = None
    if head_norms is not None:
        hn = np.ascontiguousarray(head_norms, dtype=np.float64)
        if hn.shape != (n,):  # the C side reads exactly n values
            raise errors.ShapeError("head_norms has shape %s; the stack has %d heads"
                                    % (hn.shape, n))
        o.head_norms = _dptr(hn)
    return o, hn


def stacked(a, b=None, kind=None, n_heads=None, n_kv_heads=None, head_dim=None,
            norm="sigma1", method="auto", head_norms=None, dtype=None, scale_inv=None,
            block=128, compute=None, threads=None, ctx=None, return_report=False):
    """Singular values of the stacked heads of a layer (heads concatenated
    along rows, each first divided by its own norm; docs/design.md).

    One weight (``b`` None): the stack [W_1/s_1; ...; W_n/s_n] of its heads.
    ``kind`` says how a 2-D weight splits: "Q", "K", "V" (default; heads are
    row blocks) or "O" (o_proj: heads are column blocks, transposed). A 3-D
    [n_heads, rows, cols] array or a :class:`fasvd.Heads` needs no kind.
    Two weights: the stack of fused heads, never materialised: ``kind="VO"``
    (a = V, b = O), ``"QK"`` or ``"KQ"`` (a = Q, b = K); heads as
    :func:`fused_vo`.
    ``norm``: "sigma1" (default), "frobenius" or "none"; ``head_norms``:
    your own per-head divisors. ``method``: "auto" (Gram matrix in double
    for f32 compute, direct SVD for f64), "gram" or "direct".
    Returns float64 [min(rows, cols) of the stack], descending; with
    ``return_report`` also a dict (method used, the stacked and the solved
    shapes, the a-priori error bound of the Gram path).
    """
    c = get_context(threads, ctx)
    if b is None:
        role = (kind or "V").upper()
        if role not in ("Q", "K", "V", "O"):
            raise errors.InvalidArgument("kind=%r for one weight: use 'Q', 'K', 'V' or 'O'"
                                         % (kind,))
        h = _one_weight_heads(a, role, n_heads, head_dim, dtype, scale_inv, block, ctx, threads)
        cmp = _default_compute(compute, [h])
        opts, keep = _stack_opts(norm, method, cmp, head_norms, h.count)
        r, cc = h.head_shape
        k = min(h.count * r, cc)
        s = np.zeros(k, dtype=np.float64)
        rep = L.struct_init(L.StackReport)
        L.call("fasvd_stack_svdvals", _dptr(s), k, c, h, ctypes.byref(opts), ctypes.byref(rep))
    else:
        if scale_inv is not None:
            raise errors.InvalidArgument("scale_inv= with two weights: build fasvd.heads() "
                                         "for each")
        ha, hb = _fused_heads(a, b, kind, n_heads, n_kv_heads, head_dim, dtype, ctx, threads)
        cmp = _default_compute(compute, [ha, hb])
        with _RPair(ha, hb, c, cmp) as rp:
            opts, keep = _stack_opts(norm, method, cmp, head_norms, rp.n)
            k = min(rp.n * ha.head_shape[1], hb.head_shape[1])
            s = np.zeros(k, dtype=np.float64)
            rep = L.struct_init(L.StackReport)
            L.call("fasvd_stack_fused_svdvals", _dptr(s), k, c, rp.ra, rp.rb, ctypes.byref(opts),
                   ctypes.byref(rep))
    del keep
    if return_report:
        return s, {"method": _METHOD_NAMES.get(rep.method, "?"), "shape": (rep.rows, rep.cols),
                   "solved_shape": (rep.solved_rows, rep.solved_cols),
                   "error_bound": rep.error_bound}
    return s


# ------------------------------------------------------------ shared subspace


class SharedSubspace:
    """A shared basis B fitted over the heads of one weight
    (:func:`shared_subspace`), with every result copied into numpy:

    - ``side``: "input" (W_i ≈ [mu] + A_i @ B, B [r, cols] with orthonormal
      rows) or "output" (W_i ≈ [mu] + B @ A_i, B [rows, r]);
    - ``basis`` (B), ``factors`` ([n, rows, r] or [n, r, cols]: the A_i),
      ``mean`` (None without centring), ``rank`` r, ``spectrum`` (singular
      values of the weighted, centred stack), ``energy_lost`` (its fraction
      of squared Frobenius energy lost at rank r), ``abs_errors`` /
      ``rel_errors`` (per head ||W_i - Ŵ_i||_F, and relative to ||W_i||_F).
    ``reconstruct(i)`` gives Ŵ_i.
    """

    def __init__(self, sp, side):
        n = L.lib.fasvd_subspace_count(sp)
        self.side = side
        self.rank = L.lib.fasvd_subspace_rank(sp)
        cnt = L.c_int64()
        ptr = L.lib.fasvd_subspace_spectrum(ctypes.byref(cnt), sp)
        self.spectrum = np.array(ptr[:cnt.value], dtype=np.float64) if cnt.value else \
            np.zeros(0)
        self.energy_lost = L.lib.fasvd_subspace_energy_lost(sp)
        self.basis = _borrowed_to_numpy(L.lib.fasvd_subspace_basis(sp))
        self.factors = np.stack([_borrowed_to_numpy(L.lib.fasvd_subspace_factor(sp, i))
                                 for i in range(n)])
        mean = L.lib.fasvd_subspace_mean(sp)
        self.mean = _borrowed_to_numpy(mean) if mean else None
        ae, re_ = np.zeros(n), np.zeros(n)
        for i in range(n):
            a, r = L.c_double(), L.c_double()
            L.call("fasvd_subspace_error", ctypes.byref(a), ctypes.byref(r), sp, i)
            ae[i], re_[i] = a.value, r.value
        self.abs_errors, self.rel_errors = ae, re_
        self.n_heads = n

    def reconstruct(self, i):
        """Ŵ_i = mean + A_i @ B (side "input") or mean + B @ A_i ("output")."""
        a = self.factors[i]
        w = a @ self.basis if self.side == "input" else self.basis @ a
        return w + self.mean if self.mean is not None else w

    def __repr__(self):
        return ("<fasvd.SharedSubspace side=%s rank=%d heads=%d energy_lost=%.3g>"
                % (self.side, self.rank, self.n_heads, self.energy_lost))


def _borrowed_to_numpy(t):
    rows = L.lib.fasvd_tensor_rows(t)
    cols = L.lib.fasvd_tensor_cols(t)
    out = np.empty((rows, cols), dtype=np.float64)
    L.call("fasvd_tensor_to_f64", _dptr(out), cols, L.LAYOUT_ROW_MAJOR, t, 0)
    return out


def shared_subspace(w, n_heads=None, kind=None, head_dim=None, rank=None, tau=0.01,
                    side="input", center=False, weight="none", dtype=None, scale_inv=None,
                    block=128, compute=None, threads=None, ctx=None):
    """Fit one basis shared by every head of a weight (subspace.h).

    Heads as :func:`stacked` with one weight (``kind`` "O" for a 2-D o_proj).
    ``side="input"``: W_i ≈ A_i @ B with B spanning a subspace of the space
    the heads read from (for O heads: the hidden space they write to);
    ``side="output"``: W_i ≈ B @ A_i (a latent shared along the head
    dimension). ``rank``: fixed rank, or None to choose the smallest rank
    whose lost fraction of squared Frobenius energy of the (weighted,
    centred) stack is <= ``tau``. ``center``: remove the mean first (PCA).
    ``weight``: "none", "sigma1" or "frobenius" (per-head weights of the
    fit). Returns a :class:`SharedSubspace`.
    """
    sd = parse_choice(side, L.SUBSPACE_SIDES, "side")
    h = _one_weight_heads(w, (kind or "V").upper(), n_heads, head_dim, dtype, scale_inv, block,
                          ctx, threads)
    o = L.struct_init(L.SubspaceOpts)
    o.compute = _default_compute(compute, [h])
    o.side = sd
    if rank is not None:
        if int(rank) < 1:
            raise errors.InvalidArgument("rank=%r must be >= 1 (None: chosen by tau)"
                                         % (rank,))
        o.rank = int(rank)
    o.tau = float(tau)
    o.center = 1 if center else 0
    o.weight = parse_choice(weight, L.SUBSPACE_WEIGHTS, "weight")
    sp = L.subspace_p()
    c = get_context(threads, ctx)
    L.call("fasvd_subspace_new", ctypes.byref(sp), c, h, ctypes.byref(o))
    try:
        return SharedSubspace(sp, "input" if sd == 0 else "output")
    finally:
        L.lib.fasvd_subspace_free(sp)


# ------------------------------------------------------------ attention maps


def _attn_opts(causal, scale, compute):
    o = L.struct_init(L.AttnmapOpts)
    o.compute = compute
    o.causal = 1 if causal else 0
    o.scale = 0.0 if scale is None else float(scale)
    return o


def attention_map(q, k, causal=False, scale=None, compute=None, threads=None, ctx=None):
    """softmax(scale · q @ k.T) row-wise (masked entries 0), computed stably:
    ``q`` [n_q, d] and ``k`` [n_k, d] activations; ``scale`` None: 1/sqrt(d);
    ``causal``: query i sees keys j <= i (needs n_q <= n_k). Returns an
    [n_q, n_k] array (float64 for f64 compute, else float32)."""
    cmp = _default_compute(compute, [q, k])
    tq = _tensor(q, name="q", ctx=ctx, threads=threads)
    tk = _tensor(k, name="k", ctx=tq.ctx)
    out = L.tensor_p()
    o = _attn_opts(causal, scale, cmp)
    L.call("fasvd_attnmap", ctypes.byref(out), tq.ctx, tq, tk, ctypes.byref(o))
    return _owned_to_numpy(out)


def attention_svdvals(q, k, causal=False, scale=None, compute=None, threads=None, ctx=None):
    """Singular values of :func:`attention_map` (float64,
    min(n_q, n_k) values, descending)."""
    cmp = _default_compute(compute, [q, k])
    tq = _tensor(q, name="q", ctx=ctx, threads=threads)
    tk = _tensor(k, name="k", ctx=tq.ctx)
    n = min(tq.shape[0], tk.shape[0])
    s = np.zeros(n, dtype=np.float64)
    o = _attn_opts(causal, scale, cmp)
    L.call("fasvd_attnmap_svdvals", _dptr(s), n, tq.ctx, tq, tk, ctypes.byref(o))
    return s


# ------------------------------------------------------------ factorisation

_FACTOR_DTYPES = {"f32": L.DTYPE_F32, "float32": L.DTYPE_F32, "f16": L.DTYPE_F16,
                  "float16": L.DTYPE_F16, "bf16": L.DTYPE_BF16, "f64": L.DTYPE_F64,
                  "float64": L.DTYPE_F64}


def _factor_opts(rank, energy_loss, max_rank, split, out_dtype, compute, backend, heads):
    o = L.struct_init(L.FactorOpts)
    if rank is not None:
        if int(rank) < 0:
            raise errors.InvalidArgument("rank=%r must be >= 0" % (rank,))
        o.rank = int(rank)
    else:
        o.rank = L.FACTOR_RANK_TAU
        if energy_loss is not None:
            o.tau = float(energy_loss)
    if max_rank is not None:
        o.max_rank = int(max_rank)
    o.split = parse_choice(split, L.FACTOR_SPLITS, "split")
    o.dtype = parse_choice(out_dtype, _FACTOR_DTYPES, "out_dtype") or L.DTYPE_F32
    o.compute = compute
    o.backend = parse_choice(backend, L.BACKENDS, "backend")
    o.heads = int(heads or 0)
    return o


def _factor_report(rep):
    return {"rows": rep.rows, "cols": rep.cols, "heads": rep.heads, "rank": rep.rank,
            "inner": rep.inner, "full_rank": rep.full_rank, "energy": rep.energy,
            "energy_lost": rep.energy_lost, "spectrum_exact": bool(rep.spectrum_exact),
            "rel_error_sq": None if rep.rel_error_sq < 0 else rep.rel_error_sq,
            "params_before": rep.params_before, "params_after": rep.params_after,
            "backend": _BACKEND_NAMES.get(rep.backend, "?"),
            "error_estimate": rep.error_estimate,
            # randomised factors: energy_lost is what they achieve, not the optimum
            "approximate": bool(rep.approximate),
            "optimal_energy_lost": (None if rep.optimal_energy_lost < 0
                                    else rep.optimal_energy_lost),
            # calibration: the activation-space loss (and the whitened optimum)
            "act_energy": None if rep.act_energy < 0 else rep.act_energy,
            "act_energy_lost": None if rep.act_energy_lost < 0 else rep.act_energy_lost,
            "act_optimal_energy_lost": (None if rep.act_optimal_energy_lost < 0
                                        else rep.act_optimal_energy_lost),
            "calibration_shift": rep.calibration_shift}


def factor(w, rank=None, energy_loss=None, max_rank=None, heads=None, split="balanced",
           out_dtype="f32", dtype=None, scale_inv=None, block=128, compute=None,
           backend=None, verify=False, calibration=None, calibration_cholesky=False,
           whiten=True, calibration_eps=None, threads=None, ctx=None):
    """Low-rank factors ``W ≈ A @ B`` (factor.h).

    ``rank`` fixes the rank (clamped to the full rank); otherwise the
    smallest rank whose lost fraction of squared Frobenius energy is <=
    ``energy_loss`` (τ, default 0.01), capped by ``max_rank``. ``heads``:
    factorise each of ``heads`` row blocks separately with one common rank
    (A [heads, rows/heads, r], B [heads, r, cols]). ``split``: where the
    singular values go ("balanced": sqrt on both sides, "left", "right").
    ``out_dtype``: "f32" (default), "f16", "bf16" or "f64"; f16 / bf16
    factors are returned as float16 / float64 arrays (bf16 decoded).
    A rank of 0 gives zero factors of inner dimension 1. ``backend``: None
    / "auto" (exact: the best rank-r approximation), "gesdd", "gesvd",
    "gesvdx", or "randomized" (faster for rank << min(rows, cols), but
    approximate: the report says ``approximate``, its ``energy_lost`` is the
    loss achieved and ``optimal_energy_lost`` the optimum when known, in
    τ mode).
    ``calibration``: activation-aware truncation (SVD-LLM whitening): the
    Gram X^T X [cols, cols] of the inputs X [tokens, cols] of the layer (or,
    with ``calibration_cholesky``, its lower Cholesky factor); the factors
    then minimise ||(W - A B) X^T||_F (``whiten=False``: plain SVD, the
    activation loss only measured); ``calibration_eps``: the regularisation
    ε (default 1e-6 of the mean diagonal, docs/truncation.md).
    Returns ``(A, B, report)``; report is a dict (rank, inner, energy,
    energy_lost, optimal_energy_lost, approximate, rel_error_sq when
    ``verify``, params_before / after, and with calibration act_energy,
    act_energy_lost, act_optimal_energy_lost, calibration_shift ...).
    """
    cmp = _default_compute(compute, [w])
    t = _tensor(w, dtype=dtype, scale_inv=scale_inv, block=block, name="w", ctx=ctx,
                threads=threads)
    o = _factor_opts(rank, energy_loss, max_rank, split, out_dtype, cmp, backend, heads)
    o.verify = 1 if verify else 0
    g = None
    if calibration is not None:
        g = _tensor(np.ascontiguousarray(calibration, dtype=np.float64), name="calibration",
                    ctx=t.ctx)
        o.calibration = g._as_parameter_
        o.calibration_cholesky = 1 if calibration_cholesky else 0
        o.whiten = 1 if whiten else 0
        if calibration_eps is not None:
            o.calibration_eps = float(calibration_eps)
    rep = L.struct_init(L.FactorReport)
    a, b = L.tensor_p(), L.tensor_p()
    L.call("fasvd_factor", ctypes.byref(a), ctypes.byref(b), t.ctx, t, ctypes.byref(o),
           ctypes.byref(rep))
    A, B = _owned_any(a), _owned_any(b)
    h = max(1, rep.heads)
    if h > 1:
        A = A.reshape(h, A.shape[0] // h, A.shape[1])
        B = B.reshape(h, B.shape[0] // h, B.shape[1])
    return A, B, _factor_report(rep)


def factor_fused(a, b, kind="VO", rank=None, energy_loss=None, max_rank=None,
                 n_heads=None, n_kv_heads=None, head_dim=None, split="balanced",
                 out_dtype="f32", dtype=None, compute=None, threads=None, ctx=None):
    """Low-rank factors of the fused heads, never materialised (factor.h
    fasvd_factor_fused): F_i ≈ A[i] @ B[i] for every head i, with
    F_i = V_g(i)^T · O_i (``kind="VO"``, a = V, b = O) or Q_i^T · K_g(i)
    (``"QK"``, a = Q, b = K), heads given as for :func:`fused_vo`. One rank
    for all heads: ``rank``, or the smallest whose loss, summed over heads,
    is <= ``energy_loss`` (τ, default 0.01) of sum_i ||F_i||_F^2, capped by
    ``max_rank``. This is what a runtime that absorbs the matrices (as MLA
    inference does) stores. Returns ``(A, B, report)``: A [n, rows, inner],
    B [n, inner, cols] (inner = max(rank, 1)), report as :func:`factor`
    (energy_lost exact)."""
    ha, hb = _fused_heads(a, b, kind, n_heads, n_kv_heads, head_dim, dtype, ctx, threads)
    cmp = _default_compute(compute, [ha, hb])
    o = _factor_opts(rank, energy_loss, max_rank, split, out_dtype, cmp, None, None)
    rep = L.struct_init(L.FactorReport)
    ta, tb = L.tensor_p(), L.tensor_p()
    L.call("fasvd_factor_fused", ctypes.byref(ta), ctypes.byref(tb), get_context(threads, ctx),
           ha, hb, ctypes.byref(o), ctypes.byref(rep))
    A, B = _owned_any(ta), _owned_any(tb)
    n = rep.heads
    return (A.reshape(n, A.shape[0] // n, A.shape[1]), B.reshape(n, B.shape[0] // n, B.shape[1]),
            _factor_report(rep))


def factor_shared(weights, n_heads=None, kind=None, head_dim=None, rank=None,
                  energy_loss=None, max_rank=None, side="input", center=False, weight="none",
                  out_dtype="f32", dtype=None, compute=None, verify=False, threads=None,
                  ctx=None):
    """Low-rank factors with one basis shared by every head of one or more
    weights (factor.h fasvd_factor_shared). ``weights``: one weight or a
    list (their heads are taken in order: all of the first's, then the
    second's ...; every head of one shape), each split into heads as for
    :func:`shared_subspace` (``kind`` "Q", "K", "V" (default) or "O";
    ``n_heads`` one count for all, or one per weight).
    ``side="input"``: W_i ≈ [mean] + A_i @ basis, basis [r, cols] with
    orthonormal rows, factors [n, rows, r] (shared K/V PCA: weights
    [K, V], ``center=True``); ``side="output"``: W_i ≈ [mean] + basis @ A_i,
    basis [rows, r], factors [n, r, cols]. The MLA-o shared output latent is
    ``factor_shared(o_proj, kind="O", side="input")``. ``rank`` or
    ``energy_loss`` (τ, default 0.01, of the weighted, centred stack) and
    ``max_rank`` as :func:`factor`; ``weight``: "none", "sigma1" or
    "frobenius" per-head weights of the fit. Returns
    ``(basis, factors, mean, report)`` (mean None without ``center``;
    report as :func:`factor`, ``rel_error_sq`` with ``verify``)."""
    ws = list(weights) if isinstance(weights, (list, tuple)) else [weights]
    if not ws:
        raise errors.InvalidArgument("weights is empty")
    counts = list(n_heads) if isinstance(n_heads, (list, tuple)) else [n_heads] * len(ws)
    if len(counts) != len(ws):
        raise errors.InvalidArgument("n_heads has %d counts for %d weights"
                                     % (len(counts), len(ws)))
    role = (kind or "V").upper()
    hs = [_one_weight_heads(w, role, n, head_dim, dtype, None, 128, ctx, threads)
          for w, n in zip(ws, counts)]
    cmp = _default_compute(compute, hs)
    o = _factor_opts(rank, energy_loss, max_rank, "balanced", out_dtype, cmp, None, None)
    o.verify = 1 if verify else 0
    so = L.struct_init(L.FactorSharedOpts)
    so.side = parse_choice(side, L.SUBSPACE_SIDES, "side")
    so.center = 1 if center else 0
    so.weight = parse_choice(weight, L.SUBSPACE_WEIGHTS, "weight")
    groups = (L.heads_p * len(hs))(*[h._as_parameter_ for h in hs])
    rep = L.struct_init(L.FactorReport)
    tb, tf, tm = L.tensor_p(), L.tensor_p(), L.tensor_p()
    L.call("fasvd_factor_shared", ctypes.byref(tb), ctypes.byref(tf), ctypes.byref(tm),
           get_context(threads, ctx), groups, len(hs),
           ctypes.byref(o), ctypes.byref(so), ctypes.byref(rep))
    basis, factors = _owned_any(tb), _owned_any(tf)
    mean = _owned_any(tm) if tm else None
    n = rep.heads
    factors = factors.reshape(n, factors.shape[0] // n, factors.shape[1])
    return basis, factors, mean, _factor_report(rep)


def _owned_any(t):
    code = L.lib.fasvd_tensor_dtype(t)
    if code == L.DTYPE_F16:
        try:
            rows, cols = L.lib.fasvd_tensor_rows(t), L.lib.fasvd_tensor_cols(t)
            buf = (ctypes.c_uint16 * (rows * cols)).from_address(L.lib.fasvd_tensor_data(t))
            return np.array(np.frombuffer(buf, dtype=np.float16).reshape(rows, cols))
        finally:
            L.lib.fasvd_tensor_free(t)
    return _owned_to_numpy(t)


from .metrics import effective_rank  # noqa: E402  (metrics imports nothing from here)
