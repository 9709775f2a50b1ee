#!/usr/bin/python3
"""CLI tests of `fasvd truncate` (TAP output).

usage: test-truncate.py PATH/TO/fasvd

Writes two checkpoints with numpy alone, independently of libfasvd: a Llama
(BF16, one file, GQA) and a DeepSeek-V3 (F8_E4M3 with 128x128 block
scale_inv and partial edge blocks, two shards, a scale in another shard than
its weight). Runs `fasvd truncate --energy-loss 0.01 --dtype f32` on each
and checks, as a new user would: every replaced tensor has factors at the
minimal rank meeting tau (numpy SVD of the dequantised float64 weight) whose
product loses exactly the optimal energy; every other tensor is byte for
byte the input's; replaced FP8 weights lose their scale_inv; the shards keep
their names and the index maps every tensor to the shard holding it; the
config keeps its keys and gains the "fasvd_lowrank" section. Then per-head,
shared-o, fixed ranks (0 and full), tau = 1, globs, bf16 factors, and the
failure catalogue (usage errors, output folder rules, no partial output).
"""
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np

from clitap import finish, report, run


# ------------------------------------------------------------- codecs

def bf16_encode(x):
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_decode(b):
    return (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def e4m3_decode(codes):
    c = codes.astype(np.int64)
    s = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> 3) & 0xF
    m = (c & 7).astype(np.float64)
    v = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1.0 + m / 8.0) * np.exp2(e - 7.0))
    v = np.where((e == 15) & ((c & 7) == 7), np.nan, v)
    return s * v


E4M3_TABLE = e4m3_decode(np.arange(256))
E4M3_FINITE = np.where(np.isfinite(E4M3_TABLE))[0]


def e4m3_encode(x):
    """Nearest finite e4m3 code (saturating), by table search."""
    vals = E4M3_TABLE[E4M3_FINITE]
    order = np.argsort(vals)
    sv, sc = vals[order], E4M3_FINITE[order]
    x = np.clip(np.asarray(x, dtype=np.float64), -448, 448)
    idx = np.clip(np.searchsorted(sv, x), 1, len(sv) - 1)
    left, right = sv[idx - 1], sv[idx]
    pick = np.where(np.abs(x - left) <= np.abs(right - x), idx - 1, idx)
    return sc[pick].astype(np.uint8)


DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "I64": 8}


# ------------------------------------------------------- safetensors I/O

def write_st(path, tensors, metadata=None):
    """tensors: name -> (dtype string, shape, bytes)."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    off = 0
    blobs = []
    for name in sorted(tensors):
        dt, shape, data = tensors[name]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_st(path):
    """name -> (dtype, shape, bytes); and the metadata."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        out[name] = (e["dtype"], tuple(e["shape"]), raw[base + b:base + en])
    return out, meta


