#!/usr/bin/python3
"""`fasvd truncate` of GGUF models, against numpy's SVD of the gguf
package's own dequantisation (TAP).

usage: test-gguf-truncate.py FASVD WORKDIR

For each GGUF architecture (llama, qwen2, qwen3, gemma2, gemma3, phi3, gpt2,
gptneox, bert, deepseek2 with attn_kv_b or with attn_k_b + attn_v_b) a
two-layer model is written by gguf.GGUFWriter as
tests/gguf/test-gguf-models.py writes it, in Q8_0 (and a few in F32 / Q4_0),
and truncated at --rank R and at --energy-loss TAU (default f64 compute).
For every replaced weight (W: the dequantised GGUF tensor; for gpt2, gptneox
and the attn_k_b split, which fasvd truncate writes in the Hugging Face
layout, the Hugging Face weight that test-gguf-models.py's to_hf() makes of
the dequantised tensors):

- the reported energy_lost (config.json's fasvd_lowrank section) equals the
  optimum sum_{i>r} s_i^2 / sum s_i^2 of numpy's SVD of the weight
  dequantised by gguf.quants.dequantize, within 1e-9 relative; with TAU the
  rank is the smallest whose optimum loss is at most TAU;
- A @ B (the factors written, under the weight's Hugging Face name) equals
  numpy's rank-r truncation within 1e-6 * sigma1;
- the weights not selected are written dequantised, equal to the package's;
- `fasvd analyze` reads the output folder; truncated at full rank in F64 its
  spectra (norms folded) equal those of the GGUF itself within 1e-9 * sigma1:
  the names, the norms (Gemma's stored 1 + gamma written as gamma) and the
  layout are those of the Hugging Face checkpoint.

For gpt2, gptneox and the attn_k_b split, the GGUF and the same dequantised
weights written as a Hugging Face safetensors folder are truncated alike
(rank, energy loss, --per-head, --shared-o, --format dense, a pattern): the
outputs hold the same tensors, bit for bit, and the same entries. The dense
output of a gpt2 GGUF loads in transformers' GPT2LMHeadModel as that of the
folder does, with the same weights and logits (skipped with the reason
without transformers).

Then the format dense, the kept-dense rule, nothing smaller (no output), a
GGUF no Hugging Face layout holds (refused, no output), and the real
SmolLM2-135M Q4_1 when cached (layers 0 and 1 only; skipped otherwise).
Without the gguf package every case is skipped with the reason.
"""
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("models", os.path.join(HERE, "test-gguf-models.py"))
models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(models)
gguf = models.gguf
Q = models.Q if gguf else None

ARCHS = ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2", "gptneox", "bert",
         "deepseek2", "deepseek2-kb"]
# written in the Hugging Face layout, not as the GGUF stores them; the
# pattern of their layer 1 by Hugging Face name
CONVERTED = {"gpt2": "h.1.*", "gptneox": "gpt_neox.layers.1.*",
             "deepseek2-kb": "model.layers.1.*"}
RANK, TAU = 7, 0.3


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), n


def read_safetensors(path):
    header, n = read_header(path)
    with open(path, "rb") as f:
        data = f.read()[8 + n:]
    dts = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        b, e = h["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=dts[h["dtype"]]).astype(
            np.float64).reshape(h["shape"])
    return out


def truncate(fasvd, model, out, *args):
    shutil.rmtree(out, ignore_errors=True)
    return subprocess.run([fasvd, "truncate", model, "-o", out, "-q"] + list(args),
                          capture_output=True, text=True)


def truncated(fasvd, model, out, *args):
    r = truncate(fasvd, model, out, *args)
    if r.returncode != 0:
        raise AssertionError("fasvd truncate %s failed: %s" % (model, r.stderr.strip()))
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    return cfg, read_safetensors(os.path.join(out, "model.safetensors"))


def optimum(w, r):
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    e = s * s
    lost = e[r:].sum() / e.sum()
    return lost, (u[:, :r] * s[:r]) @ vt[:r], s


