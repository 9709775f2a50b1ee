"""Truncated checkpoints load in Hugging Face transformers (the real PyPI
package): `format="dense"` as the original architecture, `format="factors"`
through its loader with trust_remote_code=True, and never as the dense
architecture without it. Both give the outputs of the original model with
every replaced weight set to A @ B (logits of stories260K, embeddings of
all-MiniLM-L6-v2), within 1e-4. Skipped, with the reason, when torch or
transformers cannot be imported or the MiniLM wheel cannot be had."""

import os
import sys

import numpy as np
import pytest

from support import HERE, require_library

require_library()

import fasvd  # noqa: E402

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
transformers = pytest.importorskip("transformers",
                                   reason="transformers (PyPI) is not installed")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
STORIES = os.path.join(REPO, "tests", "data", "stories260K")
TOL = 1e-4


def _factors(folder):
    from safetensors.numpy import load_file
    out = {}
    for f in os.listdir(folder):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(folder, f)))
    return out


def _dense_reference(model, entries, folder):
    """`model` (the original) with every replaced weight set to A @ B,
    computed here from the factors of `folder`."""
    fs = _factors(folder)
    sd = model.state_dict()
    for e in entries:
        a = fs[e["a_name"]].astype(np.float64)
        b = fs[e["b_name"]].astype(np.float64)
        w = (a @ b).reshape(sd[e["name"]].shape)
        sd[e["name"]] = torch.from_numpy(w).to(sd[e["name"]].dtype)
    model.load_state_dict(sd)
    return model.eval()


def _max_diff(x, y):
    return float((x.double() - y.double()).abs().max())


@pytest.mark.parametrize("layout", ["whole", "per_head_shared_o"])
def test_stories260k_dense_and_factors_load(tmp_path, layout):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM
    kw = dict(per_head=True, shared_o=True) if layout != "whole" else {}
    d, f = str(tmp_path / "dense"), str(tmp_path / "factors")
    ents = fasvd.truncate(STORIES, d, energy_loss=0.01, format="dense", **kw)
    fents = fasvd.truncate(STORIES, f, energy_loss=0.01, allow_larger=True, **kw)
    assert [e["name"] for e in ents] == [e["name"] for e in fents] and len(ents) == 20
    ref = _dense_reference(LlamaForCausalLM.from_pretrained(STORIES), fents, f)
    dense = AutoModelForCausalLM.from_pretrained(d)
    fact = AutoModelForCausalLM.from_pretrained(f, trust_remote_code=True)
    assert any(type(m).__name__ == "FasvdLowRankLinear" for m in fact.modules())
    ids = torch.tensor([[1, 403, 29, 7, 260, 90, 11, 388, 45, 2]])
    with torch.no_grad():
        lr, ld, lf = ref(ids).logits, dense(ids).logits, fact(ids).logits
        lo = LlamaForCausalLM.from_pretrained(STORIES)(ids).logits
    assert _max_diff(ld, lr) <= TOL and _max_diff(lf, lr) <= TOL
    assert _max_diff(lo, lr) > 100 * TOL  # the truncation did change the model
    # the factors never load as the dense architecture
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForCausalLM.from_pretrained(f)
    with pytest.raises((OSError, ValueError), match="fasvd.lowrank|metadata"):
        LlamaForCausalLM.from_pretrained(f)


