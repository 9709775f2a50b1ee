#!/usr/bin/env python3
"""Independent float64 reference for `fasvd analyze`, for every architecture.

For each supported architecture a generated checkpoint (tests/reference/
make-fixture) is analysed by the `fasvd` CLI; this script reads the same
checkpoint with its own numpy safetensors reader (F16/BF16/FP8 decoding and
block scales written here from the format definitions), builds the canonical
per-head matrices (docs/design.md) from the tensor names and config.json
alone (written from the layout rules, not from the library's adapters), folds
the gains of the norms as the model applies them (input norm into the columns
of Q, K, V; q_norm / k_norm over head_dim into the rows of each Q, K head;
Gemma2/Gemma3's post-attention norm into O's hidden side), materialises
every fused and stacked matrix, takes numpy.linalg.svd in float64, and checks
every spectrum of the output file: values within 1e-4*sigma1 (f32 compute) or
1e-10*sigma1 (f64), effective ranks at tau = 0.01 and 0.001 equal.

Prints TAP. Usage: ref_spectra.py FASVD MAKE_FIXTURE WORKDIR [ARCH...]
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

ARCHS = ["deepseek_v2", "deepseek_v3", "kimi_k2", "llama", "mistral", "qwen2",
         "qwen3", "gemma", "gemma2", "gemma3", "phi3", "gpt2", "gpt_neox", "bert"]

# ------------------------------------------------------------ safetensors


def _minifloat_table(ebits, mbits, bias, fn):
    codes = np.arange(1 << (1 + ebits + mbits), dtype=np.int64)
    sign = np.where(codes >> (ebits + mbits) & 1, -1.0, 1.0)
    e = (codes >> mbits) & ((1 << ebits) - 1)
    m = (codes & ((1 << mbits) - 1)).astype(np.float64)
    emax = (1 << ebits) - 1
    val = np.where(e == 0, np.ldexp(m, 1 - bias - mbits),
                   np.ldexp(1.0 + m / (1 << mbits), e - bias))
    val = sign * val
    if fn:  # e4m3fn: only S.1111.111 is NaN, no infinities
        val[(e == emax) & (m == (1 << mbits) - 1)] = np.nan
    else:
        val[(e == emax) & (m == 0)] = sign[(e == emax) & (m == 0)] * np.inf
        val[(e == emax) & (m != 0)] = np.nan
    return val


E4M3 = _minifloat_table(4, 3, 7, True)
E5M2 = _minifloat_table(5, 2, 15, False)


class SafeTensors:
    block = (128, 128)  # quantization_config.weight_block_size

    def __init__(self, folder):
        self.folder = folder
        self.where = {}
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                wm = json.load(f)["weight_map"]
            files = sorted(set(wm.values()))
        else:
            files = [n for n in os.listdir(folder) if n.endswith(".safetensors")]
        for fn in files:
            with open(os.path.join(folder, fn), "rb") as f:
                raw = f.read()
            n = struct.unpack("<Q", raw[:8])[0]
            header = json.loads(raw[8:8 + n])
            header.pop("__metadata__", None)
            for name, t in header.items():
                self.where[name] = (raw, 8 + n, t)

    def names(self):
        return sorted(self.where)

    def has(self, name):
        return name in self.where

    def get(self, name):
        raw, base, t = self.where[name]
        b, e = t["data_offsets"]
        buf = raw[base + b: base + e]
        dt, shape = t["dtype"], t["shape"]
        if dt == "F64":
            a = np.frombuffer(buf, "<f8")
        elif dt == "F32":
            a = np.frombuffer(buf, "<f4").astype(np.float64)
        elif dt == "F16":
            a = np.frombuffer(buf, "<f2").astype(np.float64)
        elif dt == "BF16":
            u = np.frombuffer(buf, "<u2").astype(np.uint32) << 16
            a = u.view(np.float32).astype(np.float64)
        elif dt == "F8_E4M3":
            a = E4M3[np.frombuffer(buf, np.uint8)]
        elif dt == "F8_E5M2":
            a = E5M2[np.frombuffer(buf, np.uint8)]
        else:
            raise ValueError("dtype " + dt)
        a = a.reshape(shape)
        if dt.startswith("F8") and self.has(name + "_scale_inv"):
            s = self.get(name + "_scale_inv")
            br, bc = self.block
            assert s.shape == (-(-a.shape[0] // br), -(-a.shape[1] // bc))
            full = np.repeat(np.repeat(s, br, 0), bc, 1)[:a.shape[0], :a.shape[1]]
            a = a * full
        return a


# ------------------------------------------------------ canonical matrices


def cfg_get(cfg, *keys, default=None):
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    return default


def find_prefix(st, candidates, suffix):
    for p in candidates:
        if st.has(p.format(0) + suffix):
            return p
    raise KeyError("no prefix for " + suffix)


def canonical(st, cfg, layer, fold):
    """Per-head matrices (docs/design.md) for one layer."""
    mt = cfg["model_type"]
    tc = cfg.get("text_config") or {}
    c = dict(tc) if "hidden_size" in tc else dict(cfg)
    out = {}
    if mt in ("deepseek_v2", "deepseek_v3", "kimi_k2"):
        p = find_prefix(st, ["model.layers.{}."], "self_attn.kv_b_proj.weight").format(layer)
        H = c["num_attention_heads"]
        nope, rope, vh = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        kvl = c["kv_lora_rank"]
        g_in = st.get(p + "input_layernorm.weight") if fold else None
        if c.get("q_lora_rank"):
            qa = st.get(p + "self_attn.q_a_proj.weight")
            qb = st.get(p + "self_attn.q_b_proj.weight")
            if fold:
                qa = qa * g_in
                qb = qb * st.get(p + "self_attn.q_a_layernorm.weight")
            out["sub.QA"] = [qa]
        else:
            qb = st.get(p + "self_attn.q_proj.weight")
            if fold:
                qb = qb * g_in
        kva = st.get(p + "self_attn.kv_a_proj_with_mqa.weight")
        if fold:
            kva = kva * g_in
        out["sub.KVA"] = [kva[:kvl]]
        out["sub.KVA_pe"] = [kva[kvl:]]
        kvb = st.get(p + "self_attn.kv_b_proj.weight")
        if fold:
            kvb = kvb * st.get(p + "self_attn.kv_a_layernorm.weight")
        o = st.get(p + "self_attn.o_proj.weight")
        Q = [qb[i * (nope + rope): i * (nope + rope) + nope] for i in range(H)]
        Qpe = [qb[i * (nope + rope) + nope: (i + 1) * (nope + rope)] for i in range(H)]
        # kv_b_proj rows per head: [k_nope ; v], interleaved
        K = [kvb[i * (nope + vh): i * (nope + vh) + nope] for i in range(H)]
        V = [kvb[i * (nope + vh) + nope: (i + 1) * (nope + vh)] for i in range(H)]
        O = [o[:, i * vh:(i + 1) * vh].T for i in range(H)]
        out.update({"Q": Q, "Q_pe": Qpe, "K": K, "V": V, "O": O})
        return out, H, H
    if mt == "gpt2":
        H, hidden = cfg["n_head"], cfg["n_embd"]
        hd = hidden // H
        p = find_prefix(st, ["h.{}.", "transformer.h.{}."], "attn.c_attn.weight").format(layer)
        w = st.get(p + "attn.c_attn.weight").T  # Conv1D [in, out] -> Linear [out, in]
        if fold:
            w = w * st.get(p + "ln_1.weight")
        cp = st.get(p + "attn.c_proj.weight")  # [in = H*hd, out = hidden]
        Q = [w[i * hd:(i + 1) * hd] for i in range(H)]
        K = [w[hidden + i * hd: hidden + (i + 1) * hd] for i in range(H)]
        V = [w[2 * hidden + i * hd: 2 * hidden + (i + 1) * hd] for i in range(H)]
        O = [cp[i * hd:(i + 1) * hd] for i in range(H)]
        out.update({"Q": Q, "K": K, "V": V, "O": O})
        return out, H, H
    H = c.get("num_attention_heads", 8)
    KV = c.get("num_key_value_heads", H if mt not in ("gemma3",) else 4)
    hidden = c["hidden_size"]
    # the head_dim defaults of transformers' config classes
    hd = c.get("head_dim") or HEAD_DIM_DEFAULT.get(mt) or hidden // H
    if mt == "gpt_neox":
        p = find_prefix(st, ["gpt_neox.layers.{}.", "layers.{}."],
                        "attention.query_key_value.weight").format(layer)
        w = st.get(p + "attention.query_key_value.weight")
        if fold:
            w = w * st.get(p + "input_layernorm.weight")
        o = st.get(p + "attention.dense.weight")
        Q = [w[i * 3 * hd: i * 3 * hd + hd] for i in range(H)]
        K = [w[i * 3 * hd + hd: i * 3 * hd + 2 * hd] for i in range(H)]
        V = [w[i * 3 * hd + 2 * hd: (i + 1) * 3 * hd] for i in range(H)]
        O = [o[:, i * hd:(i + 1) * hd].T for i in range(H)]
        out.update({"Q": Q, "K": K, "V": V, "O": O})
        return out, H, H
    if mt == "bert":
        p = find_prefix(st, ["bert.encoder.layer.{}.", "encoder.layer.{}."],
                        "attention.self.query.weight").format(layer)
        wq = st.get(p + "attention.self.query.weight")
        wk = st.get(p + "attention.self.key.weight")
        wv = st.get(p + "attention.self.value.weight")
        o = st.get(p + "attention.output.dense.weight")
        KV = H
    else:
        p = find_prefix(st, ["model.layers.{}.", "language_model.model.layers.{}.",
                             "model.language_model.layers.{}.", "layers.{}."],
                        "self_attn.o_proj.weight").format(layer)
        if mt == "phi3":
            w = st.get(p + "self_attn.qkv_proj.weight")
            wq, wk, wv = w[:H * hd], w[H * hd:(H + KV) * hd], w[(H + KV) * hd:]
        else:
            wq = st.get(p + "self_attn.q_proj.weight")
            wk = st.get(p + "self_attn.k_proj.weight")
            wv = st.get(p + "self_attn.v_proj.weight")
        o = st.get(p + "self_attn.o_proj.weight")
        if fold:
            g = gain(st, p + "input_layernorm.weight", mt)
            wq, wk, wv = wq * g, wk * g, wv * g
    Q = [wq[i * hd:(i + 1) * hd] for i in range(H)]
    K = [wk[g * hd:(g + 1) * hd] for g in range(KV)]
    V = [wv[g * hd:(g + 1) * hd] for g in range(KV)]
    O = [o[:, i * hd:(i + 1) * hd].T for i in range(H)]
    if fold and mt in QK_NORM:
        # RMSNorm over head_dim of every head's q and k: diag(g) on the left
        gq = gain(st, p + "self_attn.q_norm.weight", mt)
        gk = gain(st, p + "self_attn.k_norm.weight", mt)
        Q = [gq[:, None] * m for m in Q]
        K = [gk[:, None] * m for m in K]
    if fold and mt in POST_NORM:
        # y = diag(gp) sum_i O_i^T v_i: O_i (hd x hidden) times diag(gp)
        gp = gain(st, p + "post_attention_layernorm.weight", mt)
        O = [m * gp for m in O]
    out.update({"Q": Q, "K": K, "V": V, "O": O})
    return out, H, KV


HEAD_DIM_DEFAULT = {"qwen3": 128, "gemma": 256, "gemma2": 256, "gemma3": 256}
QK_NORM = ("qwen3", "gemma3")
POST_NORM = ("gemma2", "gemma3")


def gain(st, name, mt):
    """A norm's gain vector: Gemma stores gain - 1."""
    g = st.get(name)
    return 1.0 + g if mt.startswith("gemma") else g


