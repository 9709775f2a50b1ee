"""bench/truncate_quality.py's shared-subspace rows on stories260K at a small
budget, without evaluating the whole table: every K/V and o_proj method
gives weights of the right shape at the parameter count of separate SVD
(within one rank step of its own representation), the MLA-o shared output
basis equals the SVD of o_proj, and energy weighting moves the shared K/V
basis towards V. Skipped, with the reason, without torch or transformers."""

import importlib.util
import os

import numpy as np
import pytest

from support import HERE, require_library

require_library()

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
pytest.importorskip("transformers", reason="transformers (PyPI) is not installed")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
BUDGET = 0.25


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "truncate_quality", os.path.join(REPO, "bench", "truncate_quality.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaForCausalLM
    return LlamaForCausalLM.from_pretrained(
        os.path.join(REPO, "tests", "data", "stories260K")).eval()


def _changed(bench, model, new):
    for name, w in new.items():
        old = bench.weight(model, name)
        assert w.shape == old.shape and np.isfinite(w).all()
        assert not np.allclose(w, old)


def test_kv_rows_at_equal_parameters(bench, model):
    k = bench.weight(model, "model.layers.0.self_attn.k_proj")
    m, n = k.shape  # 32 x 64: K and V of every layer
    dense = 2 * m * n
    steps = {"separate SVD": 2 * (m + n), "separate PCA (centred)": 2 * (m + n)}
    rows = {r[0]: r for r in bench.kv_variants(model, BUDGET)}
    assert list(rows) == [label for label, _ in bench.KV_METHODS]
    sep = rows["separate SVD"][2]
    assert 0 < sep < BUDGET + 1e-9
    for label, new, frac, k_lost, v_lost in rows.values():
        _changed(bench, model, new)
        assert len(new) == 10
        # one basis for [K; V] (2m x n) moves by 2m + n parameters a rank
        assert abs(frac - sep) * dense <= steps.get(label, 2 * m + n) + 1e-9, label
        assert 0 < k_lost < 1 and 0 < v_lost < 1
    # K's norm is 1.5-5x V's here: the plain shared basis follows K, the
    # energy-weighted one gives V back its share
    plain, weighted = rows["shared K/V"], rows["shared K/V, energy-weighted per matrix"]
    assert weighted[4] < plain[4] and weighted[3] > plain[3]
    seq = bench.sample(model, 1, 8, 0)
    kl, agree = bench.llm_metrics(model, bench.replaced(model, plain[1]), seq)
    assert kl > 0 and 0 <= agree <= 1


def test_o_rows_at_equal_parameters(bench, model):
    o = bench.weight(model, "model.layers.0.self_attn.o_proj")
    m, n = o.shape
    heads = model.config.num_attention_heads
    steps = {"separate SVD per head": heads * (m + n // heads)}
    rows = {r[0]: r for r in bench.o_variants(model, BUDGET)}
    assert list(rows) == [label for label, _ in bench.O_METHODS]
    sep = rows["separate SVD (whole matrix)"]
    for label, new, frac, lost in rows.values():
        _changed(bench, model, new)
        assert abs(frac - sep[2]) * m * n <= steps.get(label, m + n) + 1e-9, label
        assert 0 < lost < 1
    # one output basis shared by all heads, uncentred and unweighted, is the
    # best rank-r approximation of o_proj: the SVD itself
    mla = rows["MLA-o shared output basis"]
    for name, w in sep[1].items():
        np.testing.assert_allclose(mla[1][name], w, atol=1e-10)


def test_shared_rebuilds_the_weights_at_full_rank(bench, model):
    k = bench.weight(model, "model.layers.0.self_attn.k_proj")
    v = bench.weight(model, "model.layers.0.self_attn.v_proj")
    o = bench.weight(model, "model.layers.0.self_attn.o_proj")
    (k2, v2), p = bench.shared([k, v], 4, rank=k.shape[1], center=True)
    np.testing.assert_allclose(k2, k, atol=1e-12)
    np.testing.assert_allclose(v2, v, atol=1e-12)
    assert p == k.shape[1] * (2 * k.shape[0] + k.shape[1]) + k.shape[1]  # mean row counted
    (o2,), _ = bench.shared([o], 8, kind="O", rank=o.shape[0])
    np.testing.assert_allclose(o2, o, atol=1e-12)
