#!/usr/bin/python3
"""GGUF decoding against an independent oracle: the gguf package (PyPI), the
Python reference of ggml's file format and dequantisation (TAP output).

usage: test-gguf-oracle.py PATH/TO/gguf-dump

For every type libfasvd decodes (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS) a GGUF file is written with
gguf.GGUFWriter holding: thousands of random blocks (random bytes, the F16
scale fields made finite: every block is then valid), Gaussian data
quantised by gguf.quants.quantize where the package can quantise the type,
and edge cases (all-zero blocks, the largest and smallest F16 scales,
subnormal and negative-zero scales). gguf-dump (tests/gguf/gguf-dump.c)
decodes each tensor through fasvd_gguf_tensor() and fasvd_tensor_to_f32()
(and checks that every other decode path agrees); the values must equal
gguf.quants.dequantize bit for bit. Tensors with a NaN or an Inf scale must
be refused (FASVD_ENONFINITE, naming the tensor), and a type libfasvd does
not decode (IQ2_XXS) refused with FASVD_EDTYPE naming the tensor and type.
Without the gguf package every case is skipped with the reason.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

DUMP = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "gguf-dump"
results = []


def report(ok, name, diag="", skip=None):
    results.append(ok)
    if skip:
        print("ok %d - %s # SKIP %s" % (len(results), name, skip))
        return
    print(("ok" if ok else "not ok") + " %d - %s" % (len(results), name))
    if not ok and diag:
        for line in str(diag).splitlines()[:20]:
            print("# " + line)
    sys.stdout.flush()


try:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf.constants import GGML_QUANT_SIZES
    import gguf.quants
except ImportError as e:  # the oracle is optional: never download it here
    gguf = None
    WHY = "the gguf Python package is not installed (pip install gguf): %s" % e

ENONFINITE, EDTYPE = -7, -5

# Byte offsets of the F16 scale fields inside one block (ggml-common.h).
SCALES = {
    "F32": [], "F16": [], "BF16": [],
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0],
}
QUANTISABLE = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "BF16"}


def finite_scales(raw, tname):
    """Make every F16 scale of the blocks in raw (n_blocks x bytes) finite."""
    for off in SCALES[tname]:
        h = raw[:, off:off + 2].copy().view("<u2")
        bad = (h & 0x7C00) == 0x7C00
        h[bad] &= np.uint16(0xBFFF)  # clear the exponent's top bit
        raw[:, off:off + 2] = h.view(np.uint8)
    return raw


def set_scale(raw, tname, value):
    """Every scale field of every block := the F16 bit pattern `value`."""
    for off in SCALES[tname]:
        raw[:, off:off + 2] = np.array([value], dtype="<u2").view(np.uint8)
    return raw


def blocks(rng, qt, n_blocks):
    blck, size = GGML_QUANT_SIZES[qt]
    return rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)


def cases_for(tname, rng):
    """(tensor name, raw uint8 rows x bytes, qtype, expect) for one type."""
    qt = Q[tname]
    blck, size = GGML_QUANT_SIZES[qt]
    cols = 512
    per_row = cols // blck
    out = []
    if tname in ("F32", "F16", "BF16"):
        npdt = {"F32": "<f4", "F16": "<f2", "BF16": None}[tname]
        x = rng.standard_normal((64, cols)).astype(np.float32) * 3
        x[0, :8] = [0, -0.0, 1e-45 if tname == "F32" else 6e-8, 65504, -65504, 1e-3, 2, -2]
        raw = gguf.quants.quantize(x, qt) if tname == "BF16" else x.astype(npdt).view(np.uint8)
        out.append(("gauss", raw.reshape(64, -1), qt, "ok"))
        return out
    n_blocks = 4096 if blck == 32 else 2048
    raw = finite_scales(blocks(rng, qt, n_blocks), tname)
    out.append(("random", raw.reshape(n_blocks // per_row, -1), qt, "ok"))
    if tname in QUANTISABLE:
        x = (rng.standard_normal((64, cols)) * rng.uniform(0.01, 10)).astype(np.float32)
        out.append(("quantised", gguf.quants.quantize(x, qt), qt, "ok"))
    edge = [("zero", lambda r: r * 0), ("max-scale", lambda r: set_scale(r, tname, 0x7BFF)),
            ("neg-max-scale", lambda r: set_scale(r, tname, 0xFBFF)),
            ("subnormal-scale", lambda r: set_scale(r, tname, 0x0001)),
            ("subnormal-scale-2", lambda r: set_scale(r, tname, 0x83FF)),
            ("neg-zero-scale", lambda r: set_scale(r, tname, 0x8000))]
    for what, fn in edge:
        r = fn(blocks(rng, qt, 2 * per_row))
        out.append((what, r.reshape(2, -1), qt, "ok"))
    for what, bits in (("nan-scale", 0x7E00), ("inf-scale", 0x7C00)):
        r = finite_scales(blocks(rng, qt, 4 * per_row), tname)
        r[5] = set_scale(r[5:6].copy(), tname, bits)[0]  # one block
        out.append((what, r.reshape(4, -1), qt, "nonfinite"))
    return out


def write(path, tensors):
    w = gguf.GGUFWriter(path, arch="llama")
    for name, raw, qt, _ in tensors:
        w.add_tensor(name, raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def check_type(tname, rng, tmp):
    tensors = [("%s.%s.weight" % (tname.lower(), what), raw, qt, exp)
               for what, raw, qt, exp in cases_for(tname, rng)]
    path = os.path.join(tmp, tname + ".gguf")
    write(path, tensors)
    outdir = os.path.join(tmp, tname)
    os.mkdir(outdir)
    p = subprocess.run([DUMP, path, outdir], capture_output=True, text=True)
    if p.returncode != 0:
        report(False, "%s: gguf-dump" % tname, p.stderr)
        return
    lines = {l.split("\t")[1]: l.split("\t") for l in p.stdout.splitlines()}
    for i, (name, raw, qt, exp) in enumerate(tensors):
        with np.errstate(all="ignore"):  # NaN / Inf scales on purpose
            ref = gguf.quants.dequantize(raw, qt).astype(np.float32)
        f = lines.get(name)
        if f is None:
            report(False, name, "not listed by gguf-dump")
            continue
        rc, msg = int(f[4]), f[5]
        if exp == "nonfinite":
            ok = rc == ENONFINITE and name in msg and not np.isfinite(ref).all()
            report(ok, "%s refused (%d blocks)" % (name, raw.size // GGML_QUANT_SIZES[qt][1]),
                   "rc %d: %s" % (rc, msg))
            continue
        if rc != 0:
            report(False, name, "rc %d: %s" % (rc, msg))
            continue
        got = np.fromfile(os.path.join(outdir, "%s.f32" % f[0]), dtype="<f4")
        got = got.reshape(int(f[2]), int(f[3]))
        same = got.shape == ref.shape and np.array_equal(got.view("<u4"), ref.view("<u4"))
        diag = "" if same else "shape %s vs %s; first difference at %s" % (
            got.shape, ref.shape, np.argwhere(got.view("<u4") != ref.view("<u4"))[:1].tolist()
            if got.shape == ref.shape else "-")
        report(same, "%s: %d values bit-identical to gguf.quants.dequantize" % (name, ref.size),
               diag)


def check_unsupported(rng, tmp):
    path = os.path.join(tmp, "iq2.gguf")
    raw = blocks(rng, Q.IQ2_XXS, 4)
    write(path, [("blk.0.attn_q.weight", raw.reshape(2, -1), Q.IQ2_XXS, None)])
    p = subprocess.run([DUMP, path, tmp], capture_output=True, text=True)
    f = p.stdout.strip().split("\t")
    ok = p.returncode == 0 and len(f) == 6 and int(f[4]) == EDTYPE and \
        "blk.0.attn_q.weight" in f[5] and "IQ2_XXS" in f[5] and path in f[5]
    report(ok, "IQ2_XXS refused naming the file, the tensor and the type", p.stdout + p.stderr)


def main():
    if gguf is None:
        report(True, "gguf oracle", skip=WHY)
        print("1..%d" % len(results))
        return 0
    rng = np.random.default_rng(13)
    tmp = tempfile.mkdtemp(prefix="fasvd-gguf-oracle-")
    try:
        for tname in SCALES:
            check_type(tname, rng, tmp)
        check_unsupported(rng, tmp)
    finally:
        shutil.rmtree(tmp)
    print("1..%d" % len(results))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
