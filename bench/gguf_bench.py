#!/usr/bin/python3
"""GGUF speed: `fasvd analyze` of a quantised GGUF against the same model as
an F32 safetensors folder, and the dequantisation speed per quant type.

usage: gguf_bench.py [--build DIR] [--layers N] [--hidden N] [--heads N]
                     [--kv-heads N] [--types Q8_0,Q4_0,Q4_K,Q6_K]
                     [--reps N] [--threads N] [--keep DIR]

A llama model (default hidden 2048, 16 heads, 8 KV heads, head_dim 128, 4
layers: attention tensors and norms) is written by the `gguf` package as one
GGUF file per quant type. Q8_0 and Q4_0 tensors are gguf.quants.quantize of
Gaussian weights; the K-quants (which the package cannot quantise) are
random blocks with a fixed F16 super-block scale. Each quant type gets its
own F32 safetensors folder (safetensors.numpy) holding exactly the weights
that file decodes to (gguf.quants.dequantize, Q/K rows un-permuted to the
Hugging Face order), so both inputs ask `analyze` for the same arithmetic
and differ only in how the weights are read.

`fasvd analyze MODEL -o OUT -q -j T` runs for every input, the inputs
alternating, --reps rounds (best wall-clock time of each); the table gives
each GGUF's time, its F32 twin's, and the ratio (the target is <= 1.3x).

Dequantisation speed: every 2-D tensor of each GGUF is opened through the
library (fasvd_gguf_tensor) and decoded to a float32 matrix
(fasvd_tensor_to_f32, the decode `analyze` uses with f32 compute), best of
--reps; MB/s counts the bytes stored in the file, Melem/s the values made.
"""
import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--build", default=None, help="meson build dir (default: ../build-bench)")
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--hidden", type=int, default=2048)
ap.add_argument("--heads", type=int, default=16)
ap.add_argument("--kv-heads", type=int, default=8)
ap.add_argument("--types", default="Q8_0,Q4_0,Q4_K,Q6_K")
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--keep", default=None, help="write the models here and keep them")
args = ap.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)

import numpy as np  # noqa: E402  (after the thread variable)
import gguf  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
build = args.build or os.path.join(here, "..", "build-bench")
fasvd_bin = os.path.join(build, "tools", "fasvd")
os.environ.setdefault("FASVD_LIBRARY", os.path.join(build, "lib", "libfasvd.so"))
sys.path.insert(0, os.path.join(here, "..", "bindings", "python"))
import fasvd  # noqa: E402
from fasvd import _lib as L  # noqa: E402

Q = gguf.GGMLQuantizationType
H, KV, D = args.heads, args.kv_heads, args.hidden
HD = D // H
# F16 bit pattern of the scale written into every K-quant super-block
# (2^-10; for Q4_K also its dmin), offsets as in ggml-common.h
K_SCALE = 0x1400
K_SCALE_AT = {"Q4_K": (0, 2), "Q6_K": (208,), "Q5_K": (0, 2), "Q3_K": (108,), "Q2_K": (80, 82)}


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute (rows inside each head)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w, n_head):
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def quantised(rng, shape, tname):
    """(raw bytes rows x bytes, float32 weights they decode to)."""
    qt = Q[tname]
    if tname in K_SCALE_AT:
        blck, size = gguf.GGML_QUANT_SIZES[qt]
        n = shape[0] * shape[1] // blck
        raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
        for off in K_SCALE_AT[tname]:
            raw[:, off:off + 2] = np.array([K_SCALE], dtype="<u2").view(np.uint8)
        raw = raw.reshape(shape[0], -1)
    else:
        raw = gguf.quants.quantize(rng.standard_normal(shape).astype(np.float32) * 0.02, qt)
    return raw, gguf.quants.dequantize(raw, qt).reshape(shape).astype(np.float32)


