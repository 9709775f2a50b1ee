"""Shared test support: finding the library, writing fixtures, independent
numpy decoders.

The library is found through FASVD_LIBRARY or the repository's build tree
(fasvd/_lib.py). When it is absent, every test module skips with a message
saying so (``require_library()``); any other import failure (a version
mismatch, a broken binding) fails the run.
"""

import ctypes
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)  # bindings/python
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)

try:
    import fasvd  # noqa: F401,E402
    SKIP_REASON = None
except ImportError as e:
    if type(e).__name__ != "LibraryNotFound":
        raise
    SKIP_REASON = str(e)


def require_library():
    """Skip the calling test module when libfasvd cannot be found."""
    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON, allow_module_level=True)


def cli_path():
    """The `fasvd` command-line tool of the library's build tree
    (BUILD/lib/libfasvd.so.0 -> BUILD/tools/fasvd), or $FASVD_CLI; None if
    there is none."""
    env = os.environ.get("FASVD_CLI")
    if env:
        return env
    import fasvd
    lib_dir = os.path.dirname(os.path.abspath(fasvd.library_path))
    cand = os.path.join(os.path.dirname(lib_dir), "tools", "fasvd")
    return cand if os.access(cand, os.X_OK) else None


# ---------------------------------------------------------------- fixtures
# The fixture generator is test support, not part of libfasvd: the build
# tree's tests/support/libfasvd-testsupport.so (tests/support/fixture.h),
# named by FASVD_TESTSUPPORT_LIBRARY (`make test-python` sets it) or found
# beside the library's build tree.

class _FixtureOpts(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("seed", ctypes.c_uint64),
                ("n_layers", ctypes.c_int64), ("n_heads", ctypes.c_int64),
                ("n_kv_heads", ctypes.c_int64), ("hidden", ctypes.c_int64),
                ("head_dim", ctypes.c_int64), ("q_lora_rank", ctypes.c_int64),
                ("kv_lora_rank", ctypes.c_int64), ("qk_nope_head_dim", ctypes.c_int64),
                ("qk_rope_head_dim", ctypes.c_int64), ("v_head_dim", ctypes.c_int64),
                ("intermediate", ctypes.c_int64), ("dtype", ctypes.c_int),
                ("n_shards", ctypes.c_int64), ("block_size", ctypes.c_int64),
                ("rank", ctypes.c_int64), ("noise", ctypes.c_double)]


_FIXTURE_DIMS = ("n_layers", "n_heads", "n_kv_heads", "hidden", "head_dim", "q_lora_rank",
                 "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                 "intermediate", "n_shards", "block_size", "rank")
_testsupport = None


def _testsupport_library():
    """The fixture library, loaded once; skips the calling test without it."""
    global _testsupport
    if _testsupport is not None:
        return _testsupport
    import fasvd
    path = os.environ.get("FASVD_TESTSUPPORT_LIBRARY")
    if not path:
        build = os.path.dirname(os.path.dirname(os.path.abspath(fasvd.library_path)))
        path = os.path.join(build, "tests", "support", "libfasvd-testsupport.so")
    if not os.path.exists(path):
        pytest.skip("no fixture library %s (build the tests, or set "
                    "FASVD_TESTSUPPORT_LIBRARY)" % path)
    lib = ctypes.CDLL(path)
    P = ctypes.POINTER(_FixtureOpts)
    lib.fasvd_fixture_opts_init.argtypes = [P, ctypes.c_size_t]
    lib.fasvd_fixture_opts_init.restype = ctypes.c_int
    lib.fasvd_fixture_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, P]
    lib.fasvd_fixture_write.restype = ctypes.c_int
    lib.fasvd_fixture_last_error.argtypes = []
    lib.fasvd_fixture_last_error.restype = ctypes.c_char_p
    o = _FixtureOpts()
    if lib.fasvd_fixture_opts_init(ctypes.byref(o), ctypes.sizeof(o)) != 0:
        raise AssertionError("%s refuses a fasvd_fixture_opts of %d bytes (%s): update "
                             "_FixtureOpts" % (path, ctypes.sizeof(o),
                                               lib.fasvd_fixture_last_error().decode()))
    _testsupport = lib
    return lib