def check_entry(name, e, w, a, b, tau=None):
    _, _, s = optimum(w, 0)
    r = e["rank"]
    if tau is not None:  # the smallest rank losing at most tau
        losses = [np.sum(s[k:] ** 2) / np.sum(s ** 2) for k in range(len(s) + 1)]
        want = min(k for k in range(len(s) + 1) if losses[k] <= tau)
        if r != want:
            raise AssertionError("%s: rank %d at energy loss %g, numpy says %d" % (name, r, tau,
                                                                                   want))
    lost, wr, s = optimum(w, r)
    got = e["energy_lost"]
    if not abs(got - lost) <= 1e-9 * lost + 1e-300:
        raise AssertionError("%s: energy_lost %.17g, numpy's optimum %.17g (rank %d)"
                             % (name, got, lost, r))
    err = np.max(np.abs(a @ b - wr))
    if not err <= 1e-6 * s[0]:
        raise AssertionError("%s: max |A B - W_r| = %.3g > 1e-6 * sigma1 %.6g" % (name, err, s[0]))


def analyze_ok(fasvd, out, *args):
    if os.path.exists(out + ".spectra"):
        os.unlink(out + ".spectra")
    r = subprocess.run([fasvd, "analyze", out, "-o", out + ".spectra",
                        "--compute", "f64", "-q"] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("fasvd analyze %s failed: %s" % (out, r.stderr.strip()))


def check_out(fasvd, model, out, deq, args, tau=None, n_layers=None, hfw=None):
    """hfw: the weights by Hugging Face name, for an architecture written in
    that layout (CONVERTED), else None (deq by GGUF name)."""
    cfg, st = truncated(fasvd, model, out, *args)
    tens = cfg["fasvd_lowrank"]["tensors"]
    if not tens:
        raise AssertionError("no tensor replaced")
    for name, e in tens.items():
        w = hfw[name] if hfw is not None else deq[e["gguf_name"]]
        check_entry(name, e, w, st[e["A"]], st[e["B"]], tau)
    analyze_ok(fasvd, out, *(["--layers", "0-%d" % (n_layers - 1)] if n_layers else []))
    return cfg, st, len(tens)


def hf_weights(arch, kv, hd, deq):
    """The dequantised GGUF tensors (read_gguf) in the Hugging Face layout,
    by Hugging Face name."""
    hf = {}
    for l in range(models.LAYERS):
        p = "blk.%d." % l
        lt = {k[len(p):-len(".weight")]: v for k, v in deq.items() if k.startswith(p)}
        hf.update(models.to_hf(arch, kv, hd, l, lt))
    return hf


def check_case(fasvd, work, arch, qtype, rng):
    mt, kv, hd = models.ARCHS[arch]
    d = os.path.join(work, "%s-%s" % (arch, qtype.name))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    path = os.path.join(d, "model.gguf")
    models.write_gguf(path, arch, kv, hd, models.draw_gguf(rng, arch, kv, hd), qtype)
    deq = models.read_gguf(path)
    hfw = hf_weights(arch, kv, hd, deq) if arch in CONVERTED else None
    deq = {k: v.reshape(v.shape[0], -1) for k, v in deq.items() if v.ndim >= 2}
    n = check_out(fasvd, path, os.path.join(d, "rank"), deq, ["--rank", str(RANK)],
                  hfw=hfw)[2]
    n += check_out(fasvd, path, os.path.join(d, "tau"), deq, ["--energy-loss", str(TAU)],
                   tau=TAU, hfw=hfw)[2]
    # a pattern: layer 1 replaced, layer 0 written dequantised
    cfg, st, k = check_out(fasvd, path, os.path.join(d, "pat"), deq,
                           ["--rank", str(RANK), "--tensors", "blk.1.*"], hfw=hfw)
    hf = [e["gguf_name"] for e in cfg["fasvd_lowrank"]["tensors"].values()]
    if any(not g.startswith("blk.1.") for g in hf):
        raise AssertionError("--tensors blk.1.* replaced %s" % hf)
    dense = [nm for nm in st if not nm.endswith((".A", ".B")) and st[nm].ndim == 2]
    if not dense:
        raise AssertionError("layer 0's weights were not written")
    for nm in dense:
        g = nm.replace("layers.1.", "layers.0.")
        src = [v for v in deq if v.startswith("blk.0.")]
        if hfw is not None and not np.array_equal(st[nm], hfw[nm]):
            raise AssertionError("%s is not the dequantised weight of layer 0 in the Hugging "
                                 "Face layout" % nm)
        if hfw is None and not any(st[nm].shape == deq[s].shape and
                                   np.array_equal(st[nm], deq[s]) for s in src):
            raise AssertionError("%s is not a dequantised weight of layer 0 (%s)" % (nm, g))
    return n + k + check_full(fasvd, path, os.path.join(d, "full"))


def spectra(fasvd, model, out, *args):
    if os.path.exists(out):
        os.unlink(out)
    r = subprocess.run([fasvd, "analyze", model, "-o", out, "--compute", "f64", "-q"] +
                       list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("fasvd analyze %s failed: %s" % (model, r.stderr.strip()))
    return models.ref_spectra.read_output(out)


def check_full(fasvd, path, out, *args):
    """Full rank in F64: `fasvd analyze` of the folder (norms folded, Hugging
    Face names) equals that of the GGUF within 1e-9 * sigma1. args: more
    truncate arguments, then analyze's after "--"."""
    args = list(args)
    cut = args.index("--") if "--" in args else len(args)
    truncated(fasvd, path, out, "--rank", "100000", "--allow-larger", "--dtype", "f64",
              *args[:cut])
    got = spectra(fasvd, out, out + ".spectra", *args[cut + 1:])
    ref = spectra(fasvd, path, out + ".gguf.spectra", *args[cut + 1:])
    want = {k: ref.get(k).reshape(-1, ref.get(k).shape[-1]) for k in ref.names()}
    return models.compare(got, want, 1e-9, "truncated at full rank vs the GGUF:")


def write_pair(work, name, arch, qtype, rng):
    """A GGUF of arch and the same dequantised weights as a Hugging Face
    folder (safetensors with format "pt", as transformers saves it): their
    paths, in work/name."""
    mt, kv, hd = models.ARCHS[arch]
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "hf"))
    path = os.path.join(d, "model.gguf")
    models.write_gguf(path, arch, kv, hd, models.draw_gguf(rng, arch, kv, hd), qtype)
    with open(os.path.join(d, "hf", "config.json"), "w") as f:
        json.dump(models.hf_config(mt, kv, hd), f)
    models.write_safetensors(os.path.join(d, "hf", "model.safetensors"),
                             hf_weights(arch, kv, hd, models.read_gguf(path)), {"format": "pt"})
    return path, os.path.join(d, "hf")