def svals(m):
    return np.linalg.svd(m, compute_uv=False)


def stack(ms):
    return svals(np.vstack([m / (svals(m)[0] or 1.0) for m in ms]))


def reference(st, cfg, layer, fold):
    mats, H, KV = canonical(st, cfg, layer, fold)
    grp = lambda i: i // (H // KV)  # noqa: E731
    mats["QK"] = [mats["Q"][i].T @ mats["K"][grp(i)] for i in range(H)]
    mats["KQ"] = [mats["K"][grp(i)].T @ mats["Q"][i] for i in range(H)]
    mats["VO"] = [mats["V"][grp(i)].T @ mats["O"][i] for i in range(H)]
    ref = {}
    for name, ms in mats.items():
        if name.startswith("sub."):
            ref["L%d.%s" % (layer, name)] = svals(ms[0])[None, :]
            continue
        ref["L%d.head.%s" % (layer, name)] = np.array([svals(m) for m in ms])
        ref["L%d.stack.%s" % (layer, name)] = stack(ms)[None, :]
    return ref


def energy_rank(s, tau):
    e = s.astype(np.float64) ** 2
    tot = e.sum()
    if tot == 0:
        return 0
    tail = np.concatenate([np.cumsum(e[::-1])[::-1], [0.0]])  # tail[r] = sum_{i>=r}
    for r in range(len(s) + 1):
        if tail[r] / tot <= tau:
            return r
    return len(s)


