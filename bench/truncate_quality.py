#!/usr/bin/env python3
"""What attention truncation costs the model: plain SVD against activation-
aware (SVD-LLM whitening) factors at equal parameter budgets.

For each budget b (a fraction of every attention projection's parameters),
each q/k/v/o weight W [m, n] is replaced by A·B of rank
r = floor(b·m·n / (m + n)) (the same r for both methods), computed by
fasvd.factor, plain or with the calibration Gram of that weight's inputs
(fasvd.calibration.collect). Measured against the unmodified model:

- stories260K (tests/data/stories260K, LlamaForCausalLM): mean KL divergence
  KL(p_original || p_truncated) of the next-token distributions and top-1
  agreement, over sequences sampled from the model itself; calibration and
  evaluation sequences are disjoint (different seeds);
- all-MiniLM-L6-v2 (BERT, tests/reference/real_models.py's cache): mean
  cosine similarity of mean-pooled sentence embeddings, on random token-id
  sentences (the checkpoint ships no tokenizer), calibration and evaluation
  disjoint.

Then the shared-subspace truncations, through fasvd.factor_shared, against
separate per-matrix truncation at equal parameter counts (each rank chosen
so that its representation's parameters — basis, per-head factors and, when
centred, the mean row, as the library's report counts them — are nearest
those of separate SVD at the budget's rank; every variant's count printed),
with the same metrics and evaluation data:

- K/V: K and V of every layer truncated, Q and O kept. Separate SVD, and
  separate PCA (per matrix, centred), against one basis shared by every K
  and V head of the layer (the stacked [W_K; W_V]: W_i ≈ [μ] + A_i·B),
  plain, centred, and energy-weighted (K and V each scaled by 1/‖W‖_F in
  the fit — per matrix, by passing each as one head with
  weight="frobenius" — or each head by its own norm); at the three budgets
  and at energy-loss thresholds τ (per matrix, or of the shared stack), with
  the fractions of K's and V's energy each drops;
- MLA-o: o_proj of every layer truncated, Q, K and V kept. Its SVD, and
  each head's column block truncated separately, against one output basis
  shared by all heads (fasvd.factor_shared(o, kind="O")), plain, centred,
  and with each head weighted by 1/its norm.

usage: PYTHONPATH=bindings/python FASVD_LIBRARY=build/lib/libfasvd.so.0 \\
       python3 bench/truncate_quality.py
Needs torch and transformers; prints Markdown tables (about 3 minutes on
one core).
"""

import copy
import os
import sys

import numpy as np
import torch

import fasvd
import fasvd.calibration

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BUDGETS = (0.9, 0.75, 0.5)
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj", "attention.self.query",
        "attention.self.key", "attention.self.value", "attention.output.dense")
KVO = (("k_proj", "v_proj", "o_proj"),
       ("attention.self.key", "attention.self.value", "attention.output.dense"))
THRESHOLDS = (0.01, 0.05)


def attn_weights(model):
    return [n for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and n.endswith(ATTN)]


def weight(model, name):
    return model.get_submodule(name).weight.detach().double().numpy()


def replaced(model, new):
    """A copy of model with the weights of the Linears named in new replaced."""
    out = copy.deepcopy(model)
    for n, w in new.items():
        lin = out.get_submodule(n)
        lin.weight.data = torch.from_numpy(np.ascontiguousarray(w)).to(lin.weight.dtype)
    return out.eval()


def truncated(model, names, grams, budget):
    """A copy of model with every named Linear's weight replaced by A·B."""
    new, params, kept = {}, 0, 0
    for n in names:
        w = weight(model, n)
        m, k = w.shape
        r = int(budget * m * k / (m + k))
        g = grams[n + ".input_gram"] if grams is not None else None
        a, b, _ = fasvd.factor(w, rank=r, out_dtype="f64", compute="f64", calibration=g)
        new[n] = a @ b
        params += m * k
        kept += r * (m + k)
    return replaced(model, new), kept / params


# ------------------------------------------------ shared-subspace truncation