def read_model(d):
    """All tensors of a model folder: name -> (dtype, shape, bytes, shard)."""
    idx = os.path.join(d, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        for shard in sorted(set(wm.values())):
            ts, _ = read_st(os.path.join(d, shard))
            for k, v in ts.items():
                tensors[k] = v + (shard,)
    else:
        ts, _ = read_st(os.path.join(d, "model.safetensors"))
        for k, v in ts.items():
            tensors[k] = v + ("model.safetensors",)
    return tensors


def to_f64(t):
    dt, shape, data = t[0], t[1], t[2]
    if dt == "F32":
        a = np.frombuffer(data, dtype="<f4").astype(np.float64)
    elif dt == "F64":
        a = np.frombuffer(data, dtype="<f8").copy()
    elif dt == "BF16":
        a = bf16_decode(np.frombuffer(data, dtype="<u2"))
    elif dt == "F16":
        a = np.frombuffer(data, dtype="<f2").astype(np.float64)
    elif dt == "F8_E4M3":
        a = e4m3_decode(np.frombuffer(data, dtype=np.uint8))
    else:
        raise ValueError(dt)
    return a.reshape(shape)


def dequant(tensors, name, block=128):
    w = to_f64(tensors[name])
    sname = name + "_scale_inv"
    if tensors[name][0] == "F8_E4M3" and sname in tensors:
        s = to_f64(tensors[sname])
        rows, cols = w.shape
        w = w * np.repeat(np.repeat(s, block, 0), block, 1)[:rows, :cols]
    return w


# ------------------------------------------------------------ fixtures

def lowrank(rng, rows, cols, rank, noise=1e-2, scale=0.05):
    a = rng.standard_normal((rows, rank))
    b = rng.standard_normal((rank, cols))
    d = 0.8 ** np.arange(rank)
    w = (a * d) @ b / np.sqrt(cols)
    return scale * (w + noise * rng.standard_normal((rows, cols)))


def make_llama(d, rng, dtype="BF16"):
    os.makedirs(d)
    hidden, heads, kv, hd, layers, inter = 64, 4, 2, 16, 2, 96
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv, "head_dim": hd, "intermediate_size": inter,
           "rms_norm_eps": 1e-5, "vocab_size": 128, "torch_dtype": "bfloat16",
           "custom_key": {"kept": [1, 2, 3]}}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)

    def enc(x):
        if dtype == "BF16":
            return ("BF16", x.shape, bf16_encode(x).tobytes())
        return ("F32", x.shape, x.astype("<f4").tobytes())

    t = {}
    for i in range(layers):
        p = "model.layers.%d." % i
        t[p + "self_attn.q_proj.weight"] = enc(lowrank(rng, heads * hd, hidden, 12))
        t[p + "self_attn.k_proj.weight"] = enc(lowrank(rng, kv * hd, hidden, 8))
        t[p + "self_attn.v_proj.weight"] = enc(lowrank(rng, kv * hd, hidden, 8))
        t[p + "self_attn.o_proj.weight"] = enc(lowrank(rng, hidden, heads * hd, 12))
        t[p + "input_layernorm.weight"] = enc(1 + 0.1 * rng.standard_normal(hidden))
        t[p + "post_attention_layernorm.weight"] = enc(1 + 0.1 * rng.standard_normal(hidden))
        t[p + "mlp.gate_proj.weight"] = enc(0.05 * rng.standard_normal((inter, hidden)))
        t[p + "mlp.up_proj.weight"] = enc(0.05 * rng.standard_normal((inter, hidden)))
        t[p + "mlp.down_proj.weight"] = enc(0.05 * rng.standard_normal((hidden, inter)))
    t["model.embed_tokens.weight"] = enc(rng.standard_normal((128, hidden)))
    t["model.norm.weight"] = enc(np.ones(hidden))
    t["lm_head.weight"] = enc(rng.standard_normal((128, hidden)))
    t["model.rotary.inv_freq_ids"] = ("I64", (4,), np.arange(4, dtype="<i8").tobytes())
    write_st(os.path.join(d, "model.safetensors"), t, {"format": "pt"})
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        f.write('{"version": "1.0"}\n')
    with open(os.path.join(d, "pytorch_model.bin"), "wb") as f:
        f.write(b"not copied")
    return cfg


def fp8_weight(rng, rows, cols, rank):
    """A low-rank weight quantised per 128x128 block: codes + scale_inv."""
    w = lowrank(rng, rows, cols, rank, scale=1.0)
    gr, gc = -(-rows // 128), -(-cols // 128)
    s = np.zeros((gr, gc))
    codes = np.zeros((rows, cols), dtype=np.uint8)
    for i in range(gr):
        for j in range(gc):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            s[i, j] = max(np.abs(blk).max(), 1e-12) / 448.0
            codes[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = e4m3_encode(blk / s[i, j])
    return (("F8_E4M3", (rows, cols), codes.tobytes()),
            ("F32", (gr, gc), s.astype("<f4").tobytes()))


def make_dsv3(d, rng):
    os.makedirs(d)
    hidden, heads, qr, kvr, nope, rope, v = 288, 4, 160, 144, 48, 32, 40
    cfg = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
           "hidden_size": hidden, "num_hidden_layers": 1, "num_attention_heads": heads,
           "num_key_value_heads": heads, "intermediate_size": 320, "rms_norm_eps": 1e-6,
           "kv_lora_rank": kvr, "q_lora_rank": qr, "qk_nope_head_dim": nope,
           "qk_rope_head_dim": rope, "v_head_dim": v, "vocab_size": 64,
           "torch_dtype": "bfloat16",
           "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                   "activation_scheme": "dynamic",
                                   "weight_block_size": [128, 128]}}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    p = "model.layers.0."
    s1, s2 = {}, {}
    shapes = {"self_attn.q_a_proj.weight": (qr, hidden, 10),
              "self_attn.q_b_proj.weight": (heads * (nope + rope), qr, 14),
              "self_attn.kv_a_proj_with_mqa.weight": (kvr + rope, hidden, 9),
              "self_attn.kv_b_proj.weight": (heads * (nope + v), kvr, 12),
              "self_attn.o_proj.weight": (hidden, heads * v, 12),
              "mlp.down_proj.weight": (hidden, 320, 40)}
    for k, (r, c, rk) in shapes.items():
        wq, sq = fp8_weight(rng, r, c, rk)
        s1[p + k] = wq
        # kv_b_proj's scale lives in the other shard
        (s2 if k.startswith("self_attn.kv_b") else s1)[p + k + "_scale_inv"] = sq
    bf = lambda x: ("BF16", x.shape, bf16_encode(x).tobytes())
    s2[p + "input_layernorm.weight"] = bf(1 + 0.1 * rng.standard_normal(hidden))
    s2[p + "self_attn.q_a_layernorm.weight"] = bf(1 + 0.1 * rng.standard_normal(qr))
    s2[p + "self_attn.kv_a_layernorm.weight"] = bf(1 + 0.1 * rng.standard_normal(kvr))
    s2["model.embed_tokens.weight"] = bf(rng.standard_normal((64, hidden)))
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    write_st(os.path.join(d, names[0]), s1, {"format": "pt"})
    write_st(os.path.join(d, names[1]), s2, {"format": "pt", "shard": "two"})
    wm = {k: names[0] for k in s1}
    wm.update({k: names[1] for k in s2})
    size = sum(len(x[2]) for x in list(s1.values()) + list(s2.values()))
    json.dump({"metadata": {"total_size": size}, "weight_map": wm},
              open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=2)
    return cfg


