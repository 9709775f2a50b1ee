#!/usr/bin/env python3
"""Independent float64 reference for `fasvd analyze --rope-offsets`.

For each case the checkpoint is analysed with --rope-offsets; this script
builds the canonical (norm-folded) Q and K heads with ref_spectra.py's own
reader, applies the rotary embedding as the Hugging Face modeling code does
(q·cos + rotate_half(q)·sin on the first head_dim·partial_rotary_factor rows,
inverse frequencies from rope_theta and rope_scaling written here from
transformers' formulas) to a query at position p + Δ and a key at position p,
and checks head.QK@Δ and stack.QK@Δ against the singular values of
(R(p+Δ)·Q_i)ᵀ·(R(p)·K_g(i)) in float64; head.QK@0 must equal head.QK.
MLA (deepseek_v2/v3, kimi_k2): head.QK_pe@Δ and stack.QK_pe@Δ against
each head's Q_pe and the shared k_pe rotated as DeepSeek-V3's
apply_rotary_pos_emb_interleave does (de-interleave, then rotate_half).
Architectures without RoPE and unknown scaling types must be refused with a
message naming the reason; MLA's --rope-bands too.

Prints TAP. Usage: ref_rope.py FASVD MAKE_FIXTURE STORIES_DIR WORKDIR
"""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_spectra import (SafeTensors, canonical, compare, read_output,  # noqa: E402
                         stack, svals)

OFFSETS = (0, 1, 64)


def text_cfg(cfg):
    tc = cfg.get("text_config") or {}
    return tc if "hidden_size" in tc else cfg


def inv_freq(cfg, layer, head_dim):
    """transformers' rope initialisation (default, linear, llama3), with
    Gemma3's local base on sliding-window layers."""
    c = text_cfg(cfg)
    mt = cfg["model_type"]
    neox = mt == "gpt_neox"
    frac = c.get("partial_rotary_factor", c.get("rotary_pct", 0.25) if neox else 1.0)
    base = c.get("rope_theta", 1e6 if mt == "gemma3" else 1e4)
    if neox and "rope_theta" not in c:
        base = c.get("rotary_emb_base", 1e4)
    scaling = c.get("rope_scaling")
    if mt == "gemma3":
        types = c.get("layer_types")
        pat = c.get("sliding_window_pattern", 6)
        sliding = (types[layer] == "sliding_attention") if types else (layer + 1) % pat != 0
        if sliding:
            base, scaling = c.get("rope_local_base_freq", 1e4), None
    dim = int(head_dim * frac)
    f = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "linear":
        f = f / scaling["factor"]
    elif kind == "llama3":
        factor = scaling["factor"]
        lo, hi = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / f
        g = np.where(wavelen > old / lo, f / factor, f)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * g / factor + smooth * g
        medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        f = np.where(medium, smoothed, g)
    elif kind == "yarn":
        f = yarn(c, scaling, f, dim, base)
    else:
        assert kind == "default", kind
    return f, dim


def yarn(c, sc, f, dim, base):
    """transformers' _compute_yarn_parameters (the inverse frequencies; its
    attention factor scales cos and sin alike, so every singular value of
    the layer, and is left out as the library documents)."""
    old = sc.get("original_max_position_embeddings") or c["max_position_embeddings"]
    factor = sc.get("factor") or c["max_position_embeddings"] / old
    fast, slow = sc.get("beta_fast") or 32, sc.get("beta_slow") or 1

    def corr(rot):
        return dim * math.log(old / (rot * 2 * math.pi)) / (2 * math.log(base))
    lo, hi = corr(fast), corr(slow)
    if sc.get("truncate", True):
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, dim - 1)
    if lo == hi:
        hi += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - lo) / (hi - lo), 0, 1)
    extra = 1 - ramp
    return f / factor * (1 - extra) + f * extra


