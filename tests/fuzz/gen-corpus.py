#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets: tests/fuzz/corpora/<target>/.

    /usr/bin/python3 tests/fuzz/gen-corpus.py --build BUILD [--out DIR]

BUILD is a configured build folder holding tests/fuzz/replay-config (its
fixture configs are the valid config seeds). The output is deterministic;
the files are committed, so this is only re-run when an input layout of a
target changes (the layouts are documented at the top of each
tests/fuzz/fuzz-<target>.c). Crashing inputs found by fuzzing are added by
hand (as crash-<what>), never regenerated.
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

SEP = b"\n@@\n"


# ------------------------------------------------------------ safetensors

def st_bytes(tensors, metadata=None, pad=True, header_override=None):
    """tensors: list of (name, dtype, shape, raw bytes). Returns the file."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode() if header_override is None \
        else header_override
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def raw_header(h, data=b""):
    return struct.pack("<Q", len(h)) + h + data


def f32(a):
    return np.asarray(a, dtype="<f4").tobytes()


def rnd(rng, *shape):
    return rng.standard_normal(shape)


def fp8_e4m3(x):
    """Round to e4m3fn codes (saturating), numpy only."""
    x = np.clip(np.asarray(x, dtype=np.float64), -448, 448)
    out = np.zeros(x.shape, dtype=np.uint8)
    # brute force over the 254 finite codes: exact nearest (ties: even code)
    codes = np.arange(256, dtype=np.uint8)
    vals = np.array([decode_e4m3(int(c)) for c in codes])
    finite = ~np.isnan(vals)
    cv, cc = vals[finite], codes[finite]
    for idx, v in np.ndenumerate(x):
        d = np.abs(cv - v)
        best = np.flatnonzero(d == d.min())
        out[idx] = cc[best[0]]
    return out.tobytes()


def decode_e4m3(c):
    s = -1.0 if c & 0x80 else 1.0
    e = (c >> 3) & 0xF
    m = c & 7
    if e == 0xF and m == 7:
        return float("nan")
    if e == 0:
        return s * m * 2.0 ** -9
    return s * (1 + m / 8) * 2.0 ** (e - 7)


def safetensors_seeds(rng):
    seeds = {}
    w = rnd(rng, 6, 5)
    v = rnd(rng, 6)
    good = [("a.weight", "F32", (6, 5), f32(w)), ("a.bias", "F32", (6,), f32(v))]
    seeds["valid-f32"] = st_bytes(good, {"format": "pt"})
    seeds["valid-f64-f16-bf16"] = st_bytes([
        ("m64", "F64", (3, 4), np.asarray(rnd(rng, 3, 4), "<f8").tobytes()),
        ("m16", "F16", (4, 3), np.asarray(rnd(rng, 4, 3), "<f2").tobytes()),
        ("mbf", "BF16", (2, 5), (np.asarray(rnd(rng, 2, 5), "<f4").view("<u4") >> 16)
         .astype("<u2").tobytes()),
    ])
    # FP8 with block scales: 5 x 7 weight, 2 x 2 grid at block 4 (partial edges)
    wq = rnd(rng, 5, 7) * 10
    seeds["valid-fp8-scales"] = st_bytes([
        ("q.weight", "F8_E4M3", (5, 7), fp8_e4m3(wq)),
        ("q.weight_scale_inv", "F32", (2, 2), f32([[0.5, 2.0], [1.5, 0.25]])),
        ("e.weight", "F8_E5M2", (2, 3), bytes([0x3c, 0x40, 0x44, 0xbc, 0x00, 0x7b])),
    ])
    seeds["valid-scalar-3d-ints"] = st_bytes([
        ("s", "F32", (), f32(1.5)),
        ("cube", "F32", (2, 2, 2), f32(np.arange(8))),
        ("ids", "I64", (3,), np.arange(3, dtype="<i8").tobytes()),
        ("flag", "BOOL", (2,), b"\x01\x00"),
        ("empty", "F32", (0, 4), b""),
    ])
    seeds["valid-nan-inf"] = st_bytes([
        ("bad.weight", "F32", (2, 2), f32([[1, float("nan")], [float("inf"), 2]])),
        ("fp8nan.weight", "F8_E4M3", (1, 2), b"\x7f\x38"),
    ])
    # not aligned: a 3-byte BOOL before an F32 (copied by fasvd_st_tensor)
    seeds["valid-unaligned"] = st_bytes([
        ("a", "BOOL", (3,), b"\x01\x01\x00"),
        ("b", "F32", (2, 2), f32([[1, 2], [3, 4]])),
    ], pad=False)
    base = seeds["valid-f32"]
    hlen = struct.unpack("<Q", base[:8])[0]
    # truncations at every section
    seeds["trunc-empty"] = b""
    seeds["trunc-in-length"] = base[:5]
    seeds["trunc-length-only"] = base[:8]
    seeds["trunc-in-header"] = base[:8 + hlen // 2]
    seeds["trunc-after-header"] = base[:8 + hlen]
    seeds["trunc-in-data"] = base[:-7]
    seeds["hlen-beyond-file"] = struct.pack("<Q", hlen + 100) + base[8:]
    seeds["hlen-huge"] = struct.pack("<Q", 1 << 62) + base[8:]
    seeds["hlen-max"] = b"\xff" * 8 + base[8:]
    seeds["hlen-zero"] = struct.pack("<Q", 0) + base[8:]
    seeds["hdr-not-json"] = raw_header(b"this is not json")
    seeds["hdr-array"] = raw_header(b"[1, 2, 3]")
    seeds["hdr-string"] = raw_header(b'"a string"')
    seeds["hdr-nul"] = raw_header(b'{"a\\u0000b": {"dtype": "F32", "shape": [1], '
                                  b'"data_offsets": [0, 4]}}', b"\0" * 4)
    seeds["hdr-bad-utf8"] = raw_header(b'{"\xff\xfe": {"dtype": "F32", "shape": [1], '
                                       b'"data_offsets": [0, 4]}}', b"\0" * 4)
    seeds["hdr-duplicate"] = raw_header(
        b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
        b'"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', b"\0" * 8)

    def one(entry, data=b"\0" * 16, extra=None):
        h = {"t": entry}
        if extra:
            h.update(extra)
        return raw_header(json.dumps(h).encode(), data)

    seeds["off-reversed"] = one({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]})
    seeds["off-beyond"] = one({"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
                              b"\0" * 8)
    seeds["off-negative"] = one({"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]})
    seeds["off-huge"] = one({"dtype": "F32", "shape": [2],
                             "data_offsets": [18446744073709551608, 18446744073709551615]})
    seeds["off-missing"] = one({"dtype": "F32", "shape": [4]})
    seeds["off-one"] = one({"dtype": "F32", "shape": [4], "data_offsets": [0]})
    seeds["off-strings"] = one({"dtype": "F32", "shape": [4], "data_offsets": ["0", "16"]})
    seeds["off-overlap"] = raw_header(json.dumps({
        "a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
        "b": {"dtype": "F32", "shape": [3], "data_offsets": [4, 16]}}).encode(), b"\0" * 16)
    seeds["off-hole"] = raw_header(json.dumps({
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}).encode(), b"\0" * 12)
    seeds["size-mismatch"] = one({"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]})
    seeds["shape-overflow"] = one({"dtype": "F32", "shape": [4294967296, 4294967296, 16],
                                   "data_offsets": [0, 16]})
    seeds["shape-overflow-exact"] = one({"dtype": "F64", "shape": [2305843009213693952, 1],
                                         "data_offsets": [0, 16]})
    seeds["shape-negative"] = one({"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]})
    seeds["shape-float"] = one({"dtype": "F32", "shape": [2.0, 2], "data_offsets": [0, 16]})
    seeds["shape-9d"] = one({"dtype": "F32", "shape": [1] * 8 + [4], "data_offsets": [0, 16]})
    seeds["shape-missing"] = one({"dtype": "F32", "data_offsets": [0, 16]})
    seeds["dtype-unknown"] = one({"dtype": "F33", "shape": [4], "data_offsets": [0, 16]})
    seeds["dtype-missing"] = one({"shape": [4], "data_offsets": [0, 16]})
    seeds["dtype-number"] = one({"dtype": 32, "shape": [4], "data_offsets": [0, 16]})
    seeds["dtype-i8-2d"] = one({"dtype": "I8", "shape": [4, 4], "data_offsets": [0, 16]})
    seeds["entry-not-object"] = one([1, 2, 3])
    seeds["meta-not-strings"] = one({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                    extra={"__metadata__": {"a": 1}})
    seeds["scale-wrong-grid"] = st_bytes([
        ("q.weight", "F8_E4M3", (5, 7), fp8_e4m3(wq)),
        ("q.weight_scale_inv", "F32", (3, 1), f32([1, 1, 1])),
    ])
    seeds["scale-nan"] = st_bytes([
        ("q.weight", "F8_E4M3", (5, 7), fp8_e4m3(wq)),
        ("q.weight_scale_inv", "F32", (2, 2), f32([[1, float("nan")], [1, 1]])),
    ])
    seeds["scale-1d"] = st_bytes([
        ("q.weight", "F8_E4M3", (5, 7), fp8_e4m3(wq)),
        ("q.weight_scale_inv", "F32", (4,), f32([1, 1, 1, 1])),
    ])
    seeds["scale-i32"] = st_bytes([
        ("q.weight", "F8_E4M3", (5, 7), fp8_e4m3(wq)),
        ("q.weight_scale_inv", "I32", (2, 2), np.ones(4, "<i4").tobytes()),
    ])

    out = {}
    # mode byte: bits 0-1 layout, bits 2-4 block size index (4: block 4, the
    # block of the FP8 seeds' 2 x 2 scale grids), bit 5 also NO_SCALES
    for name, data in seeds.items():
        out["file-" + name] = bytes([0x20 | (4 << 2)]) + data
    for name in ("valid-fp8-scales", "scale-wrong-grid"):
        for idx in (0, 1, 2, 3, 5, 6, 7):
            out["file-%s-block%d" % (name, idx)] = bytes([(idx << 2) | 0x20]) + seeds[name]
    for name in ("valid-f32", "valid-fp8-scales", "trunc-in-data", "hdr-not-json"):
        out["dir-" + name] = bytes([0x01 | (4 << 2)]) + seeds[name]

    # sharded sets: index part, then shards s1, s2 ...
    s1 = st_bytes([("a.weight", "F32", (6, 5), f32(w))])
    s2 = st_bytes([("q.weight", "F8_E4M3", (5, 7), fp8_e4m3(wq)),
                   ("b.weight", "F32", (2, 2), f32([[1, 2], [3, 4]]))])
    s3 = st_bytes([("q.weight_scale_inv", "F32", (2, 2), f32([[0.5, 2.0], [1.5, 0.25]]))])

    def index(wm, meta=None):
        d = {"weight_map": wm}
        if meta is not None:
            d["metadata"] = meta
        return json.dumps(d, indent=1).encode()

    wm = {"a.weight": "s1.safetensors", "q.weight": "s2.safetensors",
          "b.weight": "s2.safetensors", "q.weight_scale_inv": "s3.safetensors"}
    sharded = {
        "valid": (index(wm, {"total_size": 200}), [s1, s2, s3]),
        "missing-shard": (index(dict(wm, **{"b.weight": "s9.safetensors"})), [s1, s2, s3]),
        "outside-dotdot": (index(dict(wm, **{"b.weight": "../s2.safetensors"})), [s1, s2, s3]),
        "outside-abs": (index(dict(wm, **{"b.weight": "/etc/passwd"})), [s1, s2, s3]),
        "absent-in-shard": (index(dict(wm, **{"zzz": "s1.safetensors"})), [s1, s2, s3]),
        "not-json": (b"{weight_map: nope", [s1]),
        "no-weight-map": (b'{"metadata": {}}', [s1]),
        "weight-map-array": (b'{"weight_map": ["s1.safetensors"]}', [s1]),
        "empty-map": (b'{"weight_map": {}}', [s1]),
        "name-not-string": (b'{"weight_map": {"a.weight": 1}}', [s1]),
        "bad-shard": (index(wm), [s1, s2[:20], s3]),
        "dup-across-shards": (index({"a.weight": "s1.safetensors"}), [s1, s1]),
        "scale-other-shard-bad": (index(wm), [s1, s2, st_bytes(
            [("q.weight_scale_inv", "F32", (1, 3), f32([1, 1, 1]))])]),
    }
    for name, (idx, shards) in sharded.items():
        body = idx + b"".join(SEP + s for s in shards)
        out["index-" + name] = bytes([0x02 | 0x20 | (4 << 2)]) + body
        if name == "valid":
            out["indexpath-" + name] = bytes([0x03 | (4 << 2)]) + body
            out["indexpath-block128-" + name] = bytes([0x03]) + body
    return out


# ----------------------------------------------------------------- config

# Architectures whose configs get every per-key variant (one of each layout
# family; the others get the valid seeds only, to keep the replay short).
DAMAGED_ARCHS = ("llama", "qwen3", "gemma3", "phi3", "gpt2", "gpt_neox", "bert",
                 "deepseek_v2", "deepseek_v3")


def config_seeds(build):
    replay = os.path.join(build, "tests", "fuzz", "replay-config")
    if not os.path.exists(replay):
        sys.exit("gen-corpus: %s not built" % replay)
    tmp = tempfile.mkdtemp(prefix="fasvd-seeds-")
    try:
        empty = os.path.join(tmp, "empty-input")
        open(empty, "wb").close()
        env = dict(os.environ, FUZZ_CONFIG_SEED_DIR=tmp, OPENBLAS_NUM_THREADS="1")
        subprocess.run([replay, empty], env=env, check=True, stdout=subprocess.DEVNULL)
        valid = {}
        for f in sorted(os.listdir(tmp)):
            if f.startswith("valid-"):
                with open(os.path.join(tmp, f), "rb") as fh:
                    valid[f[len("valid-"):]] = fh.read()
    finally:
        shutil.rmtree(tmp)
    out = {}
    for arch, data in valid.items():
        sel, flags, text = data[0], data[1], data[2:]
        out["valid-" + arch] = data
        out["valid-require-all-f64-" + arch] = bytes([sel, 0x0D]) + text
        out["valid-nofold-" + arch] = bytes([sel, 0x02]) + text
        cfg = json.loads(text)
        if arch not in DAMAGED_ARCHS:
            continue

        def emit(tag, c, fl=flags):
            out["%s-%s" % (tag, arch)] = bytes([sel, fl]) + json.dumps(c, indent=1).encode()

        keys = [k for k, v in cfg.items() if isinstance(v, int) and not isinstance(v, bool)]
        for k in keys:
            for tag, val in (("zero", 0), ("neg", -1), ("huge", 1 << 40), ("str", "8"),
                             ("null", None), ("float", 2.5)):
                c = dict(cfg)
                c[k] = val
                emit("%s-%s" % (tag, k), c, 0x00 if tag == "huge" else flags)
            c = dict(cfg)
            del c[k]
            emit("missing-" + k, c)
        c = dict(cfg)
        c["model_type"] = "no_such_arch"
        emit("unknown-arch", c)
        c = dict(cfg)
        del c["model_type"]
        emit("no-model-type", c)
        c = dict(cfg)
        c["model_type"] = 3
        emit("model-type-int", c)
        if "text_config" not in cfg:
            emit("nested", {"model_type": cfg.get("model_type"), "text_config": cfg})
        if "quantization_config" in cfg:
            c = json.loads(json.dumps(cfg))
            c["quantization_config"]["weight_block_size"] = [0, 128]
            emit("block-zero", c)
            c["quantization_config"]["weight_block_size"] = [3]
            emit("block-short", c)
            c["quantization_config"]["quant_method"] = "gptq"
            emit("quant-gptq", c)
    # whole-file damage, on one architecture
    llama = valid.get("llama")
    if llama:
        sel = llama[0]
        for tag, text in (("empty", b""), ("not-json", b"{model_type: llama"),
                          ("array", b"[]"), ("string", b'"llama"'),
                          ("bad-utf8", b'{"model_type": "lla\xffma"}'),
                          ("trailing", llama[2:] + b" {}"),
                          ("deep", b"[" * 5000 + b"]" * 5000)):
            out["file-%s" % tag] = bytes([sel, 0x04]) + text
    return out


# ------------------------------------------------------------------ dtype

def dtype_seeds(rng):
    out = {}
    patterns = {
        "zeros": bytes(256),
        "ramp": bytes(range(256)),
        "random": bytes(rng.integers(0, 256, 1024, dtype=np.uint8)),
        "f32-special": f32([0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"),
                            3.4028235e38, 1e-45, 1e-40, 65504.0, 65520.0, 448.0, 464.0,
                            57344.0, 61440.0] * 8),
        "f64-special": np.asarray([0.0, -0.0, 1.0, 1e308, -1e308, 5e-324, float("nan"),
                                   float("inf"), 448.0, 449.0, 463.99, 464.0, 1e-3,
                                   2.0 ** -10, 2.0 ** -9, 2.0 ** -24] * 8, "<f8").tobytes(),
    }
    for dt in range(8):
        for st in (0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x3F, 0xFF, 0x7E):
            for pname, body in patterns.items():
                if st not in (0x00, 0x08, 0xFF) and pname != "ramp":
                    continue
                rows, cols = (5, 7) if st & 8 else (4, 6)
                br, bc = (2, 3)
                hdr = bytes([dt, rows - 1, cols - 1, st, br - 1, bc - 1, 2, 0, 0x5A])
                scales = f32(np.linspace(0.25, 4, 16))
                out["dt%d-st%02x-%s" % (dt, st, pname)] = hdr + body + scales
    # wrong grids and scale dtypes
    for grid in (1, 2, 4, 6, 8, 10):
        hdr = bytes([5, 4, 6, 0x08, 1, 2, 2, grid, 0])
        out["fp8-grid%d" % grid] = hdr + bytes(range(64)) + f32(np.ones(16))
    for sdt in range(8):
        hdr = bytes([5, 4, 6, 0x08, 1, 2, sdt, 0, 0])
        out["fp8-scale-dtype%d" % sdt] = hdr + bytes(range(64)) + bytes(range(64, 192))
    hdr = bytes([5, 4, 6, 0x08, 1, 2, 2, 0, 0])
    out["fp8-scale-nan"] = hdr + bytes(range(64)) + f32([1, float("nan")] * 8)
    out["f16-big-block-view"] = bytes([3, 31, 31, 0x78, 15, 15, 3, 0, 0xC3]) + \
        bytes(rng.integers(0, 256, 2048 + 512, dtype=np.uint8))
    return out


# ------------------------------------------------------------------- gguf

QTYPES = {  # ggml type id: (elements, bytes per block, offsets of F16 scales)
    0: (1, 4, []), 1: (1, 2, []), 30: (1, 2, []), 28: (1, 8, []),
    2: (32, 18, [0]), 3: (32, 20, [0, 2]), 6: (32, 22, [0]), 7: (32, 24, [0, 2]),
    8: (32, 34, [0]), 10: (256, 84, [80, 82]), 11: (256, 110, [108]),
    12: (256, 144, [0, 2]), 13: (256, 176, [0, 2]), 14: (256, 210, [208]),
    20: (32, 18, [0]), 23: (256, 136, [0]), 16: (256, 66, [0]),
}


def gg_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gg_value(t, v):
    """Bytes of a metadata value of type t (9: v = (elem type, [values]))."""
    fmt = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}
    if t == 8:
        return gg_str(v)
    if t == 9:
        et, vals = v
        return struct.pack("<IQ", et, len(vals)) + b"".join(gg_value(et, x) for x in vals)
    return struct.pack(fmt[t], v)


def gguf_bytes(kvs, tensors, version=3, align=32):
    """kvs: [(key, type, value)]; tensors: [(name, ne, type id, raw)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gg_str(k) + struct.pack("<I", t) + gg_value(t, v)
    data, infos = b"", b""
    for name, ne, ty, raw in tensors:
        data += b"\0" * (-len(data) % align)
        infos += gg_str(name) + struct.pack("<I", len(ne)) + b"".join(
            struct.pack("<Q", n) for n in ne) + struct.pack("<IQ", ty, len(data))
        data += raw
    out += infos
    out += b"\0" * (-len(out) % align)
    return out + data


def gg_blocks(rng, ty, rows, cols):
    blck, size, scales = QTYPES[ty]
    raw = bytearray(rng.integers(0, 256, size=rows * cols // blck * size, dtype=np.uint8))
    if blck == 1:
        return bytes(raw)
    for b in range(len(raw) // size):
        for off in scales:  # finite F16 scales
            raw[b * size + off + 1] &= 0xBB
    return bytes(raw)


def gguf_seeds(rng):
    kvs = [("general.architecture", 8, "llama"), ("llama.block_count", 4, 2),
           ("llama.attention.head_count", 9, (5, [4, 4])), ("u8", 0, 7), ("i8", 1, -3),
           ("u16", 2, 9), ("i16", 3, -9), ("f32", 6, 0.5), ("b", 7, True),
           ("u64", 10, 2 ** 63 + 5), ("i64", 11, -7), ("f64", 12, 1.25),
           ("nested", 9, (9, [(8, ["a", "bc"]), (0, [1, 2, 3]), (9, [(9, [])])]))]
    seeds = {}
    for ty, (blck, size, _) in QTYPES.items():
        cols = max(blck, 32)
        name = "t%d" % ty
        tensors = [(name + ".weight", [cols, 3], ty, gg_blocks(rng, ty, 3, cols))]
        seeds["type-%02d" % ty] = b"\0" + gguf_bytes(kvs[:3], tensors)
    mixed = [("blk.0.attn_q.weight", [64, 4], 8, gg_blocks(rng, 8, 4, 64)),
             ("blk.0.attn_k.weight", [256, 2], 12, gg_blocks(rng, 12, 2, 256)),
             ("cube", [8, 2, 3], 0, gg_blocks(rng, 0, 6, 8)),
             ("norm", [8], 0, gg_blocks(rng, 0, 1, 8))]
    seeds["all-metadata"] = b"\0" + gguf_bytes(kvs, mixed)
    seeds["version2"] = b"\0" + gguf_bytes(kvs[:2], mixed, version=2)
    seeds["align64"] = b"\0" + gguf_bytes(kvs[:1] + [("general.alignment", 4, 64)], mixed,
                                          align=64)
    parts = []
    for no in range(3):
        pk = [("split.no", 2, no), ("split.count", 2, 3), ("split.tensors.count", 5, 3)]
        parts.append(gguf_bytes(pk, [mixed[no]]))
    seeds["split3"] = b"\1" + SEP.join(parts)
    whole = gguf_bytes(kvs, mixed)
    seeds["trunc-half"] = b"\0" + whole[:len(whole) // 2]
    seeds["bad-magic"] = b"\0GGUX" + whole[4:]
    seeds["version1"] = b"\0" + whole[:4] + struct.pack("<I", 1) + whole[8:]
    seeds["huge-counts"] = b"\0" + whole[:8] + b"\xff" * 16 + whole[24:]
    nan = bytearray(gguf_bytes([], mixed[:1]))
    nan[-(4 * 2 * 34) + 1] = 0x7E  # the first block's scale: NaN
    seeds["nan-scale"] = b"\0" + bytes(nan)
    return seeds


def write(dirpath, files):
    os.makedirs(dirpath, exist_ok=True)
    for f in os.listdir(dirpath):
        if not f.startswith("crash-"):
            os.unlink(os.path.join(dirpath, f))
    for name, data in sorted(files.items()):
        with open(os.path.join(dirpath, name), "wb") as fh:
            fh.write(data)
    print("%s: %d seeds" % (dirpath, len(files)))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", help="build folder with tests/fuzz/replay-config (needed for "
                    "the config corpus)")
    ap.add_argument("--only", help="write only this target's corpus (e.g. gguf)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "corpora"))
    a = ap.parse_args()
    rng = np.random.default_rng(20240607)
    if a.only == "gguf":  # its own generator: the other corpora stay as they are
        write(os.path.join(a.out, "gguf"), gguf_seeds(np.random.default_rng(13)))
        return
    write(os.path.join(a.out, "safetensors"), safetensors_seeds(rng))
    write(os.path.join(a.out, "config"), config_seeds(a.build))
    write(os.path.join(a.out, "dtype"), dtype_seeds(rng))
    write(os.path.join(a.out, "gguf"), gguf_seeds(np.random.default_rng(13)))


if __name__ == "__main__":
    main()