def attn_layers(model):
    """The (K, V, O) Linear names of every attention layer, the number of
    query heads and of key/value heads."""
    cfg = model.config
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    layers = []
    for n, _ in model.named_modules():
        for k, v, o in KVO:
            if n.endswith(k):
                layers.append((n, n[:-len(k)] + v, n[:-len(k)] + o))
    return layers, heads, kv_heads


def rank_for(params, step, fixed, most):
    """The rank r whose parameter count r·step + fixed is nearest params."""
    return int(min(most, max(1, round((params - fixed) / step))))


def shared(ws, n_heads, kind="K", **kw):
    """fasvd.factor_shared of the heads of ws (one basis for all), each
    weight rebuilt from the basis, its heads' factors and the mean; and the
    parameters that representation stores (basis, factors, mean row)."""
    basis, f, mu, rep = fasvd.factor_shared(ws, n_heads=n_heads, kind=kind, out_dtype="f64",
                                            compute="f64", **kw)
    rec = f @ basis + (0 if mu is None else mu)  # [heads, head rows, cols]
    per = len(rec) // len(ws)
    out = []
    for i in range(len(ws)):
        part = rec[i * per:(i + 1) * per].reshape(-1, rec.shape[2])
        out.append(part.T if kind == "O" else part)  # O heads are column blocks
    return out, rep["params_after"]


def plain(w, rank, tau, heads=None):
    a, b, rep = fasvd.factor(w, rank=rank, energy_loss=tau, heads=heads, out_dtype="f64",
                             compute="f64")
    return a @ b, rep["params_after"]


def kv_separate_svd(k, v, kv, params, tau):
    r = None if params is None else rank_for(params / 2, sum(k.shape), 0, min(k.shape))
    out = [plain(w, r, tau) for w in (k, v)]
    return [w for w, _ in out], sum(p for _, p in out)


def kv_separate_pca(k, v, kv, params, tau):
    m, n = k.shape
    r = None if params is None else rank_for(params / 2, m + n, n, min(m, n))
    out = [shared([w], kv, rank=r, energy_loss=tau, center=True) for w in (k, v)]
    return [ws[0] for ws, _ in out], sum(p for _, p in out)


def kv_shared(center=False, weight="none", per_matrix=False):
    """One basis for the stacked [K; V] of a layer: every K and V head
    (per_matrix: K and V as one head each, so that weight="frobenius"
    scales each matrix, not each head, by 1/its norm in the fit)."""
    def method(k, v, kv, params, tau):
        m, n = k.shape
        r = (None if params is None else
             rank_for(params, 2 * m + n, n if center else 0, min(2 * m, n)))
        return shared([k, v], 1 if per_matrix else kv, rank=r, energy_loss=tau, center=center,
                      weight=weight)
    return method


KV_METHODS = (("separate SVD", kv_separate_svd),
              ("separate PCA (centred)", kv_separate_pca),
              ("shared K/V", kv_shared()),
              ("shared K/V, centred", kv_shared(center=True)),
              ("shared K/V, energy-weighted per matrix", kv_shared(weight="frobenius",
                                                                   per_matrix=True)),
              ("shared K/V, energy-weighted per head", kv_shared(weight="frobenius")))


def kv_variants(model, budget=None, tau=None):
    """K and V of every layer truncated (Q and O kept), each method of
    KV_METHODS at the parameters of separate SVD at rank
    floor(budget·m·n / (m + n)), or at energy loss tau: rows (label, new
    weights, fraction of K/V parameters kept, K energy lost, V energy
    lost), energies summed over layers."""
    layers, _, kv = attn_layers(model)
    rows = []
    for label, method in KV_METHODS:
        new, kept, dense = {}, 0, 0
        lost, energy = np.zeros(2), np.zeros(2)
        for kn, vn, _ in layers:
            k, v = weight(model, kn), weight(model, vn)
            m, n = k.shape
            params = None if budget is None else 2 * (m + n) * int(budget * m * n / (m + n))
            (new[kn], new[vn]), p = method(k, v, kv, params, tau)
            kept += p
            dense += k.size + v.size
            lost += [((k - new[kn]) ** 2).sum(), ((v - new[vn]) ** 2).sum()]
            energy += [(k ** 2).sum(), (v ** 2).sum()]
        rows.append((label, new, kept / dense) + tuple(lost / energy))
    return rows


