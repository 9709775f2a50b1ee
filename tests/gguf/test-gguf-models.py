#!/usr/bin/python3
"""`fasvd analyze` of GGUF models, end to end, against two oracles (TAP).

usage: test-gguf-models.py FASVD WORKDIR

For each GGUF architecture libfasvd reads (llama, qwen2, qwen3, gemma2,
gemma3, phi3, gpt2, gptneox, bert, deepseek2 with attn_kv_b or with the newer
attn_k_b + attn_v_b split) a small two-layer model is
drawn from a float64 generator in the Hugging Face layout, converted as
llama.cpp's convert_hf_to_gguf.py converts it (llama's Q/K rows permuted
inside each head, Gemma's norms stored as 1 + gamma, GPT-2's Conv1D weights
transposed to Linear, NeoX's per-head [q; k; v] reordered into [Q; K; V],
DeepSeek's MLA tensors renamed) and written with gguf.GGUFWriter in F32 and
in Q8_0. Then:

(a) the file is read back with gguf.GGUFReader, dequantised with
    gguf.quants.dequantize, converted back to the Hugging Face layout here,
    and ref_spectra.py's float64 numpy reference (tests/reference) computed:
    every spectrum of `fasvd analyze --compute f64` must match within
    1e-10 * sigma1, effective ranks equal;
(b) the dequantised weights are written as a Hugging Face safetensors
    folder and analysed too: every spectrum of the GGUF equals the folder's
    within 1e-9 * sigma1 (identical values, only the summation order of the
    permuted rows may differ).

Without the gguf package every case is skipped with the reason.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import ref_spectra  # noqa: E402

try:
    import gguf
    import gguf.quants
    from gguf import GGMLQuantizationType as Q
except ImportError as e:  # the oracle is optional: never download it here
    gguf = None
    WHY = "the gguf Python package is not installed (pip install gguf): %s" % e

HIDDEN, LAYERS, H = 64, 2, 4
# GGUF architecture -> (Hugging Face model_type, KV heads, head_dim)
ARCHS = {
    "llama": ("llama", 2, 16), "qwen2": ("qwen2", 2, 16), "qwen3": ("qwen3", 4, 16),
    "gemma2": ("gemma2", 2, 16), "gemma3": ("gemma3", 1, 32), "phi3": ("phi3", 2, 16),
    "gpt2": ("gpt2", 4, 16), "gptneox": ("gpt_neox", 4, 16), "bert": ("bert", 4, 16),
    "deepseek2": ("deepseek_v2", 4, 0),
    # kv_b split per head into attn_k_b (K transposed) and attn_v_b, as
    # converters write DeepSeek since 2025
    "deepseek2-kb": ("deepseek_v2", 4, 0),
}
MLA = dict(q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=8,
           v_head_dim=32)


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py's LlamaModel.permute (rows inside each head)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w, n_head, n_head_kv):
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def hf_config(mt, kv, hd):
    if mt == "gpt2":
        return {"model_type": mt, "n_embd": HIDDEN, "n_layer": LAYERS, "n_head": H}
    c = {"model_type": mt, "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
         "num_attention_heads": H, "num_key_value_heads": kv}
    if mt == "deepseek_v2":
        c.update(MLA)
    elif hd:
        c["head_dim"] = hd
    return c


def draw(rng, shape):
    return rng.standard_normal(shape).astype(np.float32).astype(np.float64) * 0.2


def gguf_shapes(arch, kv, hd):
    """GGUF tensor name suffix -> (rows, cols) of the Linear matrix, or (n,)."""
    if arch.startswith("deepseek2"):
        m = MLA
        if arch == "deepseek2-kb":
            s = gguf_shapes("deepseek2", kv, hd)
            del s["attn_kv_b"]
            s["attn_k_b"] = (H, m["kv_lora_rank"], m["qk_nope_head_dim"])
            s["attn_v_b"] = (H, m["v_head_dim"], m["kv_lora_rank"])
            return s
        return {"attn_q_a": (m["q_lora_rank"], HIDDEN),
                "attn_q_b": (H * (m["qk_nope_head_dim"] + m["qk_rope_head_dim"]),
                             m["q_lora_rank"]),
                "attn_kv_a_mqa": (m["kv_lora_rank"] + m["qk_rope_head_dim"], HIDDEN),
                "attn_kv_b": (H * (m["qk_nope_head_dim"] + m["v_head_dim"]),
                              m["kv_lora_rank"]),
                "attn_output": (HIDDEN, H * m["v_head_dim"]),
                "attn_norm": (HIDDEN,), "attn_q_a_norm": (m["q_lora_rank"],),
                "attn_kv_a_norm": (m["kv_lora_rank"],)}
    s = {"attn_output": (HIDDEN, H * hd)}
    if arch in ("phi3", "gpt2", "gptneox"):
        s["attn_qkv"] = ((H + 2 * kv) * hd, HIDDEN)
    else:
        s.update({"attn_q": (H * hd, HIDDEN), "attn_k": (kv * hd, HIDDEN),
                  "attn_v": (kv * hd, HIDDEN)})
    if arch != "bert":
        s["attn_norm"] = (HIDDEN,)
    if arch in ("qwen3", "gemma3"):
        s["attn_q_norm"] = (hd,)
        s["attn_k_norm"] = (hd,)
    if arch in ("gemma2", "gemma3"):
        s["post_attention_norm"] = (HIDDEN,)
    return s


def to_hf(arch, kv, hd, l, t):
    """GGUF tensors of layer l (Linear orientation, dequantised) -> the
    Hugging Face tensors, undoing each conversion of convert_hf_to_gguf."""
    if arch == "gpt2":
        p = "h.%d." % l
        return {p + "attn.c_attn.weight": t["attn_qkv"].T,
                p + "attn.c_proj.weight": t["attn_output"].T, p + "ln_1.weight": t["attn_norm"]}
    if arch == "gptneox":
        q, k, v = np.split(t["attn_qkv"], 3)
        per_head = np.concatenate([np.concatenate([q[i * hd:(i + 1) * hd], k[i * hd:(i + 1) * hd],
                                                   v[i * hd:(i + 1) * hd]]) for i in range(H)])
        p = "gpt_neox.layers.%d." % l
        return {p + "attention.query_key_value.weight": per_head,
                p + "attention.dense.weight": t["attn_output"],
                p + "input_layernorm.weight": t["attn_norm"]}
    if arch == "bert":
        p = "encoder.layer.%d.attention." % l
        return {p + "self.query.weight": t["attn_q"], p + "self.key.weight": t["attn_k"],
                p + "self.value.weight": t["attn_v"], p + "output.dense.weight": t["attn_output"]}
    p = "model.layers.%d." % l
    if arch == "deepseek2-kb":
        t = dict(t)
        kb, vb = t.pop("attn_k_b"), t.pop("attn_v_b")
        t["attn_kv_b"] = np.concatenate([np.concatenate([kb[h].T, vb[h]]) for h in range(H)])
        arch = "deepseek2"
    if arch == "deepseek2":
        names = {"attn_q_a": "self_attn.q_a_proj", "attn_q_b": "self_attn.q_b_proj",
                 "attn_kv_a_mqa": "self_attn.kv_a_proj_with_mqa",
                 "attn_kv_b": "self_attn.kv_b_proj", "attn_output": "self_attn.o_proj",
                 "attn_norm": "input_layernorm", "attn_q_a_norm": "self_attn.q_a_layernorm",
                 "attn_kv_a_norm": "self_attn.kv_a_layernorm"}
        return {p + names[k] + ".weight": v for k, v in t.items()}
    out = {p + "self_attn.o_proj.weight": t["attn_output"]}
    if arch == "phi3":
        out[p + "self_attn.qkv_proj.weight"] = t["attn_qkv"]
    else:
        q, k = t["attn_q"], t["attn_k"]
        if arch == "llama":
            q, k = unpermute(q, H, H), unpermute(k, H, kv)
        out.update({p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k,
                    p + "self_attn.v_proj.weight": t["attn_v"]})
    # Gemma's norms are stored as 1 + gamma by the converter (every
    # *norm.weight), the q/k and post-attention norms included.
    norms = {"attn_norm": "input_layernorm", "attn_q_norm": "self_attn.q_norm",
             "attn_k_norm": "self_attn.k_norm",
             "post_attention_norm": "post_attention_layernorm"}
    for k, hf in norms.items():
        if k in t:
            g = t[k]
            out[p + hf + ".weight"] = g - 1.0 if arch.startswith("gemma") else g
    return out


def write_gguf(path, arch, kv, hd, tensors, qtype):
    w = gguf.GGUFWriter(path, arch.split("-")[0])
    w.add_block_count(LAYERS)
    w.add_embedding_length(HIDDEN)
    w.add_head_count(H)
    if arch.startswith("deepseek2"):
        m = MLA
        w.add_head_count_kv(1)  # absorbed MQA form, as the converter writes it
        w.add_q_lora_rank(m["q_lora_rank"])
        w.add_kv_lora_rank(m["kv_lora_rank"])
        w.add_rope_dimension_count(m["qk_rope_head_dim"])
        w.add_key_length(m["kv_lora_rank"] + m["qk_rope_head_dim"])
        w.add_value_length(m["kv_lora_rank"])
        w.add_key_length_mla(m["qk_nope_head_dim"] + m["qk_rope_head_dim"])
        w.add_value_length_mla(m["v_head_dim"])
    else:
        w.add_head_count_kv(kv)
        if hd != HIDDEN // H:
            w.add_key_length(hd)
            w.add_value_length(hd)
    for name, a in tensors.items():
        a32 = a.astype(np.float32)
        if a.ndim >= 2 and qtype != Q.F32:
            w.add_tensor(name, gguf.quants.quantize(a32, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, a32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_gguf(path):
    """Every tensor of a GGUF file, dequantised by the gguf package, as
    float64 (Linear orientation: numpy shape = reversed ne)."""
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        a = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        shape = [int(x) for x in reversed(list(t.shape))]
        out[t.name] = np.asarray(a, dtype=np.float64).reshape(shape)
    return out


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = ({"__metadata__": metadata} if metadata else {}), [], 0
    for name in sorted(tensors):
        a = tensors[name]
        dt, b = ("F64", a.astype("<f8").tobytes()) if a.ndim == 1 else \
            ("F32", a.astype("<f4").tobytes())
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class Dict:
    """ref_spectra's checkpoint interface over a dict of arrays."""

    def __init__(self, d):
        self.d = d

    def has(self, name):
        return name in self.d

    def get(self, name):
        return self.d[name]


