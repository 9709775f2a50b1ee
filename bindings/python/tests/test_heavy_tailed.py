"""Heavy-tailed metrics (metrics.h): the power-law fit against the
`weightwatcher` package from PyPI on the same eigenvalues, the
Marchenko-Pastur quantities against their closed forms, and undefined
metrics reported as None.

weightwatcher is used when it can be imported (pip install weightwatcher);
otherwise the comparisons are skipped with the reason. The MiniLM comparison
needs the all-MiniLM-L6-v2 folder that tests/reference/real_models.py caches
($FASVD_MODEL_CACHE, default ~/.cache/fasvd-test-models)."""

import json
import os

import numpy as np
import pytest

from support import SKIP_REASON

pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=str(SKIP_REASON))

try:
    from weightwatcher.WW_powerlaw import WWFit
    from weightwatcher.constants import EVALS_THRESH
    WW_SKIP = None
except Exception as e:  # noqa: BLE001 (any import failure: skip with it)
    WWFit = None
    WW_SKIP = "weightwatcher is not importable (pip install weightwatcher): %s" % e

REL = 1e-8


def ww_fit(s):
    """weightwatcher's fit of the eigenvalues s**2, as its fit_powerlaw
    calls it (no xmin, no xmax, eigenvalues above EVALS_THRESH)."""
    evals = np.asarray(s, dtype=np.float64) ** 2
    nz = evals[evals > EVALS_THRESH]
    fit = WWFit(nz)
    return fit.alpha, fit.D, fit.xmin, int(np.sum(evals >= fit.xmin))


def assert_matches_ww(s, what):
    import fasvd
    got = fasvd.metrics.powerlaw(s)
    assert got is not None, what
    alpha, d, xmin, tail = ww_fit(s)
    assert got["alpha"] == pytest.approx(alpha, rel=REL), what
    assert got["D"] == pytest.approx(d, rel=REL), what
    assert got["xmin"] == pytest.approx(xmin, rel=REL), what
    assert got["n_tail"] == tail, what


def heavy_tailed_matrices():
    rng = np.random.default_rng(1404)
    yield "student-t(3) 300x200", rng.standard_t(3, size=(300, 200))
    yield "student-t(2.5) 150x400", 0.01 * rng.standard_t(2.5, size=(150, 400))
    yield "pareto(1.5) 256x256", rng.pareto(1.5, size=(256, 256)) * rng.choice([-1, 1],
                                                                              (256, 256))
    # a low-rank signal plus heavy-tailed noise, and a small one (N = 40)
    u, v = rng.standard_normal((200, 5)), rng.standard_normal((5, 120))
    yield "spiked 200x120", u @ v + rng.standard_t(4, size=(200, 120))
    yield "student-t(3) 40x64", rng.standard_t(3, size=(40, 64))


@pytest.mark.skipif(WW_SKIP is not None, reason=str(WW_SKIP))
@pytest.mark.parametrize("what,m", list(heavy_tailed_matrices()))
def test_powerlaw_matches_weightwatcher(what, m):
    assert_matches_ww(np.linalg.svd(m, compute_uv=False), what)


def minilm_dir():
    cache = os.environ.get("FASVD_MODEL_CACHE",
                           os.path.expanduser("~/.cache/fasvd-test-models"))
    path = os.path.join(cache, "all-MiniLM-L6-v2")
    return path if os.path.exists(os.path.join(path, "model.safetensors")) else None


@pytest.mark.skipif(WW_SKIP is not None, reason=str(WW_SKIP))
@pytest.mark.skipif(minilm_dir() is None,
                    reason="all-MiniLM-L6-v2 is not cached (run the reference-real-models "
                           "test once, or set FASVD_MODEL_CACHE)")