def o_plain(o, heads, params):
    return plain(o, rank_for(params, sum(o.shape), 0, min(o.shape)), None)


def o_per_head(o, heads, params):
    hd = o.shape[1] // heads
    w, p = plain(o.T, rank_for(params, heads * (hd + o.shape[0]), 0, hd), None, heads=heads)
    return w.reshape(-1, o.shape[0]).T, p


def o_shared(center=False, weight="none"):
    """MLA-o: one output basis of o_proj shared by every head (the O heads,
    [head_dim, hidden], with a shared input-side basis over hidden)."""
    def method(o, heads, params):
        m, n = o.shape
        r = rank_for(params, m + n, m if center else 0, min(m, n))
        (w,), p = shared([o], heads, kind="O", rank=r, center=center, weight=weight)
        return w, p
    return method


O_METHODS = (("separate SVD (whole matrix)", o_plain),
             ("separate SVD per head", o_per_head),
             ("MLA-o shared output basis", o_shared()),
             ("MLA-o, centred", o_shared(center=True)),
             ("MLA-o, energy-weighted per head", o_shared(weight="frobenius")))


def o_variants(model, budget):
    """o_proj of every layer truncated (Q, K, V kept), each method of
    O_METHODS at the parameters of separate SVD at rank
    floor(budget·m·n / (m + n)): rows (label, new weights, fraction of
    o_proj parameters kept, energy lost)."""
    layers, heads, _ = attn_layers(model)
    rows = []
    for label, method in O_METHODS:
        new, kept, dense, lost, energy = {}, 0, 0, 0.0, 0.0
        for _, _, on in layers:
            o = weight(model, on)
            m, n = o.shape
            new[on], p = method(o, heads, (m + n) * int(budget * m * n / (m + n)))
            kept += p
            dense += o.size
            lost += ((o - new[on]) ** 2).sum()
            energy += (o ** 2).sum()
        rows.append((label, new, kept / dense, lost / energy))
    return rows


def norm_ratios(model):
    """‖W_K‖_F / ‖W_V‖_F of every layer."""
    return [np.linalg.norm(weight(model, k)) / np.linalg.norm(weight(model, v))
            for k, v, _ in attn_layers(model)[0]]


def v_lost_per_layer(model, tau, **kw):
    """The fraction of each layer's ‖W_V‖² that the shared K/V basis chosen
    at energy loss tau (of the stack) drops."""
    layers, _, kv = attn_layers(model)
    out = []
    for k, v, _ in layers:
        v0 = weight(model, v)
        (_, v1), _ = kv_shared(**kw)(weight(model, k), v0, kv, None, tau)
        out.append(((v0 - v1) ** 2).sum() / (v0 ** 2).sum())
    return out


def sample(model, n, length, seed):
    g = torch.Generator().manual_seed(seed)
    seqs = []
    with torch.no_grad():
        for _ in range(n):
            ids = torch.tensor([[1]])
            for _ in range(length - 1):
                p = torch.softmax(model(ids).logits[0, -1].double(), -1)
                ids = torch.cat([ids, torch.multinomial(p, 1, generator=g).view(1, 1)], 1)
            seqs.append(ids[0].tolist())
    return seqs


def llm_metrics(ref, model, seqs):
    kl, agree, count = 0.0, 0, 0
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([s])
            lp = torch.log_softmax(ref(ids).logits[0].double(), -1)
            lq = torch.log_softmax(model(ids).logits[0].double(), -1)
            kl += float((lp.exp() * (lp - lq)).sum())
            agree += int((lp.argmax(-1) == lq.argmax(-1)).sum())
            count += len(s)
    return kl / count, agree / count


def emb(model, seqs):
    with torch.no_grad():
        return [model(input_ids=torch.tensor([s])).last_hidden_state[0].mean(0).double()
                for s in seqs]


def bert_metrics(ref_emb, model, seqs):
    e = emb(model, seqs)
    return float(np.mean([torch.nn.functional.cosine_similarity(a, b, dim=0).item()
                          for a, b in zip(ref_emb, e)]))