# ----------------------------------------------------------------- main


def read_output(path):
    got = SafeTensors.__new__(SafeTensors)
    got.where = {}
    with open(path, "rb") as f:
        raw = f.read()
    hl = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + hl])
    hdr.pop("__metadata__")
    for k, t in hdr.items():
        got.where[k] = (raw, 8 + hl, t)
    return got


def compare(key, got, rs, tol):
    """Output values `got` of spectrum `key` against the reference rows rs:
    within tol*sigma1 per row, effective ranks at 0.01 and 0.001 equal."""
    g = got.reshape(rs.shape[0], -1)
    if g.shape != rs.shape:
        raise AssertionError("%s: shape %s, reference %s" % (key, g.shape, rs.shape))
    for h in range(rs.shape[0]):
        err = np.max(np.abs(g[h] - rs[h]))
        if not err <= tol * rs[h][0] + 1e-300:
            raise AssertionError("%s[%d]: max |error| %.3g > %.0e * sigma1 %.6g"
                                 % (key, h, err, tol, rs[h][0]))
        for tau in (0.01, 0.001):
            a, b = energy_rank(g[h], tau), energy_rank(rs[h], tau)
            if a != b:
                raise AssertionError("%s[%d]: effective rank at %g is %d, reference %d"
                                     % (key, h, tau, a, b))