def _minilm(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
    try:
        import real_models
    finally:
        sys.path.pop(0)
    cache = os.environ.get("FASVD_MODEL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fasvd-test-models")
    try:
        return real_models.fetch_minilm(cache)
    except RuntimeError as e:
        pytest.skip("all-MiniLM-L6-v2 unavailable: %s" % e)


def test_minilm_embeddings_dense_and_factors(tmp_path):
    from transformers import AutoModel, BertModel
    model = _minilm(tmp_path)
    d, f = str(tmp_path / "dense"), str(tmp_path / "factors")
    ents = fasvd.truncate(model, d, rank=96, format="dense")
    fents = fasvd.truncate(model, f, rank=16, per_head=True)
    assert len(ents) == len(fents) == 24
    ref = BertModel.from_pretrained(model)
    # per-head factors: rebuild each head's rows, A[k] @ B[k]
    fs = _factors(f)
    sd = ref.state_dict()
    for e in fents:
        a, b = fs[e["a_name"]].astype(np.float64), fs[e["b_name"]].astype(np.float64)
        w = np.matmul(a, b).reshape(sd[e["name"]].shape) if a.ndim == 3 else a @ b
        sd[e["name"]] = torch.from_numpy(w).float()
    ref.load_state_dict(sd)
    ref.eval()
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 6251, 102]])
    mask = torch.ones_like(ids)

    def emb(m):
        with torch.no_grad():
            h = m(input_ids=ids, attention_mask=mask).last_hidden_state
        return h.mean(dim=1)

    dense = AutoModel.from_pretrained(d)
    fact = AutoModel.from_pretrained(f, trust_remote_code=True)
    er = emb(ref)
    # the dense output is rank 96 whole-matrix, the reference per head: compare
    # each with its own reference
    ref_whole = _dense_reference(BertModel.from_pretrained(model),
                                 [dict(e, a_name=e["name"] + ".A", b_name=e["name"] + ".B")
                                  for e in ents], _whole_factors(model, tmp_path))
    assert _max_diff(emb(dense), emb(ref_whole)) <= TOL
    assert _max_diff(emb(fact), er) <= TOL
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModel.from_pretrained(f)


def _whole_factors(model, tmp_path):
    out = str(tmp_path / "whole")
    fasvd.truncate(model, out, rank=96)
    return out


def _held_out(n, length, seed):
    g = np.random.default_rng(seed)
    return [[1] + list(g.integers(3, 512, length)) for _ in range(n)]


def test_calibration_collect_and_activation_aware_truncation(tmp_path):
    """fasvd.calibration.collect writes the Gram of each Linear's inputs
    (checked against hooks of our own); truncating stories260K with it
    gives every weight a smaller activation-space loss than plain SVD at
    the same rank (both measured on those Grams)."""
    from transformers import LlamaForCausalLM
    import fasvd.calibration as cal
    model = LlamaForCausalLM.from_pretrained(STORIES)
    seqs = _held_out(6, 40, 3)
    path = str(tmp_path / "calib.safetensors")
    grams = cal.collect(model, seqs, path, dtype="f64")
    assert "model.layers.0.self_attn.q_proj.input_gram" in grams
    x = []
    h = model.model.layers[2].self_attn.o_proj.register_forward_hook(
        lambda m, i, o: x.append(i[0].reshape(-1, i[0].shape[-1]).double()))
    with torch.no_grad():
        for s in seqs:
            model(input_ids=torch.tensor([s]))
    h.remove()
    X = torch.cat(x).numpy()
    np.testing.assert_allclose(grams["model.layers.2.self_attn.o_proj.input_gram"], X.T @ X,
                               rtol=1e-10, atol=1e-10)
    white = fasvd.truncate(STORIES, str(tmp_path / "w"), rank=4, calibration=path,
                           format="dense")
    plain = fasvd.truncate(STORIES, str(tmp_path / "p"), rank=4, calibration=path,
                           whiten=False, format="dense")
    assert len(white) == len(plain) == 20
    for a, b in zip(white, plain):
        assert a["name"] == b["name"]
        assert a["report"]["act_energy_lost"] < b["report"]["act_energy_lost"]
        assert a["report"]["energy_lost"] > b["report"]["energy_lost"]
    with pytest.raises(fasvd.NotFoundError, match="input_gram"):
        cal.write_grams(str(tmp_path / "few.safetensors"),
                        {"model.layers.0.self_attn.q_proj.input_gram": np.eye(64)})
        fasvd.truncate(STORIES, str(tmp_path / "x"), rank=4,
                       calibration=str(tmp_path / "few.safetensors"))