def write_pair(work, tname, rng):
    """The GGUF file of one quant type and its F32 safetensors twin."""
    g = os.path.join(work, "model-%s.gguf" % tname)
    hf = os.path.join(work, "hf-%s" % tname)
    os.makedirs(hf, exist_ok=True)
    w = gguf.GGUFWriter(g, "llama")
    w.add_block_count(args.layers)
    w.add_embedding_length(D)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    hft = {}
    for layer in range(args.layers):
        p, b = "model.layers.%d." % layer, "blk.%d." % layer
        for gname, hname, rows, nperm in (("attn_q", "q_proj", H * HD, H),
                                          ("attn_k", "k_proj", KV * HD, KV),
                                          ("attn_v", "v_proj", KV * HD, 0),
                                          ("attn_output", "o_proj", D, 0)):
            cols = D if gname != "attn_output" else H * HD
            raw, x = quantised(rng, (rows, cols), tname)
            w.add_tensor(b + gname + ".weight", raw, raw_dtype=Q[tname])
            hft[p + "self_attn." + hname + ".weight"] = unpermute(x, nperm) if nperm else x
        norm = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        w.add_tensor(b + "attn_norm.weight", norm)
        hft[p + "input_layernorm.weight"] = norm
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file({k: np.ascontiguousarray(v, dtype="<f4") for k, v in hft.items()},
              os.path.join(hf, "model.safetensors"))
    with open(os.path.join(hf, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                   "hidden_size": D, "num_hidden_layers": args.layers,
                   "num_attention_heads": H, "num_key_value_heads": KV}, f)
    return g, hf


def analyze(model, out):
    t = time.perf_counter()
    r = subprocess.run([fasvd_bin, "analyze", model, "-o", out, "-q", "-j", str(args.threads)],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit("fasvd analyze %s failed: %s" % (model, r.stderr.strip()))
    os.unlink(out)
    return dt


def decode_speed(path):
    """(stored MB/s, Melem/s) decoding every 2-D tensor to float32, best of --reps."""
    to_f32 = L.lib.fasvd_tensor_to_f32
    to_f32.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_int64, ctypes.c_int,
                       L.tensor_p, ctypes.c_uint]
    to_f32.restype = ctypes.c_int
    m = fasvd.open(path)
    try:
        g = m._gguf()
        names = [n for n in m.tensor_names() if not n.endswith("norm.weight")]
        info = {t.name: (int(t.n_bytes), int(t.n_elements)) for t in gguf.GGUFReader(path).tensors}
        best = None
        for _ in range(args.reps):
            total = 0.0
            for n in names:
                t = L.tensor_p()
                L.call("fasvd_gguf_tensor", ctypes.byref(t), g, n.encode())
                try:
                    rows, cols = L.lib.fasvd_tensor_rows(t), L.lib.fasvd_tensor_cols(t)
                    out = np.empty((rows, cols), dtype=np.float32)
                    t0 = time.perf_counter()
                    rc = to_f32(out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), cols,
                                L.LAYOUT_ROW_MAJOR, t, L.DECODE_ALLOW_NONFINITE)
                    total += time.perf_counter() - t0
                    if rc:
                        sys.exit("decoding %s of %s failed (%d)" % (n, path, rc))
                finally:
                    L.lib.fasvd_tensor_free(t)
            best = total if best is None else min(best, total)
        nbytes = sum(info[n][0] for n in names)
        nelem = sum(info[n][1] for n in names)
        return nbytes / best / 1e6, nelem / best / 1e6
    finally:
        m.close()


def main():
    types = args.types.split(",")
    blas = subprocess.run([fasvd_bin, "--version", "--verbose"], capture_output=True,
                          text=True).stdout.strip()
    print(blas)
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    print("model: llama, hidden %d, %d heads, %d KV heads, head_dim %d, %d layers; "
          "analyze -j %d, best of %d" % (D, H, KV, HD, args.layers, args.threads, args.reps))
    work = args.keep or tempfile.mkdtemp(prefix="gguf-bench-")
    os.makedirs(work, exist_ok=True)
    try:
        rng = np.random.default_rng(13)
        t0 = time.perf_counter()
        pairs = {t: write_pair(work, t, rng) for t in types}
        print("models written in %.1f s" % (time.perf_counter() - t0))
        out = os.path.join(work, "out.safetensors")
        best = {}
        for _ in range(args.reps):
            for t in types:
                for kind, model in zip(("gguf", "f32"), pairs[t]):
                    dt = analyze(model, out)
                    best[t, kind] = min(best.get((t, kind), dt), dt)
        print()
        print("| type | GGUF MB | analyze GGUF s | analyze F32 safetensors s | ratio "
              "| decode MB/s | decode Melem/s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for t in types:
            mbs, mel = decode_speed(pairs[t][0])
            print("| %s | %.1f | %.2f | %.2f | %.2fx | %.0f | %.0f |" % (
                t, os.path.getsize(pairs[t][0]) / 1e6, best[t, "gguf"], best[t, "f32"],
                best[t, "gguf"] / best[t, "f32"], mbs, mel))
        print()
        print("load average at end: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        if not args.keep:
            shutil.rmtree(work)


main()