# -------------------------------------------------------------- checks

def minimal_rank(s, tau):
    e = s ** 2
    tails = np.append(np.cumsum(e[::-1])[::-1], 0.0)  # tails[r] = sum_{i>=r}
    tot = tails[0]  # summed in the same order, so that tau = 1 gives rank 0
    if tot == 0:
        return 0
    for r in range(len(s) + 1):
        if tails[r] <= tau * tot:
            return r
    return len(s)


def check_truncated(name, indir, outdir, tau=None, rank=None, per_head=False,
                    factor_dtype="F32", tol=1e-5):
    tin, tout = read_model(indir), read_model(outdir)
    cfg_in = json.load(open(os.path.join(indir, "config.json")))
    cfg = json.load(open(os.path.join(outdir, "config.json")))
    sec = cfg.get("fasvd_lowrank")
    report(sec is not None and sec["format"] == "fasvd.lowrank",
           name + ": config.json has the fasvd_lowrank section")
    # a transformers config's model_type and architectures move into the
    # section (base_*): the folder loads only through its loader
    moved = {"model_type": sec.get("base_model_type"),
             "architectures": sec.get("base_architectures")} if "base_model_type" in sec else {}
    keys_kept = all((moved[k] if k in moved else cfg.get(k)) == v for k, v in cfg_in.items())
    report(keys_kept and (cfg.get("model_type") == "fasvd_lowrank") == bool(moved),
           name + ": config.json keeps every input key (model_type, architectures as base_*)")
    ents = sec["tensors"]
    errs = []
    replaced = set(ents)
    for w, e in ents.items():
        a, b = tout.get(e["A"]), tout.get(e["B"])
        if a is None or b is None:
            errs.append("%s: factors missing" % w)
            continue
        if w in tout or (w + "_scale_inv") in tout:
            errs.append("%s: still present (or its scale_inv)" % w)
        if a[0] != factor_dtype or b[0] != factor_dtype:
            errs.append("%s: factor dtype %s" % (w, a[0]))
        if a[3] != tin[w][3]:
            errs.append("%s: factors in shard %s, weight was in %s" % (w, a[3], tin[w][3]))
        W = dequant(tin, w)
        h = e["heads"]
        A, B = to_f64(a), to_f64(b)
        if h > 1:
            Wh = W.reshape(h, W.shape[0] // h, W.shape[1])
            if A.shape != (h, W.shape[0] // h, e["inner"]) or B.shape != (h, e["inner"], W.shape[1]):
                errs.append("%s: per-head shapes %s %s" % (w, A.shape, B.shape))
                continue
            svals = [np.linalg.svd(x, compute_uv=False) for x in Wh]
            R = np.einsum("hij,hjk->hik", A, B)
            err = ((Wh - R) ** 2).sum() / (W ** 2).sum()
            e2 = [s ** 2 for s in svals]
            tot = sum(x.sum() for x in e2)
            want = None
            if tau is not None:
                p = len(svals[0])
                for r in range(p + 1):
                    if sum(x[r:].sum() for x in e2) <= tau * tot:
                        want = r
                        break
            else:
                want = min(rank, len(svals[0]))
            opt = sum(x[want:].sum() for x in e2) / tot
        else:
            if A.shape != (W.shape[0], e["inner"]) or B.shape != (e["inner"], W.shape[1]):
                errs.append("%s: shapes %s %s" % (w, A.shape, B.shape))
                continue
            s = np.linalg.svd(W, compute_uv=False)
            want = minimal_rank(s, tau) if tau is not None else min(rank, len(s))
            err = ((W - A @ B) ** 2).sum() / (W ** 2).sum()
            opt = (s[want:] ** 2).sum() / (s ** 2).sum()
        if e["rank"] != want:
            errs.append("%s: rank %d, minimal rank meeting tau is %d" % (w, e["rank"], want))
        if e["inner"] != max(want, 1):
            errs.append("%s: inner %d for rank %d" % (w, e["inner"], want))
        if abs(err - opt) > tol * max(opt, 1e-3) + 1e-9:
            errs.append("%s: ||W-AB||^2/||W||^2 = %.9g, optimal %.9g" % (w, err, opt))
        if abs(e["energy_lost"] - opt) > tol * max(opt, 1e-3) + 1e-9:
            errs.append("%s: energy_lost %.9g, optimal %.9g" % (w, e["energy_lost"], opt))
        if tau is not None and opt > tau:
            errs.append("%s: loses %.6g > tau" % (w, opt))
        if per_head is not None and (h > 1) != per_head and per_head and e.get("role") in (
                "q_proj", "k_proj", "v_proj", "q_b_proj", "kv_b_proj"):
            errs.append("%s: heads %d" % (w, h))
    report(not errs, name + ": factors at the minimal rank, optimal energy lost",
           "\n".join(errs))
    # every other tensor unchanged, byte for byte, in the same shard
    gone = replaced | {w + "_scale_inv" for w in replaced}
    added = {e["A"] for e in ents.values()} | {e["B"] for e in ents.values()}
    bad = []
    for k, v in tin.items():
        if k in gone:
            continue
        if k not in tout:
            bad.append("missing " + k)
        elif tout[k][:3] != v[:3] or tout[k][3] != v[3]:
            bad.append("changed " + k)
    for k in tout:
        if k not in tin and k not in added:
            bad.append("unexpected " + k)
    report(not bad, name + ": every other tensor byte-identical, same shard", "\n".join(bad))
    # index
    idx = os.path.join(outdir, "model.safetensors.index.json")
    if os.path.exists(os.path.join(indir, "model.safetensors.index.json")):
        ix = json.load(open(idx))
        wm = ix["weight_map"]
        ok = set(wm) == set(tout) and all(wm[k] == tout[k][3] for k in tout)
        size = sum(len(v[2]) for v in tout.values())
        report(ok and ix["metadata"]["total_size"] == size,
               name + ": index maps every tensor to its shard, total_size right")
        shards_in = sorted(f for f in os.listdir(indir) if f.endswith(".safetensors"))
        shards_out = sorted(f for f in os.listdir(outdir) if f.endswith(".safetensors"))
        report(shards_in == shards_out, name + ": same shard files", str(shards_out))
    return ents


def check_fails(name, args, status=None, outdir=None, reported=False):
    """Fails with one line on stderr, with one prefix ("fasvd: ", not also
    the library function's name); stdout is empty (no report header over
    nothing) unless tensors were `reported` before the failure."""
    rc, out, err = run(*args)
    lines = [l for l in err.splitlines() if l]
    ok = rc != 0 and (status is None or rc == status) and len(lines) == 1 and \
        lines[0].startswith("fasvd: ") and not lines[0].startswith("fasvd: fasvd_") and \
        (reported or out == "")
    if outdir is not None:
        parent = os.path.dirname(outdir.rstrip("/")) or "."
        leftovers = [f for f in os.listdir(parent)
                     if f.startswith(os.path.basename(outdir.rstrip("/")) + ".tmp-")]
        ok = ok and not leftovers and (not os.path.exists(outdir) or not os.listdir(outdir))
    report(ok, name, "rc=%d stderr=%r" % (rc, err))


def check_optimal_at_fixed_rank(tmp, rng):
    """MiniLM-like weights (F32, 384 wide, slowly decaying spectra: the
    case where a randomised sketch is visibly suboptimal): `truncate --rank
    64` is exact by default and reports the optimum of every tensor within
    1e-9 relative of numpy's; `--backend randomized` says `approximate` on
    each line and in config.json, with the optimum it could not reach."""
    d = os.path.join(tmp, "minilm-like")
    os.makedirs(d)
    shapes = {"enc.query.weight": (384, 384), "enc.value.weight": (384, 384),
              "enc.intermediate.weight": (1536, 384), "enc.output.weight": (384, 1536)}
    weights, tensors = {}, {}
    for name, (m, n) in shapes.items():
        p = min(m, n)
        u, _ = np.linalg.qr(rng.standard_normal((m, p)))
        v, _ = np.linalg.qr(rng.standard_normal((n, p)))
        w = ((u * (np.arange(1, p + 1) ** -0.35)) @ v.T).astype(np.float32)
        weights[name] = w.astype(np.float64)
        tensors[name] = ("F32", w.shape, w.tobytes())
    write_st(os.path.join(d, "model.safetensors"), tensors)
    optimum = {}
    for name, w in weights.items():
        s = np.linalg.svd(w, compute_uv=False)
        optimum[name] = np.sum(s[64:] ** 2) / np.sum(s ** 2)
    out = os.path.join(tmp, "minilm-like-r64")
    rc, so, se = run("truncate", d, "-o", out, "--rank", "64", "--tensors", "enc.*")
    lines = [l for l in so.splitlines() if l.startswith("enc.")]
    report(rc == 0 and len(lines) == 4 and
           all("approximate" not in l and l.endswith("gesvdx") for l in lines),
           "minilm-like: truncate --rank 64 (exact, gesvdx)", so + se)
    if rc != 0:
        return
    ents = json.load(open(os.path.join(out, "config.json")))["fasvd_lowrank"]["tensors"]
    bad = ["%s: %.17g vs numpy %.17g" % (k, ents[k]["energy_lost"], optimum[k])
           for k in shapes if k not in ents or "approximate" in ents[k] or
           abs(ents[k]["energy_lost"] - optimum[k]) > 1e-9 * optimum[k]]
    report(not bad, "minilm-like --rank 64: every tensor's reported loss is the optimum "
           "within 1e-9 relative", "\n".join(bad))
    t = read_model(out)
    bad = []
    for k, w in weights.items():
        got = np.linalg.norm(w - to_f64(t[k + ".A"]) @ to_f64(t[k + ".B"])) ** 2 / \
            np.linalg.norm(w) ** 2
        if abs(got - optimum[k]) > 1e-5 * optimum[k]:
            bad.append("%s: factors lose %.9g, optimum %.9g" % (k, got, optimum[k]))
    report(not bad, "minilm-like --rank 64: the stored factors achieve the optimum",
           "\n".join(bad))
    out = os.path.join(tmp, "minilm-like-rand")
    rc, so, se = run("truncate", d, "-o", out, "--rank", "64", "--tensors", "enc.*",
                     "--backend", "randomized")
    lines = [l for l in so.splitlines() if l.startswith("enc.")]
    report(rc == 0 and len(lines) == 4 and all("randomized approximate" in l for l in lines)
           and "approximate factors" in so, "minilm-like --backend randomized: each line "
           "says approximate", so + se)
    if rc == 0:
        ents = json.load(open(os.path.join(out, "config.json")))["fasvd_lowrank"]["tensors"]
        report(all(ents[k].get("approximate") is True and
                   ents[k]["energy_lost"] >= optimum[k] * (1 - 1e-9) for k in shapes),
               "minilm-like randomized: config.json says approximate, loss >= optimum",
               json.dumps(ents)[:2000])
    out = os.path.join(tmp, "minilm-like-rand-tau")
    tau = float(min(optimum.values())) * 1.2
    rc, so, se = run("truncate", d, "-o", out, "--energy-loss", "%.17g" % tau, "--tensors",
                     "enc.*", "--backend", "randomized", "--allow-larger")
    report(rc == 0 and all("approximate (optimum " in l for l in so.splitlines()
                           if l.startswith("enc.")),
           "minilm-like randomized with --energy-loss: each line gives the optimum", so + se)


def main():
    tmp = tempfile.mkdtemp(prefix="fasvd-truncate-test-")
    try:
        rng = np.random.default_rng(1234)
        llama = os.path.join(tmp, "llama")
        make_llama(llama, rng)
        dsv3 = os.path.join(tmp, "dsv3")
        make_dsv3(dsv3, rng)

        # ---- the "done when" runs
        out = os.path.join(tmp, "llama-lr")
        rc, so, se = run("truncate", llama, "-o", out, "--energy-loss", "0.01", "--dtype", "f32")
        report(rc == 0 and se == "", "llama: truncate --energy-loss 0.01 --dtype f32", se)
        if rc == 0:
            ents = check_truncated("llama", llama, out, tau=0.01)
            report(len(ents) == 8 and all(e["role"] for e in ents.values()),
                   "llama: the 8 attention projections are replaced", list(ents))
            report(os.path.exists(os.path.join(out, "tokenizer.json")) and
                   not os.path.exists(os.path.join(out, "pytorch_model.bin")),
                   "llama: tokenizer copied, other weight formats not")
            lines = [l for l in so.splitlines() if l and not l.startswith("#")]
            report(len(lines) == 8 and "squared Frobenius" in so,
                   "llama: one report line per matrix, tau defined", so)
        out = os.path.join(tmp, "dsv3-lr")
        rc, so, se = run("truncate", dsv3, "-o", out, "--energy-loss", "0.01", "--dtype", "f32")
        report(rc == 0 and se == "", "deepseek_v3 fp8: truncate --energy-loss 0.01 --dtype f32", se)
        if rc == 0:
            ents = check_truncated("deepseek_v3", dsv3, out, tau=0.01)
            report(len(ents) == 5 and all(e["source_dtype"] == "F8_E4M3" for e in ents.values()),
                   "deepseek_v3: the 5 MLA projections replaced, FP8 source", list(ents))
            _, meta = read_st(os.path.join(out, "model-00002-of-00002.safetensors"))
            report(meta.get("shard") == "two", "deepseek_v3: shard metadata kept", meta)

        # ---- per head
        out = os.path.join(tmp, "llama-ph")
        rc, so, se = run("truncate", llama, "-o", out, "--energy-loss", "0.05", "--per-head",
                         "--dtype", "f32")
        report(rc == 0, "llama: --per-head", se)
        if rc == 0:
            ents = check_truncated("llama per-head", llama, out, tau=0.05, per_head=True)
            hs = {e["role"]: e["heads"] for e in ents.values()}
            report(hs == {"q_proj": 4, "k_proj": 2, "v_proj": 2, "o_proj": 1},
                   "llama per-head: heads per role", hs)
            # info reads the factor output: each weight's rank, heads and
            # parameters kept (those of A and B) against the dense weight's
            rc, so, se = run("info", out, "--json")
            tout = read_model(out)
            got = {t["name"]: t for t in json.loads(so)["tensors"]} if rc == 0 else {}
            bad = [w for w, e in ents.items()
                   if not got.get(w, {}).get("factored") or got[w]["rank"] != e["rank"] or
                   got[w]["factor_heads"] != e["heads"] or
                   got[w]["params"] != sum(int(np.prod(tout[e[k]][1])) for k in "AB") or
                   got[w]["params_dense"] != int(np.prod(got[w]["shape"]))]
            report(rc == 0 and not bad, "llama per-head: info --json gives rank, heads and "
                   "parameters of every factored weight", bad or se)
            rc, so, se = run("info", out)
            report(rc == 0 and "factored     8 of 8 weights stored as A·B" in so and
                   "q_proj rank" in so, "llama per-head: info says the weights are factored",
                   so)
        out = os.path.join(tmp, "dsv3-ph")
        rc, so, se = run("truncate", dsv3, "-o", out, "--rank", "5", "--per-head",
                         "--dtype", "f32", "--compute", "f64")
        report(rc == 0, "deepseek_v3: --per-head --rank 5", se)
        if rc == 0:
            ents = check_truncated("deepseek_v3 per-head", dsv3, out, rank=5, per_head=True)
            report(ents["model.layers.0.self_attn.kv_b_proj.weight"]["heads"] == 4,
                   "deepseek_v3 per-head: kv_b_proj has 4 heads")

        # ---- shared output subspace
        out = os.path.join(tmp, "dsv3-so")
        rc, so, se = run("truncate", dsv3, "-o", out, "--energy-loss", "0.02", "--shared-o",
                         "--dtype", "f32", "--compute", "f64")
        report(rc == 0, "deepseek_v3: --shared-o", se)
        if rc == 0:
            ents = check_truncated("deepseek_v3 shared-o", dsv3, out, tau=0.02)
            e = ents["model.layers.0.self_attn.o_proj.weight"]
            A = to_f64(read_model(out)[e["A"]])
            orth = np.abs(A.T @ A - np.eye(A.shape[1])).max()
            report(e.get("shared") == "output" and e["shared_factor"] == "A" and
                   e["head_dim"] == 40 and orth < 1e-5,
                   "deepseek_v3 shared-o: A is an orthonormal shared output basis",
                   "%r orth %g" % (e, orth))

        # ---- fixed ranks: 0, full (clamped), tau = 1
        for args, label, kw in (
                (["--rank", "0"], "rank 0", {"rank": 0}),
                (["--rank", "1000"], "rank beyond full", {"rank": 1000}),
                (["--energy-loss", "1"], "tau = 1", {"tau": 1.0}),
                (["--energy-loss", "0"], "tau = 0", {"tau": 0.0})):
            out = os.path.join(tmp, "llama-" + label.replace(" ", "_"))
            # full-rank factors are larger than the weight: asked for explicitly
            larger = ["--allow-larger"] if label in ("rank beyond full", "tau = 0") else []
            rc, so, se = run("truncate", llama, "-o", out, "--dtype", "f32", "--compute",
                             "f64", *args, *larger)
            report(rc == 0, "llama: " + label, se)
            if rc == 0:
                ents = check_truncated("llama " + label, llama, out, tol=1e-6, **kw)
                if label in ("rank 0", "tau = 1"):
                    t = read_model(out)
                    zero = all(not to_f64(t[e["A"]]).any() and e["inner"] == 1 and e["rank"] == 0
                               for e in ents.values())
                    report(zero, "llama %s: zero factors of inner dimension 1" % label)

        # ---- exact at a fixed rank; randomised only when asked, and labelled
        check_optimal_at_fixed_rank(tmp, rng)

        # ---- factors that would not be smaller are not written by default
        out = os.path.join(tmp, "llama-larger")
        rc, so, se = run("truncate", llama, "-o", out, "--rank", "1000")
        kept = [l for l in so.splitlines() if "kept dense" in l]
        report(rc != 0 and not os.path.exists(out) and "nothing to truncate" in se and
               "--allow-larger" in se and len(kept) == 8 and
               all("not fewer than" in l for l in kept),
               "llama: factors larger than every weight: nothing written, each line says "
               "why", "rc %d\n%s\n%s" % (rc, so, se))
        rc, so, se = run("truncate", llama, "-o", out, "--rank", "1000", "--only-if-smaller",
                         "--allow-larger")
        report(rc == 2 and not os.path.exists(out), "--only-if-smaller contradicts "
               "--allow-larger", se)

        # ---- globs, bf16 factors, unknown architecture
        out = os.path.join(tmp, "llama-glob")
        rc, so, se = run("truncate", llama, "-o", out, "--rank", "8", "--tensors",
                         "*.mlp.down_proj.weight", "--tensors", "model.layers.1.[si]*",
                         "--dtype", "bf16")
        report(rc == 0, "llama: --tensors globs (norms skipped), bf16 factors", se)
        if rc == 0:
            ents = check_truncated("llama glob", llama, out, rank=8, factor_dtype="BF16",
                                   tol=2e-2)
            report(sorted(ents) == ["model.layers.0.mlp.down_proj.weight",
                                    "model.layers.1.mlp.down_proj.weight",
                                    "model.layers.1.self_attn.k_proj.weight",
                                    "model.layers.1.self_attn.o_proj.weight",
                                    "model.layers.1.self_attn.q_proj.weight",
                                    "model.layers.1.self_attn.v_proj.weight"],
                   "llama glob: exactly the matching 2-D weights", list(ents))
        check_fails("a pattern matching only 1-D tensors fails",
                    ["truncate", llama, "-o", os.path.join(tmp, "g2"), "--rank", "3",
                     "--tensors", "model.norm.*"], outdir=os.path.join(tmp, "g2"))
        unk = os.path.join(tmp, "unknown")
        shutil.copytree(llama, unk)
        cfg = json.load(open(os.path.join(unk, "config.json")))
        cfg["model_type"] = "my_new_arch"
        json.dump(cfg, open(os.path.join(unk, "config.json"), "w"))
        out = os.path.join(tmp, "unknown-lr")
        rc, so, se = run("truncate", unk, "-o", out, "--rank", "4", "--tensors", "lm_head.weight",
                         "--dtype", "f32")
        report(rc == 0, "unknown architecture with --tensors", se)
        if rc == 0:
            check_truncated("unknown arch", unk, out, rank=4)
        check_fails("unknown architecture without --tensors fails",
                    ["truncate", unk, "-o", os.path.join(tmp, "u2"), "--rank", "4"],
                    outdir=os.path.join(tmp, "u2"))

        # ---- failures
        check_fails("usage: no rank or energy loss", ["truncate", llama, "-o",
                                                      os.path.join(tmp, "x1")], 2)
        check_fails("usage: both rank and energy loss",
                    ["truncate", llama, "-o", os.path.join(tmp, "x1"), "--rank", "2",
                     "--energy-loss", "0.1"], 2)
        check_fails("usage: energy loss outside [0, 1]",
                    ["truncate", llama, "-o", os.path.join(tmp, "x1"), "--energy-loss", "1.5"], 2)
        check_fails("usage: no -o", ["truncate", llama, "--rank", "3"], 2)
        check_fails("output folder is the input",
                    ["truncate", llama, "-o", llama, "--rank", "3"])
        check_fails("output folder not empty",
                    ["truncate", llama, "-o", os.path.join(tmp, "llama-lr"), "--rank", "3"])
        check_fails("pattern matching nothing",
                    ["truncate", llama, "-o", os.path.join(tmp, "x2"), "--rank", "3",
                     "--tensors", "nothing.*"], outdir=os.path.join(tmp, "x2"))
        # a NaN in the last replaced weight: the failure comes after shards
        # were started, and must leave nothing behind
        bad = os.path.join(tmp, "nan")
        make_llama(bad, np.random.default_rng(5), dtype="F32")
        p = os.path.join(bad, "model.safetensors")
        ts, meta = read_st(p)
        name = "model.layers.1.self_attn.v_proj.weight"
        w = np.frombuffer(ts[name][2], dtype="<f4").copy()
        w[17] = np.nan
        ts[name] = ("F32", ts[name][1], w.tobytes())
        write_st(p, ts, meta)
        check_fails("NaN in a weight: clear error, no partial output",
                    ["truncate", bad, "-o", os.path.join(tmp, "nan-lr"), "--rank", "3"], 17,
                    outdir=os.path.join(tmp, "nan-lr"), reported=True)
        rc, _, se = run("truncate", bad, "-o", os.path.join(tmp, "nan-lr2"), "--rank", "3")
        report(name in se, "NaN error names the tensor", se)
        # --format dense: the weights under their own names, dtypes and
        # shapes, each the product of the factors of a --format factors run
        dense, fac = os.path.join(tmp, "dense"), os.path.join(tmp, "fac")
        rc, so, se = run("truncate", llama, "-o", dense, "--rank", "3", "--format", "dense",
                         "-q")
        rc2, _, se2 = run("truncate", llama, "-o", fac, "--rank", "3", "-q")
        tin, tden, tfac = read_model(llama), read_model(dense), read_model(fac)
        ok = rc == 0 and rc2 == 0 and set(tden) == set(tin)
        for k, v in (tin.items() if ok else []):
            if k + ".A" in tfac:
                prod = to_f64(tfac[k + ".A"]) @ to_f64(tfac[k + ".B"])
                ok = ok and tden[k][:2] == v[:2] and \
                    np.abs(to_f64(tden[k]) - prod).max() <= 1e-2 * np.abs(prod).max()
            else:
                ok = ok and tden[k][2] == v[2]
        report(ok, "--format dense: each replaced weight is A @ B, in its own dtype and shape",
               se + se2)
        # a NaN in a factor of a factored folder: analyze names the factor
        # and writes nothing
        nanfac = os.path.join(tmp, "fac-nan")
        shutil.copytree(fac, nanfac)
        fp = [os.path.join(nanfac, f) for f in os.listdir(nanfac) if f.endswith(".safetensors")]
        fname = "model.layers.0.self_attn.k_proj.weight.A"
        for f in fp:
            ts, meta = read_st(f)
            if fname in ts:
                dt, shape, raw = ts[fname]
                a = np.frombuffer(raw, dtype="<f4" if dt == "F32" else "<f8").copy()
                a[5] = np.nan
                ts[fname] = (dt, shape, a.tobytes())
                write_st(f, ts, meta)
        spec = os.path.join(tmp, "fac-nan.safetensors")
        rc, _, se = run("analyze", nanfac, "-o", spec)
        report(rc == 17 and fname in se and "NaN" in se and not os.path.exists(spec),
               "analyze of a factored folder with a NaN in a factor names the factor", se)
        check_fails("usage: --no-whiten without --calibration",
                    ["truncate", llama, "-o", os.path.join(tmp, "nw"), "--rank", "3",
                     "--no-whiten"], 2)
        check_fails("--calibration without a weight's Gram",
                    ["truncate", llama, "-o", os.path.join(tmp, "cal"), "--rank", "3",
                     "--calibration", os.path.join(llama, "model.safetensors")],
                    outdir=os.path.join(tmp, "cal"))
        # empty existing output folder is fine
        empty = os.path.join(tmp, "empty")
        os.makedirs(empty)
        rc, so, se = run("truncate", llama, "-o", empty, "--rank", "3", "-q")
        report(rc == 0 and so == "" and os.path.exists(os.path.join(empty, "config.json")),
               "an empty output folder is filled; -q prints nothing", se)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