def test_minilm_stacked_o_matches_weightwatcher(tmp_path):
    """alpha, D and xmin of every layer's stacked O of MiniLM, from the
    analyze summary, equal weightwatcher's fit of the same spectrum."""
    import fasvd
    out, js = str(tmp_path / "s.safetensors"), str(tmp_path / "s.json")
    with fasvd.open(minilm_dir()) as m:
        m.analyze(out, json_path=js, compute="f64")
        n_layers = m.n_layers
    spectra = fasvd.load_spectra(out)
    with open(js) as f:
        rows = {(r["layer"], r["kind"], r["name"], r["head"]): r for r in json.load(f)["matrices"]}
    for layer in range(n_layers):
        s = np.asarray(spectra.stacked[layer]["O"], dtype=np.float64)
        what = "L%d.stack.O" % layer
        assert_matches_ww(s, what)
        row = rows[(layer, "stack", "O", None)]
        alpha, d, xmin, tail = ww_fit(s)
        assert row["alpha"] == pytest.approx(alpha, rel=REL), what
        assert row["alpha_D"] == pytest.approx(d, rel=REL), what
        assert row["alpha_xmin"] == pytest.approx(xmin, rel=REL), what
        assert row["alpha_tail"] == tail, what
        assert row["alpha_weighted"] == pytest.approx(alpha * np.log10(s[0] ** 2), rel=1e-12)


def test_marchenko_pastur_closed_forms():
    """On Gaussian matrices: the bulk edge is sigma^2 (sqrt(N) + sqrt(M))^2
    with sigma^2 = ||W||_F^2 / (N M); the largest eigenvalue of pure noise
    sits at the edge (soft rank ~ 1); k planted spikes well above the edge
    are counted as k."""
    import fasvd
    rng = np.random.default_rng(7)
    for n, m in ((400, 200), (300, 300), (100, 500)):
        w = 0.3 * rng.standard_normal((n, m))
        s = np.linalg.svd(w, compute_uv=False)
        got = fasvd.metrics.marchenko_pastur(s, n, m)
        sigma2 = np.sum(s ** 2) / (n * m)
        edge = sigma2 * (np.sqrt(n) + np.sqrt(m)) ** 2
        assert got["bulk_edge"] == pytest.approx(edge, rel=1e-12)
        assert got["soft_rank"] == pytest.approx(edge / s[0] ** 2, rel=1e-12)
        # the largest eigenvalue of noise converges to the edge (Tracy-Widom
        # fluctuations are O(N^(-2/3)): a few percent here)
        assert got["soft_rank"] == pytest.approx(1.0, abs=0.06)
        assert got["spikes"] == int(np.sum(s ** 2 > edge))
        assert got["spikes"] <= 1
        # aspect-ratio form: lambda+ = sigma^2 max(N, M) (1 + 1/sqrt(Q))^2
        q = max(n, m) / min(n, m)
        assert got["bulk_edge"] == pytest.approx(sigma2 * max(n, m) * (1 + q ** -0.5) ** 2,
                                                 rel=1e-12)
    n, m, k = 400, 200, 3
    w = rng.standard_normal((n, m))
    u, _ = np.linalg.qr(rng.standard_normal((n, k)))
    v, _ = np.linalg.qr(rng.standard_normal((m, k)))
    w += u @ np.diag([200.0, 150.0, 120.0]) @ v.T
    got = fasvd.metrics.marchenko_pastur(np.linalg.svd(w, compute_uv=False), n, m)
    assert got["spikes"] == k


def test_log_norms_and_scale():
    import fasvd
    s = np.array([3.0, 2.0, 1.0])
    lf, lm = fasvd.metrics.log_norms(s)
    assert lf == pytest.approx(np.log10(14.0), rel=1e-14)
    assert lm == pytest.approx(np.log10(9.0), rel=1e-14)
    # no overflow for a spectrum whose squares overflow
    lf, lm = fasvd.metrics.log_norms(s * 1e200)
    assert lf == pytest.approx(400 + np.log10(14.0), rel=1e-14)
    # alpha is scale-invariant up to the 1e-5 threshold
    t = np.linalg.svd(np.random.default_rng(3).standard_t(3, size=(120, 80)),
                      compute_uv=False) + 1.0
    a1, a2 = fasvd.metrics.powerlaw(t), fasvd.metrics.powerlaw(10.0 * t)
    assert a1["alpha"] == pytest.approx(a2["alpha"], rel=1e-10)
    assert a2["xmin"] == pytest.approx(100.0 * a1["xmin"], rel=1e-12)
    assert fasvd.metrics.alpha_weighted(t) == pytest.approx(a1["alpha"] * np.log10(t[0] ** 2),
                                                            rel=1e-12)


