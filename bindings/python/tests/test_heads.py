"""Per-head operands, fused and stacked spectra, shared subspaces, metrics,
attention maps and factors, against float64 numpy references that
materialise every fused and stacked matrix."""

import numpy as np
import pytest

from support import bf16_decode, bf16_encode, require_library, svals

require_library()

import fasvd  # noqa: E402

rng = np.random.default_rng(7)
F64_TOL = 1e-10
F32_TOL = 1e-4


def close(s, ref, tol):
    s, ref = np.asarray(s), np.asarray(ref)
    assert s.shape == ref.shape, (s.shape, ref.shape)
    scale = np.max(np.abs(ref), axis=-1, keepdims=True) if ref.ndim > 1 else np.max(ref)
    err = np.max(np.abs(s - ref) / np.maximum(scale, 1e-300))
    assert err <= tol, "max error / sigma_1 = %g > %g" % (err, tol)


def gqa_model(n_heads=6, n_kv=2, hd=8, hidden=40, low=3):
    """Random q/k/v/o projections (Linear layout), with some low-rank heads."""
    q = rng.standard_normal((n_heads * hd, hidden))
    k = rng.standard_normal((n_kv * hd, hidden))
    v = rng.standard_normal((n_kv * hd, hidden))
    v[:hd] = rng.standard_normal((hd, low)) @ rng.standard_normal((low, hidden))
    o = rng.standard_normal((hidden, n_heads * hd))
    return q, k, v, o


def per_head(w, n, hd, axis="rows"):
    """Per-head matrices (docs/design.md) of a Linear weight, in numpy."""
    if axis == "rows":
        return [w[i * hd:(i + 1) * hd, :] for i in range(n)]
    return [w[:, i * hd:(i + 1) * hd].T for i in range(n)]