# entry keys that only the GGUF's output has, or that name its source
GGUF_KEYS = ("gguf_name", "gguf_v_name", "gguf_conversion", "source_dtype", "dense_dtype")


def same_outputs(g, h, what):
    """The outputs g (from the GGUF) and h (from the folder): the same
    tensors, bit for bit (2-D ones in the same dtype; norms are F32 from the
    GGUF, as stored in the folder from it), and the same entries."""
    hg, hh = read_header(os.path.join(g, "model.safetensors"))[0], \
        read_header(os.path.join(h, "model.safetensors"))[0]
    sg, sh = read_safetensors(os.path.join(g, "model.safetensors")), \
        read_safetensors(os.path.join(h, "model.safetensors"))
    if set(sg) != set(sh):
        raise AssertionError("%s: tensors differ: %s" % (what, sorted(set(sg) ^ set(sh))))
    for n in sg:
        if sg[n].shape != sh[n].shape or not np.array_equal(sg[n], sh[n]):
            raise AssertionError("%s: %s differs (shape %s, from the folder %s)"
                                 % (what, n, sg[n].shape, sh[n].shape))
        if sg[n].ndim > 1 and hg[n]["dtype"] != hh[n]["dtype"]:
            raise AssertionError("%s: %s is %s, from the folder %s"
                                 % (what, n, hg[n]["dtype"], hh[n]["dtype"]))
    with open(os.path.join(g, "config.json")) as f:
        tg = json.load(f)["fasvd_lowrank"]["tensors"]
    with open(os.path.join(h, "config.json")) as f:
        th = json.load(f)["fasvd_lowrank"]["tensors"]
    strip = {n: {k: v for k, v in e.items() if k not in GGUF_KEYS} for n, e in tg.items()}
    th = {n: {k: v for k, v in e.items() if k not in GGUF_KEYS} for n, e in th.items()}
    if strip != th:
        raise AssertionError("%s: entries differ:\n%s\n%s" % (what, strip, th))
    return len(tg)