def stories():
    """stories260K, its calibration Grams and its metric of a changed copy."""
    from transformers import LlamaForCausalLM
    model = LlamaForCausalLM.from_pretrained(os.path.join(REPO, "tests", "data",
                                                          "stories260K")).eval()
    calib, evals = sample(model, 32, 64, 1), sample(model, 32, 64, 2)
    grams = fasvd.calibration.collect(model, calib)
    return model, grams, lambda changed: llm_metrics(model, changed, evals)


def load_minilm():
    from transformers import BertModel
    sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
    import real_models
    cache = os.environ.get("FASVD_MODEL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fasvd-test-models")
    return BertModel.from_pretrained(real_models.fetch_minilm(cache)).eval()


def minilm():
    """all-MiniLM-L6-v2, its calibration Grams and its metric of a changed copy."""
    model = load_minilm()

    def sentences(n, seed):
        r = np.random.default_rng(seed)
        return [[101] + list(r.integers(1000, 30000, int(r.integers(8, 33)))) + [102]
                for _ in range(n)]
    calib, evals = sentences(64, 1), sentences(64, 2)
    grams = fasvd.calibration.collect(model, calib)
    ref = emb(model, evals)
    return model, grams, lambda changed: bert_metrics(ref, changed, evals)


def llm_cell(m):
    return "%.4f, %.1f %%" % (m[0], 100 * m[1])


def cos_cell(m):
    return "%.5f" % m


MODELS = (("stories260K (KL, top-1)", stories, llm_cell),
          ("all-MiniLM-L6-v2 (cosine)", minilm, cos_cell))


def main():
    torch.manual_seed(0)
    runs = [(name, setup(), cell) for name, setup, cell in MODELS]
    print("| model | budget | params kept | plain SVD | activation-aware |")
    print("|---|---|---|---|---|")
    for name, (model, grams, metric), cell in runs:
        names = attn_weights(model)
        for b in BUDGETS:
            line = []
            for g in (None, grams):
                m, frac = truncated(model, names, g, b)
                line.append(cell(metric(m)))
            print("| %s | %d %% | %.1f %% | %s | %s |" % (name, 100 * b, 100 * frac, *line))

    print("\nK and V of every layer truncated, Q and O kept; budget and params kept are "
          "of the K and V parameters:\n")
    print("| model | budget | K/V truncation | params kept | metric | K energy lost "
          "| V energy lost |")
    print("|---|---|---|---|---|---|---|")
    for name, (model, _, metric), cell in runs:
        for b, tau in [(b, None) for b in BUDGETS] + [(None, t) for t in THRESHOLDS]:
            for label, new, frac, lk, lv in kv_variants(model, b, tau):
                print("| %s | %s | %s | %.1f %% | %s | %.4f | %.4f |"
                      % (name, "%d %%" % (100 * b) if tau is None else "τ = %g" % tau,
                         label, 100 * frac, cell(metric(replaced(model, new))), lk, lv))

    print("\no_proj of every layer truncated, Q, K and V kept; budget and params kept "
          "are of the o_proj parameters:\n")
    print("| model | budget | o_proj truncation | params kept | metric | energy lost |")
    print("|---|---|---|---|---|---|")
    for name, (model, _, metric), cell in runs:
        for b in BUDGETS:
            for label, new, frac, lost in o_variants(model, b):
                print("| %s | %d %% | %s | %.1f %% | %s | %.4f |"
                      % (name, 100 * b, label, 100 * frac, cell(metric(replaced(model, new))),
                         lost))

    print()
    for name, (model, _, _), _ in runs:
        print("%s: ‖W_K‖_F / ‖W_V‖_F per layer: %s"
              % (name.split()[0], " ".join("%.2f" % x for x in norm_ratios(model))))
        for label, kw in (("shared K/V", {}), ("energy-weighted per matrix",
                                                 {"weight": "frobenius", "per_matrix": True})):
            print("%s: %s at τ = %g: V energy lost per layer: %s"
                  % (name.split()[0], label, THRESHOLDS[0],
                     " ".join("%.4f" % x for x in v_lost_per_layer(model, THRESHOLDS[0], **kw))))


if __name__ == "__main__":
    main()