def write_fixture(directory, arch="deepseek_v3", seed=1, dtype=None, noise=None, **dims):
    """Write a synthetic checkpoint of architecture ``arch`` into
    ``directory`` (created with its parents) and return its path: the model
    of ``fasvd demo`` by default (DeepSeek-V3 layout, FP8 e4m3 with
    128 x 128 block scales, 3 shards, 2 layers), with planted low-rank
    structure. ``dims`` are fasvd_fixture_opts fields (n_layers, n_heads,
    ...); None or absent takes the generator's default. Raises the
    fasvd.Error subclass of the generator's error code."""
    from fasvd import _lib as L
    from fasvd.errors import error_class
    lib = _testsupport_library()
    o = _FixtureOpts()
    lib.fasvd_fixture_opts_init(ctypes.byref(o), ctypes.sizeof(o))
    o.seed = int(seed)
    for k, v in dims.items():
        if k not in _FIXTURE_DIMS:
            raise TypeError("write_fixture: unknown option %r" % k)
        if v is not None:
            setattr(o, k, int(v))
    if noise is not None:
        o.noise = float(noise)
    o.dtype = {None: 0, "f64": L.DTYPE_F64, "f32": L.DTYPE_F32, "f16": L.DTYPE_F16,
               "bf16": L.DTYPE_BF16, "f8_e4m3": L.DTYPE_F8_E4M3,
               "f8_e5m2": L.DTYPE_F8_E5M2}[dtype]
    path = os.fspath(directory)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    rc = lib.fasvd_fixture_write(None, path.encode(), str(arch).encode(), ctypes.byref(o))
    if rc < 0:
        detail = (lib.fasvd_fixture_last_error() or b"").decode("utf-8", "replace")
        raise error_class(rc)(detail, code=rc, function="fasvd_fixture_write")
    return path


# ---------------------------------------------------------------- decoders
# Independent of the library: straight from the format definitions.

def bf16_decode(codes):
    """bfloat16 codes (uint16) -> float64: the top half of a float32."""
    c = np.asarray(codes, dtype=np.uint16)
    return (c.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def bf16_encode(x):
    """float -> bfloat16 codes, round to nearest even (finite inputs)."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def f8_e4m3_decode(codes):
    """e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; no
    infinities; S.1111.111 is NaN; subnormals at exponent 0."""
    c = np.asarray(codes, dtype=np.uint8).astype(np.int64)
    s = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> 3) & 0xF
    m = (c & 0x7).astype(np.float64)
    v = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7))
    v = np.where((e == 15) & ((c & 7) == 7), np.nan, v)
    return s * v


def f8_e5m2_decode(codes):
    """e5m2: sign, 5 exponent bits (bias 15), 2 mantissa bits, IEEE-like."""
    c = np.asarray(codes, dtype=np.uint8).astype(np.int64)
    s = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> 2) & 0x1F
    m = (c & 0x3).astype(np.float64)
    v = np.where(e == 0, m / 4.0 * 2.0 ** -14, (1 + m / 4.0) * 2.0 ** (e - 15))
    v = np.where(e == 31, np.where(m == 0, np.inf, np.nan), v)
    return s * v


def apply_block_scales(x, scale_inv, br, bc):
    """x[r, c] * scale_inv[r // br, c // bc] (partial edge blocks included)."""
    rows, cols = x.shape
    full = np.repeat(np.repeat(np.asarray(scale_inv, dtype=np.float64), br, axis=0), bc,
                     axis=1)[:rows, :cols]
    return x * full


def svals(a):
    return np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False)


# ---------------------------------------------------------------- checkpoints
# A minimal reader, independent of the binding's: header length, JSON, data.

_ST_NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "F8_E4M3": "u1",
          "F8_E5M2": "u1"}


def read_checkpoint(model_dir):
    """{name: float64 array} of every tensor of a model folder (single file or
    sharded through model.safetensors.index.json), dequantised: BF16 / FP8
    decoded by the formulas above, FP8 weights times their `_scale_inv`
    blocks (block size from config.json, default 128)."""
    import json
    import struct
    files = []
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    raw, dtypes = {}, {}
    for fn in files:
        with open(os.path.join(model_dir, fn), "rb") as f:
            buf = f.read()
        n = struct.unpack("<Q", buf[:8])[0]
        header = json.loads(buf[8:8 + n])
        header.pop("__metadata__", None)
        for name, e in header.items():
            b, end = e["data_offsets"]
            arr = np.frombuffer(buf[8 + n + b:8 + n + end], dtype=_ST_NP[e["dtype"]])
            raw[name] = arr.reshape(e["shape"])
            dtypes[name] = e["dtype"]
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    block = (cfg.get("quantization_config") or {}).get("weight_block_size", [128, 128])
    out = {}
    for name, arr in raw.items():
        dt = dtypes[name]
        if dt == "BF16":
            v = bf16_decode(arr)
        elif dt == "F8_E4M3":
            v = f8_e4m3_decode(arr)
        elif dt == "F8_E5M2":
            v = f8_e5m2_decode(arr)
        else:
            v = arr.astype(np.float64)
        if dt.startswith("F8") and name + "_scale_inv" in raw:
            v = apply_block_scales(v, raw[name + "_scale_inv"].astype(np.float64), *block)
        out[name] = v
    return out, cfg