def rotary(m, pos, f, dim):
    """apply_rotary_pos_emb on the rows (head_dim) of m at position pos."""
    freqs = pos * f
    emb = np.concatenate([freqs, freqs])
    cos, sin = np.cos(emb)[:, None], np.sin(emb)[:, None]
    rot, rest = m[:dim], m[dim:]
    half = dim // 2
    rotate_half = np.concatenate([-rot[half:], rot[:half]])
    return np.concatenate([rot * cos + rotate_half * sin, rest])


def rotary_mla(m, pos, f, interleave):
    """DeepSeek-V3's apply_rotary_pos_emb_interleave on the rope rows m:
    view (d/2, 2), transpose, reshape (rows 0, 2, 4, …, 1, 3, 5, …), then
    rotate_half; rope_interleave false skips the de-interleaving."""
    d = m.shape[0]
    if interleave:
        m = m.reshape(d // 2, 2, -1).transpose(1, 0, 2).reshape(d, -1)
    return rotary(m, pos, f, d)


def reference_mla(st, cfg, layer, mats, H):
    """MLA: every head's Q_pe against the one k_pe (the last rope rows of
    kv_a_proj_with_mqa), both rotated."""
    Qpe, kpe = mats["Q_pe"], mats["sub.KVA_pe"][0]
    f, dim = inv_freq(cfg, layer, kpe.shape[0])
    assert dim == kpe.shape[0]
    il = text_cfg(cfg).get("rope_interleave", True)
    ref = {}
    for d in OFFSETS:
        p = 7
        qk = [rotary_mla(Qpe[i], p + d, f, il).T @ rotary_mla(kpe, p, f, il) for i in range(H)]
        ref["L%d.head.QK_pe@%d" % (layer, d)] = np.array([svals(m) for m in qk])
        ref["L%d.stack.QK_pe@%d" % (layer, d)] = stack(qk)[None, :]
    return ref


def reference(st, cfg, layer):
    mats, H, KV = canonical(st, cfg, layer, True)
    if "Q_pe" in mats:
        return reference_mla(st, cfg, layer, mats, H)
    Q, K = mats["Q"], mats["K"]
    f, dim = inv_freq(cfg, layer, Q[0].shape[0])
    ref = {}
    for d in OFFSETS:
        p = 7  # only the relative offset may matter
        qk = [rotary(Q[i], p + d, f, dim).T @ rotary(K[i // (H // KV)], p, f, dim)
              for i in range(H)]
        ref["L%d.head.QK@%d" % (layer, d)] = np.array([svals(m) for m in qk])
        ref["L%d.stack.QK@%d" % (layer, d)] = stack(qk)[None, :]
    return ref


def analyze(fasvd, model, out, compute, extra=()):
    cmd = [fasvd, "analyze", model, "-o", out, "--compute", compute, "-q", "--force",
           "--rope-offsets", ",".join(str(d) for d in OFFSETS)] + list(extra)
    return subprocess.run(cmd, capture_output=True, text=True)


def check(fasvd, model, out, compute):
    r = analyze(fasvd, model, out, compute)
    if r.returncode != 0:
        raise AssertionError("fasvd analyze failed: " + r.stderr.strip())
    got = read_output(out)
    st = SafeTensors(model)
    with open(os.path.join(model, "config.json")) as fh:
        cfg = json.load(fh)
    tol = 1e-4 if compute == "f32" else 1e-10
    n = 0
    for layer in range(text_cfg(cfg)["num_hidden_layers"]):
        ref = reference(st, cfg, layer)
        for key, rs in ref.items():
            compare(key, got.get(key), rs, tol)
            n += 1
        if "L%d.head.QK_pe@1" % layer in ref:
            if np.allclose(got.get("L%d.head.QK_pe@1" % layer), got.get("L%d.head.QK_pe@0" % layer)):
                raise AssertionError("QK_pe@1 equals QK_pe@0: no rotation applied")
            continue
        for kind in ("head", "stack"):
            plain = got.get("L%d.%s.QK" % (layer, kind))
            at0 = got.get("L%d.%s.QK@0" % (layer, kind))
            if np.max(np.abs(plain - at0)) > tol * np.max(plain):
                raise AssertionError("L%d.%s.QK@0 differs from QK" % (layer, kind))
        # a rotation that changed nothing would pass the QK@0 check only
        if layer == 0 and np.allclose(got.get("L0.head.QK@1"), got.get("L0.head.QK")):
            raise AssertionError("QK@1 equals QK: no rotation applied")
    return n


def check_bands(fasvd, model, out, compute):
    """--rope-bands: each rotary pair's share of the head's QK energy,
    |Q pair rows|_F * |K pair rows|_F normalised per head."""
    csv = out + ".csv"
    r = subprocess.run([fasvd, "analyze", model, "-o", out, "-q", "--force", "--compute", compute,
                        "--rope-bands", csv], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("fasvd analyze --rope-bands failed: " + r.stderr.strip())
    rows = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
    st = SafeTensors(model)
    with open(os.path.join(model, "config.json")) as fh:
        cfg = json.load(fh)
    n = 0
    for layer in range(text_cfg(cfg)["num_hidden_layers"]):
        mats, H, KV = canonical(st, cfg, layer, True)
        f, dim = inv_freq(cfg, layer, mats["Q"][0].shape[0])
        pairs = [[j, j + dim // 2] for j in range(dim // 2)]
        pq = np.array([[np.linalg.norm(q[p]) for p in pairs] for q in mats["Q"]])
        pk = np.array([[np.linalg.norm(k[p]) for p in pairs] for k in mats["K"]])
        ref = pq * pk[np.arange(H) // (H // KV)]
        ref /= ref.sum(axis=1, keepdims=True)
        got = rows[rows[:, 0] == layer]
        if got.shape[0] != ref.size:
            raise AssertionError("layer %d: %d rows, %d expected" % (layer, got.shape[0], ref.size))
        if not (np.array_equal(got[:, 3], np.tile([p[0] for p in pairs], H)) and
                np.array_equal(got[:, 4], np.tile([p[1] for p in pairs], H))):
            raise AssertionError("layer %d: wrong pair rows" % layer)
        if np.max(np.abs(got[:, 5] - np.tile(f, H))) > 1e-14 * f.max():
            raise AssertionError("layer %d: inv_freq differs" % layer)
        if np.max(np.abs(got[:, 6] - ref.ravel())) > 1e-12:
            raise AssertionError("layer %d: shares differ by %.3g"
                                 % (layer, np.max(np.abs(got[:, 6] - ref.ravel()))))
        n += H
    return n


def edit_config(model, **keys):
    path = os.path.join(model, "config.json")
    with open(path) as fh:
        cfg = json.load(fh)
    target = cfg["text_config"] if "text_config" in cfg else cfg
    target.update(keys)
    with open(path, "w") as fh:
        json.dump(cfg, fh, indent=2)


def refused(fasvd, model, out, words, extra=()):
    r = analyze(fasvd, model, out, "f32", extra)
    if r.returncode == 0:
        raise AssertionError("--rope-offsets accepted")
    for w in words:
        if w not in r.stderr:
            raise AssertionError("message lacks '%s': %s" % (w, r.stderr.strip()))
    if os.path.exists(out):
        raise AssertionError("an output was written")
    return 0


def main():
    fasvd, make_fixture, stories, work = sys.argv[1:5]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    def fixture(arch, name=None, **keys):
        model = os.path.join(work, name or arch)
        subprocess.run([make_fixture, arch, model, "2"], check=True)
        if keys:
            edit_config(model, **keys)
        return model

    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    yarn_a = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096,
              "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}
    yarn_b = {"type": "yarn", "factor": 16.0, "beta_fast": 24.5, "beta_slow": 1.5,
              "truncate": False}
    yarn_ds = {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
               "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
    cases = [
        ("stories260K (llama, GQA)", lambda: stories, "f64"),
        ("stories260K (llama, GQA)", lambda: stories, "f32"),
        ("gpt_neox (rotary_pct 0.25)", lambda: fixture("gpt_neox"), "f64"),
        ("phi3 (partial_rotary_factor 0.5, rope_theta 500)",
         lambda: fixture("phi3", partial_rotary_factor=0.5, rope_theta=500.0), "f64"),
        ("qwen3 (q/k norms folded before the rotation)", lambda: fixture("qwen3"), "f64"),
        ("gemma3 (local and global bases, linear scaling)",
         lambda: fixture("gemma3", layer_types=["sliding_attention", "full_attention"],
                         rope_scaling={"rope_type": "linear", "factor": 8.0}), "f64"),
        ("llama (llama3 scaling)", lambda: fixture("llama", rope_scaling=llama3), "f64"),
        ("mistral (yarn scaling, truncated ramp, mscale)",
         lambda: fixture("mistral", "yarn-a", rope_scaling=yarn_a), "f64"),
        ("llama (yarn without factor: max_position_embeddings / original)",
         lambda: fixture("llama", "yarn-c", max_position_embeddings=24576,
                         rope_scaling={"rope_type": "yarn",
                                       "original_max_position_embeddings": 4096}), "f64"),
        ("qwen2 (yarn, untruncated ramp, max_position_embeddings)",
         lambda: fixture("qwen2", "yarn-b", max_position_embeddings=1000,
                         rope_scaling=yarn_b), "f64"),
        ("deepseek_v3 (MLA: interleaved q_pe/k_pe, yarn with mscale)",
         lambda: fixture("deepseek_v3", "mla-v3", rope_theta=5000.0, rope_scaling=yarn_ds), "f64"),
        ("deepseek_v3 (MLA, rope_interleave false)",
         lambda: fixture("deepseek_v3", "mla-v3-half", rope_interleave=False), "f64"),
        ("deepseek_v2 (MLA, no query compression)",
         lambda: fixture("deepseek_v2", "mla-v2"), "f64"),
        ("kimi_k2 (MLA)", lambda: fixture("kimi_k2", "mla-k2"), "f64"),
    ]
    refusals = [
        ("gpt2 refused (no RoPE)", "gpt2", {}, ["gpt2", "no rotary"]),
        ("bert refused (no RoPE)", "bert", {}, ["bert", "no rotary"]),
        ("MLA rope bands refused (deepseek_v3)", "deepseek_v3", {},
         ["rope bands", "latent attention"]),
        ("dynamic scaling refused by name", "mistral",
         {"rope_scaling": {"rope_type": "dynamic", "factor": 4.0}},
         ["'dynamic'", "not supported"]),
    ]
    bands = [("stories260K", lambda: stories), ("gpt_neox (rotary_pct 0.25)",
                                                 lambda: fixture("gpt_neox", "b-neox")),
             ("qwen3", lambda: fixture("qwen3", "b-qwen3")),
             ("gemma3 (local and global bases)",
              lambda: fixture("gemma3", "b-gemma3",
                              layer_types=["sliding_attention", "full_attention"],
                              rope_scaling={"rope_type": "linear", "factor": 8.0}))]
    print("1..%d" % (len(cases) + len(refusals) + len(bands)))
    failed, n = 0, 0
    for name, make, compute in cases:
        n += 1
        try:
            k = check(fasvd, make(), os.path.join(work, "out-%d.safetensors" % n), compute)
            print("ok %d - %s compute=%s (%d spectra)" % (n, name, compute, k))
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("not ok %d - %s compute=%s" % (n, name, compute))
            print("\n".join("# " + line for line in str(e).splitlines()))
    for name, make in bands:
        n += 1
        try:
            k = check_bands(fasvd, make(), os.path.join(work, "out-%d.safetensors" % n), "f32")
            print("ok %d - --rope-bands %s (%d heads)" % (n, name, k))
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("not ok %d - --rope-bands %s" % (n, name))
            print("\n".join("# " + line for line in str(e).splitlines()))
    for name, arch, keys, words in refusals:
        n += 1
        out = os.path.join(work, "out-%d.safetensors" % n)
        try:
            extra = ["--rope-bands", out + ".csv"] if "bands" in name else []
            refused(fasvd, fixture(arch, "r-" + arch, **keys), out, words, extra)
            print("ok %d - %s" % (n, name))
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("not ok %d - %s" % (n, name))
            print("\n".join("# " + line for line in str(e).splitlines()))
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