def check_route(fasvd, work, arch, qtype, rng):
    """A converted architecture: truncating the GGUF gives what truncating
    the same weights as a Hugging Face folder gives."""
    path, hf = write_pair(work, "route-%s-%s" % (arch, qtype.name), arch, qtype, rng)
    n = 0
    for args in (["--rank", str(RANK)], ["--energy-loss", str(TAU)],
                 ["--rank", "5", "--per-head"], ["--rank", "6", "--shared-o"],
                 ["--rank", "5", "--format", "dense"],
                 ["--rank", str(RANK), "--tensors", CONVERTED[arch]]):
        g, h = path + ".out", hf + ".out"
        truncated(fasvd, path, g, *args)
        truncated(fasvd, hf, h, *args)
        n += same_outputs(g, h, "%s %s" % (arch, " ".join(args)))
        analyze_ok(fasvd, g)
    return n


def check_transformers(fasvd, work, rng):
    """The dense output of a gpt2 GGUF in transformers: GPT2LMHeadModel
    loads it with the weights and logits of the folder's dense output."""
    try:
        import torch
        import transformers
    except ImportError as e:
        return None, "transformers (with torch) is not installed: %s" % e
    os.environ["HF_HUB_OFFLINE"] = "1"
    transformers.logging.set_verbosity_error()
    path, hf = write_pair(work, "transformers", "gpt2", Q.Q8_0, rng)
    loaded = []
    for src in (path, hf):
        out = src + ".dense"
        truncated(fasvd, src, out, "--rank", "5", "--format", "dense")
        torch.manual_seed(0)  # the weights the file lacks are drawn alike
        m = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
        with torch.no_grad():
            logits = m(torch.arange(12)[None]).logits
        loaded.append((m.state_dict(), logits, read_safetensors(
            os.path.join(out, "model.safetensors"))))
    (sg, lg, fg), (sh, lh, _) = loaded
    for n in fg:  # the file's tensors, as GPT2LMHeadModel names them
        if not np.array_equal(sg["transformer." + n].double().numpy(), fg[n]):
            raise AssertionError("transformers read %s otherwise than the file has it" % n)
    bad = [n for n in sg if not torch.equal(sg[n], sh[n])]
    if bad or not torch.equal(lg, lh):
        raise AssertionError("GGUF and folder outputs differ in transformers: %s" % bad)
    return len(fg), None


def check_special(fasvd, work, rng):
    """dense format, kept dense, nothing smaller, GQA gpt2 refused."""
    mt, kv, hd = models.ARCHS["llama"]
    d = os.path.join(work, "special")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    path = os.path.join(d, "model.gguf")
    models.write_gguf(path, "llama", kv, hd, models.draw_gguf(rng, "llama", kv, hd), Q.Q4_0)
    deq = {k: v.reshape(v.shape[0], -1) for k, v in models.read_gguf(path).items()
           if v.ndim >= 2}
    res = []
    # dense: W' = A B under the weight's name, F32
    cfg, st = truncated(fasvd, path, os.path.join(d, "dense"), "--rank", "5", "--format",
                        "dense")
    ok = True
    for name, e in cfg["fasvd_lowrank"]["tensors"].items():
        lost, wr, s = optimum(deq[e["gguf_name"]], 5)
        ok &= abs(e["energy_lost"] - lost) <= 1e-9 * lost and \
            np.max(np.abs(st[name] - wr)) <= 1e-6 * s[0] and e["dense_dtype"] == "F32"
    res.append(("llama Q4_0 --format dense: W' = numpy's rank-5 truncation", ok, ""))
    # kept dense: rank 30 shrinks q/o (64 x 64) but not k/v (32 x 64)
    cfg, st = truncated(fasvd, path, os.path.join(d, "kept"), "--rank", "30")
    tens = cfg["fasvd_lowrank"]["tensors"]
    kept = [n for n in st if n.endswith(("k_proj.weight", "v_proj.weight"))]
    ok = len(tens) == 4 and len(kept) == 4 and all(
        np.array_equal(st[n], deq["blk.%s.attn_%s.weight" % (n.split(".")[2],
                                                             n.split(".")[-2][0])])
        for n in kept)
    res.append(("llama Q4_0 --rank 30: k/v kept dense (dequantised), q/o replaced", ok,
                "%s / %s" % (sorted(tens), kept)))
    # nothing smaller: no output
    out = os.path.join(d, "none")
    r = truncate(fasvd, path, out, "--rank", "60")
    res.append(("nothing smaller: refused, no output",
                r.returncode != 0 and "nothing to truncate" in r.stderr and
                not os.path.exists(out), r.stderr))
    # gpt2 with 2 key/value heads (analyze reads it): no Hugging Face GPT-2
    # holds it, refused naming the file and the architecture, no output
    hd2 = models.ARCHS["gpt2"][2]
    g2 = os.path.join(d, "gpt2.gguf")
    models.write_gguf(g2, "gpt2", 2, hd2, models.draw_gguf(rng, "gpt2", 2, hd2), Q.F32)
    out = os.path.join(d, "gpt2")
    r = truncate(fasvd, g2, out, "--rank", "4")
    res.append(("gpt2 with 2 key/value heads: refused naming the file, no output",
                r.returncode != 0 and g2 in r.stderr and "gpt2" in r.stderr and
                "2 key/value heads" in r.stderr and not os.path.exists(out), r.stderr))
    return res