def reference_layer(weights, cfg, layer, fold=True):
    """Canonical per-head matrices (docs/design.md) for one layer, materialised
    in float64 from the raw checkpoint, written from the layout rules (not
    from the library): returns {"Q": [...], "K": [...], ..., "QA": M, ...}."""
    p = "model.layers.%d." % layer
    W = lambda n: weights[p + n]  # noqa: E731
    ones = lambda n: np.ones(n)  # noqa: E731
    mt = cfg["model_type"]
    if mt == "gpt2":  # Conv1D: c_attn [hidden, 3·hidden] columns [Q | K | V]
        n_h, hidden = cfg["n_head"], cfg["n_embd"]
        hd = hidden // n_h
        t = "transformer.h.%d." % layer
        g = weights[t + "ln_1.weight"] if fold else ones(hidden)
        qkv = weights[t + "attn.c_attn.weight"].T * g
        o = weights[t + "attn.c_proj.weight"]  # [heads·hd, hidden]: head i's rows
        return {"Q": [qkv[i * hd:(i + 1) * hd] for i in range(n_h)],
                "K": [qkv[hidden + i * hd:hidden + (i + 1) * hd] for i in range(n_h)],
                "V": [qkv[2 * hidden + i * hd:2 * hidden + (i + 1) * hd] for i in range(n_h)],
                "O": [o[i * hd:(i + 1) * hd] for i in range(n_h)]}
    n_h = cfg["num_attention_heads"]
    if mt in ("deepseek_v2", "deepseek_v3", "kimi_k2"):
        nope, rope = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"]
        vd, kvl = cfg["v_head_dim"], cfg["kv_lora_rank"]
        hidden = cfg["hidden_size"]
        g_in = W("input_layernorm.weight") if fold else ones(hidden)
        out = {}
        if cfg.get("q_lora_rank"):
            qa = W("self_attn.q_a_proj.weight") * g_in
            g_qa = W("self_attn.q_a_layernorm.weight") if fold else ones(qa.shape[0])
            qb = W("self_attn.q_b_proj.weight") * g_qa
            out["QA"] = qa
        else:
            qb = W("self_attn.q_proj.weight") * g_in
        kva = W("self_attn.kv_a_proj_with_mqa.weight") * g_in
        out["KVA"], out["KVA_pe"] = kva[:kvl], kva[kvl:]
        g_kv = W("self_attn.kv_a_layernorm.weight") if fold else ones(kvl)
        kvb = W("self_attn.kv_b_proj.weight") * g_kv
        o = W("self_attn.o_proj.weight")
        s_q, s_kv = nope + rope, nope + vd
        out["Q"] = [qb[i * s_q:i * s_q + nope] for i in range(n_h)]
        out["Q_pe"] = [qb[i * s_q + nope:(i + 1) * s_q] for i in range(n_h)]
        out["K"] = [kvb[i * s_kv:i * s_kv + nope] for i in range(n_h)]  # interleaved [k; v]
        out["V"] = [kvb[i * s_kv + nope:(i + 1) * s_kv] for i in range(n_h)]
        out["O"] = [o[:, i * vd:(i + 1) * vd].T for i in range(n_h)]
        return out
    if mt in ("llama", "mistral", "qwen2", "qwen3"):
        n_kv = cfg.get("num_key_value_heads", n_h)
        hd = cfg.get("head_dim") or cfg["hidden_size"] // n_h
        g = W("input_layernorm.weight") if fold else ones(cfg["hidden_size"])
        q = W("self_attn.q_proj.weight") * g
        k = W("self_attn.k_proj.weight") * g
        v = W("self_attn.v_proj.weight") * g
        o = W("self_attn.o_proj.weight")
        return {"Q": [q[i * hd:(i + 1) * hd] for i in range(n_h)],
                "K": [k[i * hd:(i + 1) * hd] for i in range(n_kv)],
                "V": [v[i * hd:(i + 1) * hd] for i in range(n_kv)],
                "O": [o[:, i * hd:(i + 1) * hd].T for i in range(n_h)]}
    raise ValueError("no reference for %s" % mt)


def reference_spectra(m):
    """Every spectrum (docs/spectra-schema.md) from reference_layer()'s matrices,
    each fused and stacked matrix materialised: {"head.VO": [n, k], ...}."""
    out = {}
    for name in ("Q", "Q_pe", "K", "V", "O"):
        if name in m:
            out["head." + name] = np.stack([svals(x) for x in m[name]])
    n = len(m["Q"])

    def g(lst, i):
        return lst[i // (n // len(lst))]
    fused = {"QK": [m["Q"][i].T @ g(m["K"], i) for i in range(n)],
             "KQ": [g(m["K"], i).T @ m["Q"][i] for i in range(n)],
             "VO": [g(m["V"], i).T @ m["O"][i] for i in range(n)]}
    for name, mats in fused.items():
        out["head." + name] = np.stack([svals(x) for x in mats])
    for name in ("Q", "Q_pe", "K", "V", "O"):
        if name in m:
            out["stack." + name] = svals(np.vstack([x / svals(x)[0] for x in m[name]]))
    for name, mats in fused.items():
        out["stack." + name] = svals(np.vstack([x / svals(x)[0] for x in mats]))
    for name in ("QA", "KVA", "KVA_pe"):
        if name in m:
            out["sub." + name] = svals(m[name])
    return out