def ref_fused(a_heads, b_heads):
    """[sigma(A_{a(i)}^T B_{b(i)})]_i with GQA sharing, materialised."""
    n = max(len(a_heads), len(b_heads))
    ga, gb = n // len(a_heads), n // len(b_heads)
    return np.stack([svals(a_heads[i // ga].T @ b_heads[i // gb]) for i in range(n)])


def ref_stack(mats, norm="sigma1"):
    parts = []
    for m in mats:
        d = {"sigma1": svals(m)[0], "frobenius": np.linalg.norm(m), "none": 1.0}[norm]
        parts.append(m / d if d > 0 else m)
    return svals(np.vstack(parts))


def test_heads_views_rows_cols_and_3d():
    q, k, v, o = gqa_model()
    hq = fasvd.heads(q, n_heads=6)
    assert hq.count == 6 and hq.head_shape == (8, 40)
    for i, m in enumerate(per_head(q, 6, 8)):
        np.testing.assert_array_equal(hq.head(i), m)
    ho = fasvd.heads(o, n_heads=6, axis="cols")
    assert ho.head_shape == (8, 40)
    np.testing.assert_array_equal(ho.to_numpy(), np.stack(per_head(o, 6, 8, "cols")))
    # a 3-D array, C order, sliced and transposed views
    q3 = q.reshape(6, 8, 40)
    for arr in (q3, np.ascontiguousarray(np.zeros((6, 11, 40)))[:, :8, :] + 0,
                q3.transpose(0, 2, 1).copy().transpose(0, 2, 1), q3[:, :, ::-1]):
        h = fasvd.heads(arr)
        np.testing.assert_array_equal(h.to_numpy(), arr)
    big = np.zeros((6, 11, 40))
    big[:, 2:10, :] = q3
    view = big[:, 2:10, :]
    h = fasvd.heads(view)
    assert not h.tensor.copied  # head stride 11 rows, read in place
    np.testing.assert_array_equal(h.to_numpy(), q3)


def test_heads_interleaved_mla_layout():
    # q_b_proj rows per head [nope | rope], kv_b_proj rows per head [k_nope ; v]
    n, nope, rope, vd, qin = 4, 6, 3, 5, 20
    qb = rng.standard_normal((n * (nope + rope), qin))
    hq = fasvd.heads(qb, n_heads=n, head_dim=nope, offset=0, stride=nope + rope)
    hpe = fasvd.heads(qb, n_heads=n, head_dim=rope, offset=nope, stride=nope + rope)
    for i in range(n):
        base = i * (nope + rope)
        np.testing.assert_array_equal(hq.head(i), qb[base:base + nope])
        np.testing.assert_array_equal(hpe.head(i), qb[base + nope:base + nope + rope])
    kvb = rng.standard_normal((n * (nope + vd), 12))
    hv = fasvd.heads(kvb, n_heads=n, head_dim=vd, offset=nope, stride=nope + vd)
    np.testing.assert_array_equal(hv.head(2), kvb[2 * (nope + vd) + nope:3 * (nope + vd)])


def test_heads_col_scale_and_errors():
    w = rng.standard_normal((12, 10))
    g = rng.uniform(0.5, 1.5, size=10)
    h = fasvd.heads(w, n_heads=3, col_scale=g)
    np.testing.assert_allclose(h.head(1), w[4:8] * g, rtol=1e-15)
    with pytest.raises(fasvd.ShapeError):
        fasvd.heads(w, n_heads=5)  # 12 rows do not split into 5 heads
    with pytest.raises(fasvd.ShapeError):
        fasvd.heads(w, n_heads=3, col_scale=np.ones(9))
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.heads(w)
    with pytest.raises(fasvd.NonFiniteError):
        fasvd.heads(w, n_heads=3, col_scale=np.full(10, np.nan))


@pytest.mark.parametrize("compute,tol", [("f64", F64_TOL), ("f32", F32_TOL)])
def test_fused_vo_qk_gqa(compute, tol):
    q, k, v, o = gqa_model()
    Q, K, V = per_head(q, 6, 8), per_head(k, 2, 8), per_head(v, 2, 8)
    O = per_head(o, 6, 8, "cols")
    vo = fasvd.fused_vo(v, o, n_heads=6, compute=compute)
    assert vo.shape == (6, 40)
    close(vo, ref_fused(V, O), tol)
    qk = fasvd.fused_qk(q, k, n_heads=6, compute=compute)
    close(qk, ref_fused(Q, K), tol)
    kq = fasvd.fused(q, k, "KQ", n_heads=6, compute=compute)
    close(kq, np.stack([svals(K[i // 3].T @ Q[i]) for i in range(6)]), tol)
    # the same through 3-D per-head arrays, Fortran-order weights, Heads objects
    vo3 = fasvd.fused_vo(np.stack(V), np.stack(O), compute=compute)
    close(vo3, ref_fused(V, O), tol)
    vof = fasvd.fused_vo(np.asfortranarray(v), np.asfortranarray(o), n_heads=6,
                         n_kv_heads=2, compute=compute)
    close(vof, ref_fused(V, O), tol)
    hv, ho = fasvd.heads(v, n_heads=2), fasvd.heads(o, n_heads=6, axis="cols")
    close(fasvd.fused_vo(hv, ho, compute=compute), ref_fused(V, O), tol)
    # head 0 of V is rank 3, so are the VO heads that use it (heads 0..2)
    assert np.all(vo[:3, 3:] <= 1e-6 * vo[:3, :1])


def test_fused_bf16_weights():
    q, k, v, o = gqa_model()
    vc, oc = bf16_encode(v), bf16_encode(o)
    V, O = per_head(bf16_decode(vc), 2, 8), per_head(bf16_decode(oc), 6, 8, "cols")
    close(fasvd.fused_vo(vc, oc, n_heads=6, dtype="bf16", compute="f64"), ref_fused(V, O),
          F64_TOL)


def test_fused_shape_errors():
    q, k, v, o = gqa_model()
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.fused_vo(v, o)  # no way to tell the heads apart
    with pytest.raises(fasvd.ShapeError):
        fasvd.fused_vo(v, o, n_heads=7)
    with pytest.raises(fasvd.ShapeError):  # 6 heads vs 4 KV heads: not a multiple
        fasvd.fused_vo(np.zeros((4, 8, 40)) + 1, o.reshape(40, 6, 8).transpose(1, 2, 0) + 0)
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.fused(q, k, "XY", n_heads=6)


@pytest.mark.parametrize("norm", ["sigma1", "frobenius", "none"])
@pytest.mark.parametrize("compute,tol", [("f64", F64_TOL), ("f32", F32_TOL)])
def test_stacked_plain_and_fused(norm, compute, tol):
    q, k, v, o = gqa_model()
    Q, K, V = per_head(q, 6, 8), per_head(k, 2, 8), per_head(v, 2, 8)
    O = per_head(o, 6, 8, "cols")
    close(fasvd.stacked(o, kind="O", n_heads=6, norm=norm, compute=compute),
          ref_stack(O, norm), tol)
    close(fasvd.stacked(q, n_heads=6, norm=norm, compute=compute), ref_stack(Q, norm), tol)
    vo_heads = [V[i // 3].T @ O[i] for i in range(6)]
    s, rep = fasvd.stacked(v, o, kind="VO", n_heads=6, norm=norm, compute=compute,
                           return_report=True)
    assert rep["shape"] == (6 * 40, 40)
    close(s, ref_stack(vo_heads, norm), tol)
    qk_heads = [Q[i].T @ K[i // 3] for i in range(6)]
    close(fasvd.stacked(q, k, kind="QK", n_heads=6, norm=norm, compute=compute),
          ref_stack(qk_heads, norm), tol)
    kq_heads = [K[i // 3].T @ Q[i] for i in range(6)]
    close(fasvd.stacked(q, k, kind="KQ", n_heads=6, norm=norm, compute=compute),
          ref_stack(kq_heads, norm), tol)


def test_stacked_methods_and_head_norms():
    q, k, v, o = gqa_model()
    O = per_head(o, 6, 8, "cols")
    for method in ("gram", "direct"):
        s, rep = fasvd.stacked(o, kind="O", n_heads=6, method=method, return_report=True)
        assert rep["method"] == method
        close(s, ref_stack(O), F32_TOL)
    d = rng.uniform(1, 3, size=6)
    close(fasvd.stacked(o, kind="O", n_heads=6, head_norms=d, compute="f64"),
          svals(np.vstack([m / x for m, x in zip(O, d)])), F64_TOL)
    with pytest.raises(fasvd.ShapeError):
        fasvd.stacked(o, kind="O", n_heads=6, head_norms=d[:5])
    vo = [per_head(v, 2, 8)[i // 3].T @ O[i] for i in range(6)]
    close(fasvd.stacked(v, o, kind="VO", n_heads=6, head_norms=d, compute="f64"),
          svals(np.vstack([m / x for m, x in zip(vo, d)])), F64_TOL)
    with pytest.raises(fasvd.ShapeError):
        fasvd.stacked(v, o, kind="VO", n_heads=6, head_norms=d[:2])


@pytest.mark.parametrize("side", ["input", "output"])
@pytest.mark.parametrize("center", [False, True])
def test_shared_subspace(side, center):
    n, hd, cols, r = 5, 6, 30, 4
    basis = np.linalg.qr(rng.standard_normal((cols, r)))[0].T
    w = np.stack([rng.standard_normal((hd, r)) @ basis + 1e-3 * rng.standard_normal((hd, cols))
                  for _ in range(n)])
    sp = fasvd.shared_subspace(w, side=side, center=center, tau=1e-3, compute="f64")
    assert sp.n_heads == n and sp.rank >= 1
    if side == "input":
        assert sp.basis.shape == (sp.rank, cols)
        np.testing.assert_allclose(sp.basis @ sp.basis.T, np.eye(sp.rank), atol=1e-12)
        assert sp.factors.shape == (n, hd, sp.rank)
        stack = np.vstack(list(w))
    else:
        assert sp.basis.shape == (hd, sp.rank)
        np.testing.assert_allclose(sp.basis.T @ sp.basis, np.eye(sp.rank), atol=1e-12)
        assert sp.factors.shape == (n, sp.rank, cols)
        stack = np.hstack(list(w))
    if center:
        assert sp.mean is not None
        stack = stack - (stack.mean(axis=0, keepdims=True) if side == "input"
                         else stack.mean(axis=1, keepdims=True))
    else:
        assert sp.mean is None
    ref = svals(stack)
    close(sp.spectrum, ref, F64_TOL)
    assert sp.rank == fasvd.effective_rank(ref, 1e-3)
    assert abs(sp.energy_lost - fasvd.energy_loss(ref, sp.rank)) <= 1e-12
    for i in range(n):
        err = np.linalg.norm(w[i] - sp.reconstruct(i))
        assert abs(err - sp.abs_errors[i]) <= 1e-9 * np.linalg.norm(w[i])
        assert abs(sp.rel_errors[i] - err / np.linalg.norm(w[i])) <= 1e-9
    # fixed rank
    sp2 = fasvd.shared_subspace(w, rank=2, side=side, compute="f64")
    assert sp2.rank == 2


def test_metrics_against_numpy():
    for _ in range(20):
        s = np.sort(rng.exponential(size=rng.integers(1, 60)))[::-1]
        e = s ** 2
        lost = 1 - np.cumsum(e) / e.sum()  # lost[r-1] = loss at rank r
        for tau in (0.5, 0.1, 0.01, 0.001):
            r = int(np.argmax(np.concatenate([[1.0], lost]) <= tau + 1e-15))
            assert fasvd.effective_rank(s, tau) == r
        assert np.isclose(fasvd.stable_rank(s), e.sum() / e[0], rtol=1e-14)
        p = s / s.sum()
        assert np.isclose(fasvd.entropy_rank(s), np.exp(-np.sum(p * np.log(p))), rtol=1e-12)
        assert np.isclose(fasvd.frobenius_norm(s), np.sqrt(e.sum()), rtol=1e-14)
        assert np.isclose(fasvd.nuclear_norm(s), s.sum(), rtol=1e-14)
        assert fasvd.spectral_norm(s) == s[0]
        assert np.isclose(fasvd.energy_kept(s, 3), e[:3].sum() / e.sum(), rtol=1e-12)
        assert fasvd.components_for_energy(s, 0.9) == fasvd.effective_rank(s, 0.1) or \
            abs(np.cumsum(e)[fasvd.effective_rank(s, 0.1) - 1] / e.sum() - 0.9) < 1e-12
    # rows of a 2-D array and several taus
    m = np.sort(rng.exponential(size=(4, 20)), axis=1)[:, ::-1]
    er = fasvd.effective_rank(m, (0.01, 0.001))
    assert er.shape == (4, 2)
    assert all(er[i, 0] == fasvd.effective_rank(m[i], 0.01) for i in range(4))
    assert fasvd.effective_rank(np.zeros(5), 0.01) == 0
    summ = fasvd.metrics.summary(m[0])
    assert summ["effective_rank"][0.01] == er[0, 0] and summ["n"] == 20
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.effective_rank([1.0, 2.0], 0.01)  # not descending
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.effective_rank([2.0, -1.0], 0.01)
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.effective_rank([2.0, 1.0], 1.5)
    with pytest.raises(fasvd.NonFiniteError):
        fasvd.effective_rank([np.nan, 1.0], 0.1)


def test_attention_map():
    qa = rng.standard_normal((12, 8))
    ka = rng.standard_normal((12, 8))
    logits = qa @ ka.T / np.sqrt(8)
    for causal in (False, True):
        lg = np.where(np.tril(np.ones((12, 12), bool)), logits, -np.inf) if causal else logits
        p = np.exp(lg - lg.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        A = fasvd.attention_map(qa, ka, causal=causal)
        np.testing.assert_allclose(A, p, atol=1e-12)
        close(fasvd.attention_svdvals(qa, ka, causal=causal), svals(p), F64_TOL)
    with pytest.raises(fasvd.ShapeError):
        fasvd.attention_map(qa, ka[:, :5])


def test_factor_energy_identity():
    w = rng.standard_normal((48, 30)) @ np.diag(np.logspace(0, -2, 30))
    ref = svals(w)
    A, B, rep = fasvd.factor(w, energy_loss=0.01, out_dtype="f64", verify=True)
    r = rep["rank"]
    assert r == fasvd.effective_rank(ref, 0.01) and A.shape == (48, r) and B.shape == (r, 30)
    lost = np.linalg.norm(w - A @ B) ** 2 / np.linalg.norm(w) ** 2
    assert abs(lost - np.sum(ref[r:] ** 2) / np.sum(ref ** 2)) <= 1e-12
    assert abs(rep["energy_lost"] - lost) <= 1e-12 and abs(rep["rel_error_sq"] - lost) <= 1e-12
    A, B, rep = fasvd.factor(w, rank=5, split="left", out_dtype="f64")
    np.testing.assert_allclose(B @ B.T, np.eye(5), atol=1e-12)
    A, B, rep = fasvd.factor(w, rank=4, heads=3, out_dtype="f64")
    assert A.shape == (3, 16, 4) and B.shape == (3, 4, 30)
    for h in range(3):
        blk = w[16 * h:16 * (h + 1)]
        lost = np.linalg.norm(blk - A[h] @ B[h]) ** 2
        assert abs(lost - np.sum(svals(blk)[4:] ** 2)) <= 1e-10 * np.sum(blk ** 2)
    A, B, rep = fasvd.factor(w, rank=3, out_dtype="f16")
    assert A.dtype == np.float16


def test_factor_fused_matches_materialised_products():
    q, k, v, o = gqa_model()
    V, O = per_head(v, 2, 8), per_head(o, 6, 8, "cols")
    F = [V[i // 3].T @ O[i] for i in range(6)]
    total = sum(np.linalg.norm(f) ** 2 for f in F)
    A, B, rep = fasvd.factor_fused(v, o, "VO", n_heads=6, energy_loss=0.05, out_dtype="f64",
                                   compute="f64")
    r = rep["rank"]
    assert A.shape == (6, 40, r) and B.shape == (6, r, 40) and rep["heads"] == 6
    lost = sum(np.linalg.norm(F[i] - A[i] @ B[i]) ** 2 for i in range(6)) / total
    optimal = sum(np.sum(svals(f)[r:] ** 2) for f in F) / total
    assert abs(lost - optimal) <= 1e-12 and abs(rep["energy_lost"] - optimal) <= 1e-12
    assert lost <= 0.05
    assert sum(np.sum(svals(f)[r - 1:] ** 2) for f in F) / total > 0.05  # smallest such r
    Q, K = per_head(q, 6, 8), per_head(k, 2, 8)
    A, B, rep = fasvd.factor_fused(q, k, "QK", n_heads=6, rank=3, out_dtype="f64",
                                   compute="f64")
    for i in range(6):
        f = Q[i].T @ K[i // 3]
        assert abs(np.linalg.norm(f - A[i] @ B[i]) ** 2 - np.sum(svals(f)[3:] ** 2)) <= \
            1e-10 * np.linalg.norm(f) ** 2


def test_factor_shared_kv_pca_and_mla_o():
    """fasvd.factor_shared: the shared K/V basis (centred) reconstructs each
    head as mean + A_i @ basis with the loss of the stack's spectrum, and
    float64 input is factorised in float64 by default (C and Python)."""
    q, k, v, o = gqa_model()
    basis, factors, mean, rep = fasvd.factor_shared([k, v], n_heads=2, kind="K",
                                                    energy_loss=0.05, center=True,
                                                    out_dtype="f64", verify=True)
    heads = per_head(k, 2, 8) + per_head(v, 2, 8)
    r = rep["rank"]
    assert basis.shape == (r, 40) and factors.shape == (4, 8, r) and mean.shape == (1, 40)
    np.testing.assert_allclose(basis @ basis.T, np.eye(r), atol=1e-10)
    total = sum(np.linalg.norm(h) ** 2 for h in heads)
    lost = sum(np.linalg.norm(h - mean - factors[i] @ basis) ** 2
               for i, h in enumerate(heads)) / total
    assert abs(lost - rep["rel_error_sq"]) <= 1e-10
    # no centring: the loss is the optimum of the stacked heads' spectrum,
    # to float64 rounding (float32 compute would be ~1e-7 off)
    basis, factors, mean, rep = fasvd.factor_shared([k, v], n_heads=2, kind="K", rank=5,
                                                    out_dtype="f64", verify=True)
    stack = np.vstack(heads)
    opt = np.sum(svals(stack)[5:] ** 2) / np.linalg.norm(stack) ** 2
    assert mean is None and abs(rep["rel_error_sq"] - opt) <= 1e-12
    assert abs(rep["energy_lost"] - opt) <= 1e-12
    # MLA-o: o_proj ≈ basis.T @ [A_1.T | ... ]: one output basis for all heads
    basis, factors, _, rep = fasvd.factor_shared(o, n_heads=6, kind="O", rank=4,
                                                 out_dtype="f64")
    O = per_head(o, 6, 8, "cols")
    assert rep["heads"] == 6 and basis.shape == (4, 40) and factors.shape == (6, 8, 4)
    stack = np.vstack(O)
    lost = sum(np.linalg.norm(O[i] - factors[i] @ basis) ** 2 for i in range(6))
    assert abs(lost / np.linalg.norm(stack) ** 2 -
               np.sum(svals(stack)[4:] ** 2) / np.linalg.norm(stack) ** 2) <= 1e-12
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.factor_shared([k, v], n_heads=[2], kind="K")


def test_factor_calibrated_whitening():
    """Activation-aware factors (SVD-LLM): the activation-space loss
    ||(W - AB) X^T||^2 / ||W X^T||^2 is the optimum sum_{i>r} s_i(W S)^2 of the
    whitened matrix (S: Cholesky of X^T X) and beats plain SVD's; a
    singular X^T X (fewer tokens than inputs) is regularised."""
    w = rng.standard_normal((24, 16))
    x = rng.standard_normal((60, 16)) * np.logspace(0, -2, 16)
    g = x.T @ x
    s = np.linalg.cholesky(g)

    def act(a, b):
        return np.linalg.norm((w - a @ b) @ x.T) ** 2 / np.linalg.norm(w @ x.T) ** 2

    for r in (2, 5, 9):
        A, B, rep = fasvd.factor(w, rank=r, out_dtype="f64", calibration=g, verify=True)
        sv = svals(w @ s)
        opt = np.sum(sv[r:] ** 2) / np.sum(sv ** 2)
        assert abs(act(A, B) - opt) <= 1e-4 * opt
        assert abs(rep["act_energy_lost"] - act(A, B)) <= 1e-10
        assert abs(rep["energy_lost"] - np.linalg.norm(w - A @ B) ** 2 /
                   np.linalg.norm(w) ** 2) <= 1e-10
        P, Q, prep = fasvd.factor(w, rank=r, out_dtype="f64", calibration=g, whiten=False)
        assert act(A, B) < act(P, Q) and abs(prep["act_energy_lost"] - act(P, Q)) <= 1e-10
        assert prep["energy_lost"] < rep["energy_lost"] and prep["act_optimal_energy_lost"] is None
        # the Cholesky factor gives the same factors
        C, D, _ = fasvd.factor(w, rank=r, out_dtype="f64", calibration=s,
                               calibration_cholesky=True)
        np.testing.assert_allclose(C @ D, A @ B, atol=1e-8)
    x5 = x[:5]
    A, B, rep = fasvd.factor(w, rank=5, out_dtype="f64", calibration=x5.T @ x5)
    assert rep["calibration_shift"] > 0
    assert np.linalg.norm((w - A @ B) @ x5.T) ** 2 <= 1e-5 * np.linalg.norm(w @ x5.T) ** 2
    A, B, rep = fasvd.factor(w, rank=3)
    assert rep["act_energy_lost"] is None