def check_real(fasvd, work):
    cache = os.environ.get("FASVD_MODEL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fasvd-test-models")
    path = os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        return None, "%s is not cached (tests/gguf/test-gguf-real.py downloads it)" % path
    reader = gguf.GGUFReader(path)
    deq = {}
    for t in reader.tensors:
        if t.name.startswith(("blk.0.attn", "blk.1.attn")) and len(t.shape) == 2:
            a = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
            deq[t.name] = np.asarray(a, np.float64).reshape(int(t.shape[1]), int(t.shape[0]))
    out = os.path.join(work, "smollm2")
    n = check_out(fasvd, path, out, deq, ["--rank", "16", "--tensors", "blk.0.*,blk.1.*"],
                  n_layers=2)[2]
    n += check_out(fasvd, path, out, deq, ["--energy-loss", "0.2", "--tensors",
                                           "blk.1.attn_[qk].weight"], tau=0.2, n_layers=2)[2]
    n += check_full(fasvd, path, out, "--tensors", "blk.0.*", "--", "--layers", "0-1")
    shutil.rmtree(out, ignore_errors=True)
    return n, None


def run(i, label, what, fn):
    """TAP test i: fn() returns (count, None), or (None, why) to skip; 1 if
    it failed."""
    try:
        n, why = fn()
        if why:
            print("ok %d - %s # SKIP %s" % (i, label, why))
        else:
            print("ok %d - %s: %d %s" % (i, label, n, what))
        failed = 0
    except Exception as e:  # noqa: BLE001
        failed = 1
        print("not ok %d - %s" % (i, label))
        for line in str(e).splitlines()[:20]:
            print("# " + line)
    sys.stdout.flush()
    return failed


def main():
    fasvd, work = sys.argv[1], sys.argv[2]
    cases = [(a, "Q8_0") for a in ARCHS] + [("llama", "F32"), ("qwen3", "Q4_0"),
                                            ("deepseek2", "Q4_0")]
    routes = [("gpt2", "Q8_0"), ("gpt2", "F32"), ("gptneox", "Q4_0"), ("deepseek2-kb", "Q8_0")]
    n_special = 4
    total = len(cases) + len(routes) + 1 + n_special + 1
    print("1..%d" % total)
    if gguf is None:
        for i in range(1, total + 1):
            print("ok %d # SKIP %s" % (i, models.WHY))
        return 0
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(1313)
    failed = 0
    i = 0
    for arch, q in cases:
        i += 1
        failed += run(i, "%s %s" % (arch, q), "weights and spectra checked",
                      lambda: (check_case(fasvd, work, arch, Q[q], rng), None))
    for arch, q in routes:
        i += 1
        failed += run(i, "%s %s as its Hugging Face folder" % (arch, q),
                      "weights equal, bit for bit",
                      lambda: (check_route(fasvd, work, arch, Q[q], rng), None))
    i += 1
    failed += run(i, "gpt2 dense output in transformers' GPT2LMHeadModel",
                  "tensors as the folder's, the same logits",
                  lambda: check_transformers(fasvd, work, rng))
    try:
        special = check_special(fasvd, work, rng)
    except Exception as e:  # noqa: BLE001
        special = [("special cases", False, str(e))] * n_special
    for name, ok, diag in special:
        i += 1
        print(("ok" if ok else "not ok") + " %d - %s" % (i, name))
        if not ok:
            failed += 1
            for line in diag.splitlines()[:10]:
                print("# " + line)
    i += 1
    failed += run(i, "SmolLM2-135M Q4_1 layers 0-1", "weights and spectra checked",
                  lambda: check_real(fasvd, work))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
