#!/usr/bin/python3
"""CLI tests of `fasvd svdvals` (TAP output).

usage: test-svdvals.py PATH/TO/fasvd

Writes safetensors files with numpy alone (BF16 and FP8 encoded and decoded
by hand from their bit layouts, independently of libfasvd), runs
`fasvd svdvals` on one tensor of each dtype with --dtype f32 and f64, and
compares with numpy.linalg.svd of the decoded float64 matrix: within
1e-5*sigma_1 (f32) and 1e-12*sigma_1 (f64). Also FP8 with block scales
(partial edge blocks, scales in another shard), the global options, and the
error catalogue: exit status 1..125 (2 for usage), nothing on stdout, exactly
one line "fasvd: ..." on stderr naming the file / tensor.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

FASVD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "fasvd"
results = []


def report(ok, name, diag=""):
    results.append(ok)
    print(("ok" if ok else "not ok") + " %d - %s" % (len(results), name))
    if not ok and diag:
        for line in str(diag).splitlines()[:20]:
            print("# " + line)
    sys.stdout.flush()


def run(*args, env=None, stdout=subprocess.PIPE):
    p = subprocess.run([FASVD] + [str(a) for a in args], stdout=stdout,
                       stderr=subprocess.PIPE, env=env, timeout=300)
    return p.returncode, (p.stdout or b"").decode("utf-8", "replace"), \
        p.stderr.decode("utf-8", "replace")


# ----------------------------------------------------------- dtype codecs

def bf16_encode(x):
    """float64 -> bfloat16 bits (round to nearest even through float32)."""
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


def e5m2_decode(codes):
    c = codes.astype(np.int64)
    s = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> 2) & 0x1F
    m = (c & 3).astype(np.float64)
    v = np.where(e == 0, m / 4.0 * 2.0 ** -14, (1.0 + m / 4.0) * np.exp2(e - 15.0))
    v = np.where(e == 31, np.where((c & 3) == 0, np.inf, np.nan), v)
    return s * v


def random_codes(rng, shape, decode, limit):
    """Random FP8 codes whose values are finite and |v| <= limit."""
    allc = np.arange(256, dtype=np.uint8)
    vals = decode(allc)
    ok = allc[np.isfinite(vals) & (np.abs(vals) <= limit)]
    return rng.choice(ok, size=shape).astype(np.uint8)


# ------------------------------------------------------ safetensors writer

def write_st(path, tensors, metadata=None, header_len=None, truncate=None):
    """tensors: list of (name, dtype string, shape, raw bytes)."""
    hdr, off, data = {}, 0, b""
    if metadata:
        hdr["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    blob = struct.pack("<Q", len(h) if header_len is None else header_len) + h + data
    if truncate is not None:
        blob = blob[:truncate]
    with open(path, "wb") as f:
        f.write(blob)


def write_raw_header(path, header_text, data=b""):
    h = header_text.encode("utf-8", "surrogateescape")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


# --------------------------------------------------------------- checks

def check_values(label, out, ref, tol):
    vals = [float(x) for x in out.split()]
    ref = np.sort(ref)[::-1]
    if len(vals) != len(ref):
        return report(False, label, "got %d values, expected %d" % (len(vals), len(ref)))
    v = np.array(vals)
    if np.any(np.diff(v) > 0):
        return report(False, label, "not descending: %s" % vals[:10])
    s1 = ref[0] if ref[0] > 0 else 1.0
    err = np.max(np.abs(v - ref)) / s1
    report(err <= tol, "%s (max err %.2e sigma1, tol %.0e)" % (label, err, tol),
           "values %s\nref %s" % (v[:8], ref[:8]))


def check_fails(label, args, status=None, needles=(), env=None):
    rc, out, err = run(*args, env=env)
    lines = err.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    problems = []
    if rc == 0 or rc < 1 or rc > 125:
        problems.append("exit status %d (want 1..125)" % rc)
    if status is not None and rc != status:
        problems.append("exit status %d, want %d" % (rc, status))
    if out:
        problems.append("stdout not empty: %r" % out[:200])
    if len(lines) != 1 or not lines[0].startswith("fasvd: "):
        problems.append("stderr is not one 'fasvd: ' line: %r" % err[:500])
    for n in needles:
        if n not in err:
            problems.append("stderr lacks %r: %r" % (n, err[:500]))
    report(not problems, label, "\n".join(problems))


def main():
    tmp = tempfile.mkdtemp(prefix="fasvd-cli-")
    try:
        body(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("1..%d" % len(results))
    return 0 if all(results) else 1


def body(tmp):
    rng = np.random.default_rng(20240601)
    path = os.path.join(tmp, "all.safetensors")
    tensors, refs = [], {}

    a = rng.standard_normal((7, 5))
    tensors.append(("w.f64", "F64", a.shape, a.astype("<f8").tobytes()))
    refs["w.f64"] = a

    a = rng.standard_normal((6, 9)).astype(np.float32)
    tensors.append(("w.f32", "F32", a.shape, a.astype("<f4").tobytes()))
    refs["w.f32"] = a.astype(np.float64)

    a = rng.standard_normal((8, 8)).astype(np.float16)
    tensors.append(("w.f16", "F16", a.shape, a.astype("<f2").tobytes()))
    refs["w.f16"] = a.astype(np.float64)

    b = bf16_encode(rng.standard_normal((5, 12)) * 10)
    tensors.append(("w.bf16", "BF16", b.shape, b.astype("<u2").tobytes()))
    refs["w.bf16"] = bf16_decode(b)

    c = random_codes(rng, (10, 6), e4m3_decode, 448)
    tensors.append(("w.e4m3", "F8_E4M3", c.shape, c.tobytes()))
    refs["w.e4m3"] = e4m3_decode(c)

    c = random_codes(rng, (9, 7), e5m2_decode, 1e4)
    tensors.append(("w.e5m2", "F8_E5M2", c.shape, c.tobytes()))
    refs["w.e5m2"] = e5m2_decode(c)

    # FP8 with block scales: 300 x 200, 128 x 128 blocks -> grid 3 x 2 with
    # partial edge blocks (44 rows, 72 columns); min(m, n) = 200 >= 128.
    c = random_codes(rng, (300, 200), e4m3_decode, 448)
    grid = (rng.uniform(0.5, 2.0, size=(3, 2)) * 1e-3).astype(np.float32)
    scale_full = np.repeat(np.repeat(grid.astype(np.float64), 128, 0), 128, 1)[:300, :200]
    tensors.append(("q.weight", "F8_E4M3", c.shape, c.tobytes()))
    tensors.append(("q.weight_scale_inv", "F32", grid.shape, grid.astype("<f4").tobytes()))
    refs["q.weight"] = e4m3_decode(c) * scale_full
    raw_q = e4m3_decode(c)

    # rank-deficient tall matrix: exact zeros beyond rank 3
    u = rng.standard_normal((40, 3))
    v = rng.standard_normal((3, 20))
    a = u @ v
    tensors.append(("lowrank", "F64", a.shape, a.astype("<f8").tobytes()))
    refs["lowrank"] = a

    # error-case tensors
    tensors.append(("vec", "F32", (4,), np.ones(4, "<f4").tobytes()))
    tensors.append(("cube", "F32", (2, 2, 2), np.ones(8, "<f4").tobytes()))
    tensors.append(("ints", "I32", (2, 2), np.ones(4, "<i4").tobytes()))
    nan = np.ones((3, 3), "<f4")
    nan[1, 2] = np.nan
    tensors.append(("has.nan", "F32", (3, 3), nan.tobytes()))
    tensors.append(("bad.weight", "F8_E4M3", (4, 4), np.zeros(16, np.uint8).tobytes()))
    tensors.append(("bad.weight_scale_inv", "F32", (2, 2), np.ones(4, "<f4").tobytes()))
    write_st(path, tensors, metadata={"format": "pt"})

    # ---- values against numpy, every dtype, both precisions
    for name, ref in refs.items():
        s_ref = np.linalg.svd(ref, compute_uv=False)
        for dt, tol in (("f32", 1e-5), ("f64", 1e-12)):
            rc, out, err = run("svdvals", path, name, "--dtype", dt)
            if rc != 0:
                report(False, "svdvals %s --dtype %s" % (name, dt), "rc %d: %s" % (rc, err))
                continue
            if err:
                report(False, "svdvals %s --dtype %s: quiet stderr" % (name, dt), err)
            check_values("svdvals %s --dtype %s" % (name, dt), out, s_ref, tol)

    # default precision is f32; --compute is an alias; backends agree
    s_ref = np.linalg.svd(refs["w.bf16"], compute_uv=False)
    rc, out, err = run("svdvals", path, "w.bf16")
    check_values("default precision", out, s_ref, 1e-5)
    rc, out, err = run("svdvals", path, "w.bf16", "--compute", "f64", "--backend", "gesvd")
    check_values("--compute f64 --backend gesvd", out, s_ref, 1e-12)
    rc, out, err = run("svdvals", path, "q.weight", "--dtype=f64", "--backend=gesdd", "-j", "2")
    check_values("--dtype=f64 --backend=gesdd -j 2", out,
                 np.linalg.svd(refs["q.weight"], compute_uv=False), 1e-12)
    rc, out, err = run("--threads", "1", "svdvals", path, "q.weight", "--dtype", "f64",
                       "--rank", "5")
    check_values("global --threads 1, --rank 5", out,
                 np.linalg.svd(refs["q.weight"], compute_uv=False)[:5], 1e-12)
    rc, out, err = run("svdvals", path, "q.weight", "--no-scales", "--dtype", "f64")
    check_values("--no-scales: raw FP8 codes", out, np.linalg.svd(raw_q, compute_uv=False),
                 1e-12)
    rc, out, err = run("svdvals", path, "lowrank", "--dtype", "f64")
    vals = [float(x) for x in out.split()]
    report(rc == 0 and len(vals) == 20 and max(vals[3:]) <= 1e-12 * vals[0],
           "rank-3 matrix: 20 values, 17 of them ~0", out)
    report(rc == 0 and all("%.17g" % float(x) == x for x in out.split()),
           "values printed as %.17g", out[:300])

    # ---- sharded checkpoint, scale_inv in the other shard, opened as a folder
    model = os.path.join(tmp, "model")
    os.mkdir(model)
    c = random_codes(rng, (130, 260), e4m3_decode, 448)
    grid = rng.uniform(0.5, 2.0, size=(2, 3)).astype(np.float32)
    write_st(os.path.join(model, "model-00001-of-00002.safetensors"),
             [("layers.0.o_proj.weight", "F8_E4M3", c.shape, c.tobytes())])
    write_st(os.path.join(model, "model-00002-of-00002.safetensors"),
             [("layers.0.o_proj.weight_scale_inv", "F32", grid.shape,
               grid.astype("<f4").tobytes())])
    index = {"metadata": {"total_size": c.size + grid.nbytes}, "weight_map": {
        "layers.0.o_proj.weight": "model-00001-of-00002.safetensors",
        "layers.0.o_proj.weight_scale_inv": "model-00002-of-00002.safetensors"}}
    with open(os.path.join(model, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f)
    full = np.repeat(np.repeat(grid.astype(np.float64), 128, 0), 128, 1)[:130, :260]
    ref = np.linalg.svd(e4m3_decode(c) * full, compute_uv=False)
    for target in (model, os.path.join(model, "model.safetensors.index.json")):
        rc, out, err = run("svdvals", target, "layers.0.o_proj.weight", "--dtype", "f64")
        check_values("sharded FP8 + scales via %s" % os.path.basename(target), out, ref, 1e-12)

    # ---- a model folder whose config.json declares FP8 block quantisation:
    # its block size is the default, and a missing scale_inv is an error
    # (the raw codes' spectrum would be silently wrong)
    qmodel = os.path.join(tmp, "qmodel")
    os.mkdir(qmodel)
    c = random_codes(rng, (100, 70), e4m3_decode, 448)
    grid = rng.uniform(0.5, 2.0, size=(2, 2)).astype(np.float32)
    write_st(os.path.join(qmodel, "model.safetensors"),
             [("a.weight", "F8_E4M3", c.shape, c.tobytes()),
              ("a.weight_scale_inv", "F32", grid.shape, grid.astype("<f4").tobytes()),
              ("b.weight", "F8_E4M3", c.shape, c.tobytes())])
    with open(os.path.join(qmodel, "config.json"), "w") as f:
        json.dump({"model_type": "deepseek_v3", "quantization_config": {
            "quant_method": "fp8", "weight_block_size": [64, 64]}}, f)
    full = np.repeat(np.repeat(grid.astype(np.float64), 64, 0), 64, 1)[:100, :70]
    rc, out, err = run("svdvals", qmodel, "a.weight", "--dtype", "f64")
    check_values("block size from config.json (64 x 64)", out,
                 np.linalg.svd(e4m3_decode(c) * full, compute_uv=False), 1e-12)
    check_fails("FP8 tensor of a quantised checkpoint without scale_inv",
                ["svdvals", qmodel, "b.weight"], 20, ["b.weight_scale_inv", qmodel])
    rc, out, err = run("svdvals", qmodel, "b.weight", "--no-scales", "--dtype", "f64")
    check_values("--no-scales: raw codes of the tensor without scale_inv", out,
                 np.linalg.svd(e4m3_decode(c), compute_uv=False), 1e-12)

    # ---- global options and help
    rc, out, err = run("--version")
    report(rc == 0 and out.startswith("fasvd ") and not err, "--version", out + err)
    rc, out, err = run("--help")
    report(rc == 0 and "svdvals" in out and "usage:" in out and not err, "--help", out + err)
    rc, out, err = run("help", "svdvals")
    report(rc == 0 and out.startswith("usage: fasvd svdvals"), "help svdvals", out + err)
    rc, out, err = run("svdvals", "--help")
    report(rc == 0 and out.startswith("usage: fasvd svdvals"), "svdvals --help", out + err)

    # ---- usage errors: status 2
    check_fails("no command", [], 2)
    check_fails("unknown command", ["frobnicate"], 2, ["frobnicate"])
    check_fails("help of unknown command", ["help", "frobnicate"], 2, ["frobnicate"])
    check_fails("unknown global option", ["--bogus", "svdvals"], 2, ["--bogus"])
    check_fails("missing arguments", ["svdvals", path], 2, ["svdvals"])
    check_fails("too many arguments", ["svdvals", path, "w.f32", "extra"], 2, ["extra"])
    check_fails("bad --dtype", ["svdvals", path, "w.f32", "--dtype", "f16"], 2, ["f16"])
    check_fails("--dtype without value", ["svdvals", path, "w.f32", "--dtype"], 2, ["--dtype"])
    check_fails("unknown option", ["svdvals", path, "w.f32", "--frob"], 2, ["--frob"])
    check_fails("bad --threads", ["svdvals", path, "w.f32", "--threads", "many"], 2,
                ["threads"])
    check_fails("--threads out of range", ["--threads", "-3", "svdvals", path, "w.f32"], 2,
                ["threads"])
    check_fails("bad --block-size", ["svdvals", path, "q.weight", "--block-size", "0"], 2,
                ["block-size"])

    # ---- library errors: 10 + |code|, one line naming the file / tensor
    missing = os.path.join(tmp, "missing.safetensors")
    check_fails("nonexistent file", ["svdvals", missing, "w"], 13, [missing])
    check_fails("missing tensor", ["svdvals", path, "nope"], 20, ["nope", path])
    check_fails("1-D tensor", ["svdvals", path, "vec"], 16, ["vec", path])
    check_fails("3-D tensor", ["svdvals", path, "cube"], 16, ["cube"])
    check_fails("I32 tensor", ["svdvals", path, "ints"], 15, ["ints", "I32"])
    check_fails("NaN weight", ["svdvals", path, "has.nan"], 17, ["has.nan"])
    check_fails("scale_inv of the wrong shape", ["svdvals", path, "bad.weight"], 16,
                ["bad.weight", "bad.weight_scale_inv"])
    check_fails("block size not matching the grid",
                ["svdvals", path, "q.weight", "--block-size", "64,64"], 16,
                ["q.weight", "q.weight_scale_inv"])
    check_fails("tensor name with a newline stays one line",
                ["svdvals", path, "evil\nname\x1b[31m"], 20, ["evil?name?[31m"])

    # hostile files: each refused with one line naming the file (and tensor)
    good = [("t", "F32", (2, 2), np.ones(4, "<f4").tobytes())]
    bad = os.path.join(tmp, "bad.safetensors")
    whole = os.path.join(tmp, "whole.safetensors")
    write_st(whole, good)
    size = os.path.getsize(whole)
    for cut in (0, 5, 8, 20, size - 1):
        write_st(bad, good, truncate=cut)
        check_fails("file truncated at byte %d" % cut, ["svdvals", bad, "t"], 14, [bad])
    write_st(bad, good, header_len=1 << 40)
    check_fails("absurd header length", ["svdvals", bad, "t"], 18, [bad])
    write_st(bad, good, header_len=0)
    check_fails("header length 0", ["svdvals", bad, "t"], 14, [bad])
    cases = [
        ("not JSON", "{abc", b"", 14, []),
        ("not an object", "[1,2]", b"", 14, []),
        ("duplicate names", '{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
         '"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4, 14, ["duplicate"]),
        ("invalid UTF-8", '{"t\udcff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
         b"\0" * 4, 14, ["UTF-8"]),
        ("unknown dtype", '{"t":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4,
         15, ["'t'", "F31"]),
        ("missing dtype", '{"t":{"shape":[1],"data_offsets":[0,4]}}', b"\0" * 4, 14, ["'t'"]),
        ("negative dimension", '{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}',
         b"\0" * 4, 16, ["'t'"]),
        ("shape overflow", '{"t":{"dtype":"F32","shape":[4294967296,4294967296],'
         '"data_offsets":[0,4]}}', b"\0" * 4, 18, ["'t'"]),
        ("missing offsets", '{"t":{"dtype":"F32","shape":[1]}}', b"\0" * 4, 14, ["'t'"]),
        ("offsets reversed", '{"t":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}',
         b"\0" * 4, 14, ["'t'"]),
        ("offsets out of range", '{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}',
         b"\0" * 8, 14, ["'t'"]),
        ("overlapping", '{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
         '"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', b"\0" * 12, 14, ["overlap"]),
        ("size mismatch", '{"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}',
         b"\0" * 12, 14, ["'t'"]),
        ("metadata not strings", '{"__metadata__":{"k":1}}', b"", 14, ["'k'"]),
    ]
    for label, text, data, status, needles in cases:
        write_raw_header(bad, text, data)
        check_fails("hostile header: " + label, ["svdvals", bad, "t"], status, [bad] + needles)

    # hostile index
    evil = os.path.join(tmp, "evil")
    os.mkdir(evil)
    for label, shard, status in (("absolute shard path", "/etc/passwd", 14),
                                 ("shard outside the folder", "../all.safetensors", 14),
                                 ("missing shard", "model-00002-of-00009.safetensors", 13)):
        with open(os.path.join(evil, "model.safetensors.index.json"), "w") as f:
            json.dump({"weight_map": {"t": shard}}, f)
        check_fails("index: " + label, ["svdvals", evil, "t"], status, [shard])
    os.symlink(path, os.path.join(evil, "link.safetensors"))
    with open(os.path.join(evil, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {"w.f32": "link.safetensors"}}, f)
    check_fails("index: symlink escaping the folder", ["svdvals", evil, "w.f32"], 14,
                ["link.safetensors"])
    empty = os.path.join(tmp, "empty")
    os.mkdir(empty)
    check_fails("folder without checkpoint", ["svdvals", empty, "t"], 20, [empty])

    # standard output that cannot be written
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            p = subprocess.run([FASVD, "svdvals", path, "w.f64"], stdout=full,
                               stderr=subprocess.PIPE, timeout=60)
        err = p.stderr.decode()
        report(p.returncode == 1 and err.count("\n") == 1 and err.startswith("fasvd: "),
               "stdout on a full device: status 1, one line", "rc %d: %r" % (p.returncode, err))


if __name__ == "__main__":
    sys.exit(main())