def check_model(fasvd, model, out, compute, fold):
    """Run `fasvd analyze` on model and compare every spectrum with the
    reference. Returns the number of spectra checked; raises on mismatch."""
    cmd = [fasvd, "analyze", model, "-o", out, "--compute", compute, "-q"]
    if not fold:
        cmd.append("--no-fold-norms")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("fasvd analyze failed: " + r.stderr.strip())
    got = read_output(out)
    st = SafeTensors(model)
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    qc = cfg.get("quantization_config") or {}
    if qc.get("weight_block_size"):
        st.block = tuple(qc["weight_block_size"])
    tc = cfg.get("text_config") or {}
    layers = cfg_get(cfg, "num_hidden_layers", "n_layer") or tc["num_hidden_layers"]
    tol = 1e-4 if compute == "f32" else 1e-10
    names = set(got.names())
    want = set()
    for layer in range(layers):
        ref = reference(st, cfg, layer, fold)
        want |= set(ref)
        for key, rs in ref.items():
            if key not in names:
                raise AssertionError("output lacks " + key)
            compare(key, got.get(key), rs, tol)
    extra = names - want
    if extra:
        raise AssertionError("unexpected spectra: " + ", ".join(sorted(extra)))
    return len(want)


def run_cases(cases, fasvd):
    """cases: (name, model_dir, out_path, compute, fold, prepare) → TAP."""
    print("1..%d" % len(cases))
    failed = 0
    for n, (name, model, out, compute, fold, prepare) in enumerate(cases, 1):
        try:
            if prepare:
                prepare()
            k = check_model(fasvd, model, out, compute, fold)
            print("ok %d - %s (%d spectra)" % (n, name, k))
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("not ok %d - %s" % (n, name))
            for line in str(e).splitlines():
                print("# " + line)
        sys.stdout.flush()
    return 1 if failed else 0


def main():
    fasvd, make_fixture, work = sys.argv[1:4]
    archs = sys.argv[4:] or ARCHS
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    cases = []
    for arch in archs:
        model = os.path.join(work, arch)

        def prepare(arch=arch, model=model):
            if not os.path.exists(os.path.join(model, "config.json")):
                subprocess.run([make_fixture, arch, model, "2"], check=True)
        for compute in ("f32", "f64"):
            for fold in (True, False):
                out = os.path.join(work, "%s-%s-%d.safetensors" % (arch, compute, fold))
                cases.append(("%s compute=%s fold_norms=%s" % (arch, compute, fold),
                              model, out, compute, fold, prepare))
    return run_cases(cases, fasvd)


if __name__ == "__main__":
    sys.exit(main())