def analyze(fasvd, model, out):
    r = subprocess.run([fasvd, "analyze", model, "-o", out, "--compute", "f64", "-q"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("fasvd analyze %s failed: %s" % (model, r.stderr.strip()))
    return ref_spectra.read_output(out)


def compare(got, ref, tol, what):
    names = set(got.names())
    if names != set(ref):
        raise AssertionError("%s: spectra differ in names: %s" % (
            what, ", ".join(sorted(names ^ set(ref)))))
    for key, rs in ref.items():
        g = got.get(key).reshape(rs.shape[0], -1)
        if g.shape != rs.shape:
            raise AssertionError("%s %s: shape %s, expected %s" % (what, key, g.shape, rs.shape))
        for h in range(rs.shape[0]):
            err = np.max(np.abs(g[h] - rs[h]))
            if not err <= tol * rs[h][0] + 1e-300:
                raise AssertionError("%s %s[%d]: max |error| %.3g > %.0e * sigma1 %.6g"
                                     % (what, key, h, err, tol, rs[h][0]))
            for tau in (0.01, 0.001):
                a, b = ref_spectra.energy_rank(g[h], tau), ref_spectra.energy_rank(rs[h], tau)
                if a != b:
                    raise AssertionError("%s %s[%d]: effective rank at %g is %d, expected %d"
                                         % (what, key, h, tau, a, b))
    return len(ref)


def draw_gguf(rng, arch, kv, hd):
    """Tensors as the converter would write them, drawn from HF ones."""
    t = {}
    for l in range(LAYERS):
        for suffix, shape in gguf_shapes(arch, kv, hd).items():
            a = draw(rng, shape)
            if len(shape) == 1:
                a = 1.0 + a  # norms near 1 (gemma: the stored 1 + gamma)
            t["blk.%d.%s.weight" % (l, suffix)] = a
        if arch == "llama":  # the converter's permutation of HF's Q / K rows
            p = "blk.%d." % l
            t[p + "attn_q.weight"] = permute(t[p + "attn_q.weight"], H, H)
            t[p + "attn_k.weight"] = permute(t[p + "attn_k.weight"], H, kv)
    return t


def check_case(fasvd, work, arch, qtype, rng):
    mt, kv, hd = ARCHS[arch]
    d = os.path.join(work, "%s-%s" % (arch, qtype.name))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "hf"))
    path = os.path.join(d, "model.gguf")
    write_gguf(path, arch, kv, hd, draw_gguf(rng, arch, kv, hd), qtype)
    # (a) the oracle: the gguf package's reading and dequantisation
    deq = read_gguf(path)
    hf = {}
    for l in range(LAYERS):
        lt = {k[len("blk.%d." % l):-len(".weight")]: v for k, v in deq.items()
              if k.startswith("blk.%d." % l)}
        hf.update(to_hf(arch, kv, hd, l, lt))
    cfg = hf_config(mt, kv, hd)
    ref = {}
    for l in range(LAYERS):
        ref.update(ref_spectra.reference(Dict(hf), cfg, l, True))
    got = analyze(fasvd, path, os.path.join(d, "gguf.safetensors"))
    n = compare(got, ref, 1e-10, "GGUF vs numpy reference:")
    # (b) the same weights as a Hugging Face folder
    with open(os.path.join(d, "hf", "config.json"), "w") as f:
        json.dump(cfg, f)
    write_safetensors(os.path.join(d, "hf", "model.safetensors"), hf)
    hf_got = analyze(fasvd, os.path.join(d, "hf"), os.path.join(d, "hf.safetensors"))
    want = {k: hf_got.get(k).reshape(ref[k].shape) for k in ref}
    compare(got, want, 1e-9, "GGUF vs Hugging Face folder:")
    return n