def test_undefined_metrics_are_none():
    import fasvd
    # fewer than 20 eigenvalues above 1e-5: no fit
    s = np.linspace(2.0, 1.0, 19)
    assert fasvd.metrics.powerlaw(s) is None
    assert fasvd.metrics.alpha_weighted(s) is None
    # a zero tail does not count: 30 values, 19 above the threshold
    z = np.concatenate([s, np.zeros(11)])
    assert fasvd.metrics.powerlaw(z) is None
    assert fasvd.metrics.log_norms(np.zeros(5)) == (None, None)
    assert fasvd.metrics.marchenko_pastur(np.zeros(5), 10, 5) is None
    h = fasvd.metrics.heavy_tailed(np.linspace(3.0, 1.0, 40), rows=64, cols=64, max_rank=16)
    # only the first max_rank = 16 values enter: alpha undefined; MP
    # undefined for a structurally rank-deficient matrix
    assert h["alpha"] is None and h["alpha_weighted"] is None and h["mp_spikes"] is None
    assert h["log10_lambda_max"] == pytest.approx(np.log10(9.0))
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.metrics.marchenko_pastur(np.ones(6), 10, 5)


def test_analyze_summary_nulls(llama_dir, tmp_path):
    """Per-head QK of the fixture (rank <= head_dim = 16 < 20 eigenvalues):
    alpha is null in JSON and empty in CSV; MP is null for every per-head
    fused product (rank-deficient) and a number for the stacked Q."""
    import fasvd
    out, js, cs = (str(tmp_path / n) for n in ("s.safetensors", "s.json", "s.csv"))
    with fasvd.open(llama_dir) as m:
        m.analyze(out, json_path=js, csv_path=cs)
    with open(js) as f:
        rows = json.load(f)["matrices"]
    qk = [r for r in rows if r["kind"] == "head" and r["name"] == "QK"]
    assert qk and all(r["alpha"] is None and r["mp_soft_rank"] is None for r in qk)
    assert all(r["log10_lambda_max"] is not None for r in qk)
    sq = [r for r in rows if r["kind"] == "stack" and r["name"] == "Q"]
    assert sq and all(r["mp_soft_rank"] is not None for r in sq)
    with open(cs) as f:
        header = f.readline().strip().split(",")
        line = next(x for x in f if ',"QK",' in x and x.split(",")[1] == "head")
    cells = dict(zip(header, line.strip().split(",")))
    assert cells["alpha"] == "" and cells["mp_soft_rank"] == ""
    assert float(cells["log10_lambda_max"]) == pytest.approx(qk[0]["log10_lambda_max"])


def test_table_matches_summary(llama_dir, tmp_path):
    """Result.table() carries the same heavy-tailed values as the JSON."""
    import fasvd
    out, js = str(tmp_path / "s.safetensors"), str(tmp_path / "s.json")
    with fasvd.open(llama_dir) as m:
        res = m.analyze(out, json_path=js)
    with open(js) as f:
        want = {(r["layer"], r["kind"], r["name"], r["head"]): r for r in json.load(f)["matrices"]}
    keys = ("alpha", "alpha_D", "alpha_xmin", "alpha_tail", "alpha_weighted",
            "log10_frobenius_sq", "log10_lambda_max", "mp_bulk_edge", "mp_soft_rank",
            "mp_spikes")
    rows = res.table()
    assert len(rows) == len(want)
    for row in rows:
        w = want[(row["layer"], row["kind"], row["name"], row["head"])]
        for k in keys:
            if w[k] is None:
                assert row[k] is None, (k, row)
            else:
                assert row[k] == pytest.approx(w[k], rel=1e-12), (k, row)
