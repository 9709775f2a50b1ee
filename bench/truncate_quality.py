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

usage: PYTHONPATH=bindings/python FASVD_LIBRARY=build/lib/libfasvd.so.0 \\
       python3 bench/truncate_quality.py
Needs torch and transformers; prints a Markdown table.
"""

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


def attn_weights(model):
    return [n for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and n.endswith(ATTN)]


def truncated(model, names, grams, budget):
    """A copy of model with every named Linear's weight replaced by A·B."""
    import copy
    out = copy.deepcopy(model)
    params = kept = 0
    for n in names:
        lin = out.get_submodule(n)
        w = lin.weight.detach().double().numpy()
        m, k = w.shape
        r = int(budget * m * k / (m + k))
        g = grams[n + ".input_gram"] if grams is not None else None
        a, b, _ = fasvd.factor(w, rank=r, out_dtype="f64", compute="f64", calibration=g)
        lin.weight.data = torch.from_numpy(a @ b).to(lin.weight.dtype)
        params += m * k
        kept += r * (m + k)
    return out.eval(), kept / params


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
    from transformers import LlamaForCausalLM
    model = LlamaForCausalLM.from_pretrained(os.path.join(REPO, "tests", "data",
                                                          "stories260K")).eval()
    calib, evals = sample(model, 32, 64, 1), sample(model, 32, 64, 2)
    grams = fasvd.calibration.collect(model, calib)
    names = attn_weights(model)
    rows = []
    for b in BUDGETS:
        line = []
        for g in (None, grams):
            m, frac = truncated(model, names, g, b)
            line.append(llm_metrics(model, m, evals))
        rows.append((b, frac, line))
    return rows


def minilm():
    from transformers import BertModel
    sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
    import real_models
    cache = os.environ.get("FASVD_MODEL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fasvd-test-models")
    model = BertModel.from_pretrained(real_models.fetch_minilm(cache)).eval()

    def sentences(n, seed):
        r = np.random.default_rng(seed)
        return [[101] + list(r.integers(1000, 30000, int(r.integers(8, 33)))) + [102]
                for _ in range(n)]
    calib, evals = sentences(64, 1), sentences(64, 2)
    grams = fasvd.calibration.collect(model, calib)
    names = attn_weights(model)
    ref = emb(model, evals)
    rows = []
    for b in BUDGETS:
        line = []
        for gr in (None, grams):
            m, frac = truncated(model, names, gr, b)
            line.append(bert_metrics(ref, m, evals))
        rows.append((b, frac, line))
    return rows


def main():
    torch.manual_seed(0)
    print("| model | budget | params kept | plain SVD | activation-aware |")
    print("|---|---|---|---|---|")
    for b, frac, (p, w) in stories():
        print("| stories260K (KL, top-1) | %d %% | %.1f %% | %.4f, %.1f %% | %.4f, %.1f %% |"
              % (100 * b, 100 * frac, p[0], 100 * p[1], w[0], 100 * w[1]))
    for b, frac, (p, w) in minilm():
        print("| all-MiniLM-L6-v2 (cosine) | %d %% | %.1f %% | %.5f | %.5f |"
              % (100 * b, 100 * frac, p, w))


if __name__ == "__main__":
    main()