def write_llama(path, keys, drop=(), arch="llama"):
    """A two-layer llama GGUF with metadata `keys` (name -> value, ints as
    uint32, lists as arrays of uint32) and without tensors `drop`."""
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(path, arch)
    for k, v in keys.items():
        if isinstance(v, list):
            w.add_array(k, v)
        else:
            w.add_uint32(k, v)
    for name, a in draw_gguf(rng, "llama", 2, 16).items():
        if name not in drop:
            w.add_tensor(name, a.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def error_cases(fasvd, work):
    """Metadata and tensors a GGUF model may get wrong: (name, keys, drop,
    arch, every text the message must hold)."""
    base = {"llama.block_count": LAYERS, "llama.embedding_length": HIDDEN,
            "llama.attention.head_count": H, "llama.attention.head_count_kv": 2}
    cases = [
        ("unknown architecture named, with the list", base, (), "mamba",
         ['GGUF architecture "mamba" is not supported', "llama, qwen2", "deepseek2"]),
        ("per-layer head counts that differ are refused, naming the layer",
         dict(base, **{"llama.attention.head_count": [4, 8]}), (), "llama",
         ["'llama.attention.head_count' differs between layers", "layer 1"]),
        ("a missing dimension key is named", {k: v for k, v in base.items()
                                               if k != "llama.embedding_length"},
         (), "llama", ["'llama.embedding_length' is missing"]),
        ("key_length != value_length is refused",
         dict(base, **{"llama.attention.key_length": 16, "llama.attention.value_length": 8}),
         (), "llama", ["key_length 16 differs from value_length 8"]),
        ("a missing tensor is named with its layer and role", base,
         ("blk.1.attn_k.weight",), "llama", ["layer 1 needs tensor 'blk.1.attn_k.weight' (k_proj)"]),
    ]
    out = []
    for name, keys, drop, arch, texts in cases:
        path = os.path.join(work, "err-%d.gguf" % len(out))
        write_llama(path, keys, drop, arch)
        r = subprocess.run([fasvd, "analyze", path, "-o", path + ".s", "-q"],
                           capture_output=True, text=True)
        missing = [t for t in texts + [path] if t not in r.stderr]
        ok = r.returncode != 0 and not missing and not os.path.exists(path + ".s")
        out.append((name, ok, "exit %d, stderr %r lacks %r" % (r.returncode, r.stderr, missing)))
    # equal per-layer arrays are one value
    path = os.path.join(work, "array.gguf")
    write_llama(path, dict(base, **{"llama.attention.head_count_kv": [2, 2]}))
    r = subprocess.run([fasvd, "info", path], capture_output=True, text=True)
    out.append(("per-layer arrays of one value are read", r.returncode == 0 and
                "4 query, 2 key/value" in r.stdout, r.stdout + r.stderr))
    # a folder of two GGUF models asks for the file
    two = os.path.join(work, "two")
    os.makedirs(two, exist_ok=True)
    for n in ("a.gguf", "b.gguf"):
        shutil.copy(path, os.path.join(two, n))
    r = subprocess.run([fasvd, "info", two], capture_output=True, text=True)
    out.append(("a folder of two GGUF models asks for the file", r.returncode != 0 and
                "holds 2 GGUF models" in r.stderr, r.stderr))
    return out


def main():
    fasvd, work = sys.argv[1], sys.argv[2]
    cases = [(a, q) for a in ARCHS for q in ("F32", "Q8_0")]
    n_errors = 7
    print("1..%d" % (len(cases) + n_errors))
    if gguf is None:
        for i in range(1, len(cases) + n_errors + 1):
            print("ok %d # SKIP %s" % (i, WHY))
        return 0
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(13)
    failed = 0
    for i, (arch, q) in enumerate(cases, 1):
        try:
            n = check_case(fasvd, work, arch, Q[q], rng)
            print("ok %d - %s %s: %d spectra equal the reference and the HF folder's"
                  % (i, arch, q, n))
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("not ok %d - %s %s" % (i, arch, q))
            for line in str(e).splitlines()[:20]:
                print("# " + line)
        sys.stdout.flush()
    errs = error_cases(fasvd, work)
    assert len(errs) == n_errors
    for i, (name, ok, diag) in enumerate(errs, len(cases) + 1):
        print(("ok" if ok else "not ok") + " %d - %s" % (i, name))
        if not ok:
            failed += 1
            for line in diag.splitlines()[:10]:
                print("# " + line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
