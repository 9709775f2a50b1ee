#!/usr/bin/python3
"""Generate the hostile-input catalogue (docs/hostile-inputs.md).

    gen-hostile.py --fixture-tool PATH --out DIR [--manifest FILE] [--table FILE]

Writes three valid base checkpoints with PATH (tests/hostile/hostile-fixture,
i.e. fasvd_fixture_write): a Llama model (F32, one file), a DeepSeek-V3 model
(F8_E4M3 with 128 x 128 block scale_inv, three shards and an index) and a
GPT-2 model; then one folder per case under DIR/cases/, each a copy of a base
with exactly one thing broken, and DIR/manifest.json describing what every
consumer must observe:

  {"cases": [{"id", "what", "dir" (model folder, relative to DIR),
              "checkpoint" (path given to `fasvd svdvals`), "tensor",
              "svdvals" | "analyze" | "info" | "gguf" (GGUF files, C API only):
                  {"expect": "fail" | "ok" | "any",
                  "xfail": "known bug" (optional),
                  "codes": ["EFORMAT", ...]   (acceptable fasvd_error names),
                  "names": ["model.safetensors", "<tensor>", ...]
                           (strings the one-line message must contain)},
              "svdvals_api" ...: the same, for the C API where it differs,
              "analyze_args": {"out" | "json" | "csv": path relative to the
                  scratch output folder, or absolute},
              "timeout": seconds (optional)}]}

A command absent from a case is not run for it (e.g. svdvals on a config
problem). The consumers are tests/hostile/run-hostile.py (the CLI) and
tests/hostile/test-hostile-api.c (the C API). Deterministic.
"""

import argparse
import json
import os
import shutil
import struct
import subprocess

import importlib.util

import numpy as np

# The GGUF writer of the fuzz corpus (tests/fuzz/gen-corpus.py).
_spec = importlib.util.spec_from_file_location(
    "gen_corpus", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz",
                               "gen-corpus.py"))
GG = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(GG)

LLAMA_OPTS = ["n_layers=2", "n_heads=4", "n_kv_heads=2", "hidden=32", "head_dim=8",
              "intermediate=-1", "dtype=F32"]
DS_OPTS = ["n_layers=2", "intermediate=-1"]
GPT2_OPTS = ["n_layers=1", "n_heads=4", "hidden=32", "intermediate=-1", "dtype=F32"]

# Checks known to fail because of a library bug reported to its owner
# (docs/hostile-inputs.md, "Known failures"): they run as expected failures
# (TAP TODO; inverted in the C test), so that a fix shows up as an
# unexpected pass and the entry is then removed here.
XFAIL = {
}

Q0 = "model.layers.0.self_attn.q_proj.weight"
Q1 = "model.layers.1.self_attn.q_proj.weight"
NORM0 = "model.layers.0.input_layernorm.weight"
DSQA = "model.layers.0.self_attn.q_a_proj.weight"
DSKVA = "model.layers.1.self_attn.kv_a_proj_with_mqa.weight"


# ------------------------------------------------------------- safetensors io

class St:
    """A safetensors file as (metadata, [(name, dtype, shape, bytes)])."""

    def __init__(self, path):
        b = open(path, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        h = json.loads(b[8:8 + n])
        data = b[8 + n:]
        self.meta = h.pop("__metadata__", None)
        self.tensors = []
        for name, e in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            s, t = e["data_offsets"]
            self.tensors.append([name, e["dtype"], list(e["shape"]), data[s:t]])

    def names(self):
        return [t[0] for t in self.tensors]

    def get(self, name):
        for t in self.tensors:
            if t[0] == name:
                return t
        raise KeyError(name)

    def remove(self, name):
        self.tensors = [t for t in self.tensors if t[0] != name]

    def header(self):
        """(header dict without padding, data bytes) with contiguous offsets."""
        h = {}
        if self.meta is not None:
            h["__metadata__"] = self.meta
        off, data = 0, b""
        for name, dtype, shape, raw in self.tensors:
            h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
            off += len(raw)
            data += raw
        return h, data

    def to_bytes(self):
        h, data = self.header()
        return pack(json.dumps(h).encode(), data)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())


def pack(header_bytes, data, pad=True):
    if pad:
        header_bytes += b" " * (-len(header_bytes) % 8)
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data


def write_bytes(path, b):
    with open(path, "wb") as f:
        f.write(b)


def f32(a):
    return np.asarray(a, dtype="<f4").tobytes()


# ---------------------------------------------------------------- the cases

class Gen:
    def __init__(self, tool, out):
        self.tool = tool
        self.out = os.path.abspath(out)
        self.cases = []
        self.bases = os.path.join(self.out, "bases")
        self.root = os.path.join(self.out, "cases")

    def fixture(self, name, arch, opts):
        d = os.path.join(self.bases, name)
        subprocess.run([self.tool, d, arch] + opts, check=True)
        return d

    def setup(self):
        for d in (self.bases, self.root):
            if os.path.exists(d):
                shutil.rmtree(d)
        os.makedirs(self.bases)
        os.makedirs(self.root)
        self.llama = self.fixture("llama", "llama", LLAMA_OPTS)
        self.ds = self.fixture("deepseek_v3", "deepseek_v3", DS_OPTS)
        self.gpt2 = self.fixture("gpt2", "gpt2", GPT2_OPTS)
        idx = json.load(open(os.path.join(self.ds, "model.safetensors.index.json")))
        self.ds_map = idx["weight_map"]
        # a file outside every model folder, for the "outside" cases
        St(os.path.join(self.llama, "model.safetensors")).write(
            os.path.join(self.out, "outside.safetensors"))

    def new(self, cid, base):
        d = os.path.join(self.root, cid)
        shutil.copytree(base, d, symlinks=True)
        return d

    def add(self, cid, what, d, checkpoint=None, tensor=None, **checks):
        rel = os.path.relpath(d, self.out)
        c = {"id": cid, "what": what, "dir": rel}
        if checkpoint is not None:
            c["checkpoint"] = os.path.relpath(checkpoint, self.out)
            c["tensor"] = tensor
        for k, v in checks.items():
            c[k] = v
        self.cases.append(c)

    # shorthand for an expectation
    @staticmethod
    def fail(codes, *names):
        return {"expect": "fail", "codes": codes.split(), "names": list(names)}

    OK = {"expect": "ok"}
    ANY = {"expect": "any"}

    # -------------------------------------------------- whole-file damage

    def llama_file_case(self, cid, what, make_bytes, codes, names=("model.safetensors",),
                        tensor=Q0, info=True):
        """model.safetensors of the Llama base replaced by make_bytes(St)."""
        d = self.new(cid, self.llama)
        p = os.path.join(d, "model.safetensors")
        write_bytes(p, make_bytes(St(p)))
        f = self.fail(codes, *names)
        checks = {"svdvals": f, "analyze": f}
        if info:
            checks["info"] = f
        self.add(cid, what, d, p, tensor, **checks)

    def file_cases(self):
        raw = lambda st: st.to_bytes()
        hlen = lambda st: struct.unpack("<Q", raw(st)[:8])[0]

        self.llama_file_case("trunc-empty", "model.safetensors is empty",
                             lambda st: b"", "EFORMAT")
        self.llama_file_case("trunc-length", "cut inside the 8-byte header length",
                             lambda st: raw(st)[:5], "EFORMAT")
        self.llama_file_case("trunc-after-length", "only the 8-byte header length",
                             lambda st: raw(st)[:8], "EFORMAT")
        self.llama_file_case("trunc-header", "cut in the middle of the JSON header",
                             lambda st: raw(st)[:8 + hlen(st) // 2], "EFORMAT")
        self.llama_file_case("trunc-after-header", "header complete, no data at all",
                             lambda st: raw(st)[:8 + hlen(st)], "EFORMAT")
        self.llama_file_case("trunc-data", "cut in the middle of the data section",
                             lambda st: raw(st)[:(8 + hlen(st) + len(raw(st))) // 2],
                             "EFORMAT")
        self.llama_file_case("trunc-last-byte", "the last data byte missing",
                             lambda st: raw(st)[:-1], "EFORMAT")
        self.llama_file_case("hlen-beyond-file", "header length 1 byte beyond the file",
                             lambda st: struct.pack("<Q", len(raw(st)) - 7) + raw(st)[8:],
                             "EFORMAT ERANGE")
        self.llama_file_case("hlen-huge", "header length 2^62",
                             lambda st: struct.pack("<Q", 1 << 62) + raw(st)[8:],
                             "EFORMAT ERANGE")
        self.llama_file_case("hlen-max", "header length 2^64 - 1",
                             lambda st: b"\xff" * 8 + raw(st)[8:], "EFORMAT ERANGE")
        self.llama_file_case("hlen-zero", "header length 0",
                             lambda st: struct.pack("<Q", 0) + raw(st)[8:], "EFORMAT")
        self.llama_file_case("hlen-short", "header length 1 byte short of the JSON",
                             lambda st: struct.pack("<Q", hlen(st) - 1) + raw(st)[8:],
                             "EFORMAT")

        def header_text(text):
            def f(st):
                h, data = st.header()
                return pack(text, data)
            return f

        self.llama_file_case("hdr-not-json", "header is not JSON",
                             header_text(b"this is not JSON at all"), "EFORMAT")
        self.llama_file_case("hdr-array", "header is a JSON array",
                             header_text(b"[1, 2, 3]"), "EFORMAT")
        self.llama_file_case("hdr-string", "header is a JSON string",
                             header_text(b'"model"'), "EFORMAT")
        self.llama_file_case("hdr-null", "header is JSON null", header_text(b"null"), "EFORMAT")
        self.llama_file_case("hdr-trailing", "header is an object followed by garbage",
                             lambda st: pack(json.dumps(st.header()[0]).encode() + b" xx",
                                             st.header()[1]), "EFORMAT")
        self.llama_file_case("hdr-nul-byte", "a NUL byte inside the header",
                             lambda st: pack(json.dumps(st.header()[0]).encode()
                                             .replace(b"q_proj", b"q_p\0oj", 1),
                                             st.header()[1]), "EFORMAT")

        def edit(fn):
            """fn(header dict, st) edits the header in place."""
            def f(st):
                h, data = st.header()
                fn(h, st)
                return pack(json.dumps(h).encode(), data)
            return f

        def bad_utf8(st):
            h, data = st.header()
            t = json.dumps(h).encode().replace(Q0.encode(), Q0.encode()[:-6] + b"\xff\xfe" +
                                               b"weight"[2:], 1)
            return pack(t, data)
        self.llama_file_case("utf8-name", "invalid UTF-8 in a tensor name", bad_utf8,
                             "EFORMAT")
        self.llama_file_case("utf8-metadata", "invalid UTF-8 in a metadata value",
                             lambda st: pack(json.dumps(st.header()[0]).encode()
                                             .replace(b'"pt"', b'"p\xc3"', 1), st.header()[1]),
                             "EFORMAT")

        def dup(st):
            h, data = st.header()
            t = json.dumps(h)
            e = json.dumps(h[Q0])
            # the same name twice, same entry (so only the name is wrong)
            t = t[:-1] + ', "%s": %s}' % (Q0, e)
            return pack(t.encode(), data)
        self.llama_file_case("dup-name", "the same tensor name twice", dup, "EFORMAT",
                             names=("model.safetensors", Q0))

        def set_entry(name, **kw):
            def fn(h, st):
                for k, v in kw.items():
                    if v is None:
                        del h[name][k]
                    else:
                        h[name][k] = v
            return fn

        self.llama_file_case(
            "off-beyond", "data_offsets end beyond the data section",
            edit(lambda h, st: h[Q1]["data_offsets"].__setitem__(1, h[Q1]["data_offsets"][1] + 4096)),
            "EFORMAT", names=("model.safetensors",))
        self.llama_file_case(
            "off-huge", "data_offsets near 2^64",
            edit(set_entry(Q0, data_offsets=[18446744073709551000, 18446744073709551615])),
            "EFORMAT ERANGE", names=("model.safetensors",))  # a JSON error: no tensor yet
        self.llama_file_case(
            "off-reversed", "data_offsets [end, begin]",
            edit(lambda h, st: h[Q0].__setitem__("data_offsets", h[Q0]["data_offsets"][::-1])),
            "EFORMAT", names=("model.safetensors", Q0))
        self.llama_file_case(
            "off-negative", "a negative data offset",
            edit(lambda h, st: h[Q0]["data_offsets"].__setitem__(0, -16)),
            "EFORMAT", names=("model.safetensors", Q0))

        def overlap(h, st):
            # q_proj's span starts 8 bytes early: overlaps the tensor before
            # it; the tensor after it keeps its span (so the size stays right)
            a, b = h[Q0]["data_offsets"]
            h[Q0]["data_offsets"] = [a - 8, b - 8]
        self.llama_file_case("off-overlap", "two tensors' spans overlap", edit(overlap),
                             "EFORMAT", names=("model.safetensors",))

        def same_span(h, st):
            h[Q1]["data_offsets"] = list(h[Q0]["data_offsets"])
        self.llama_file_case("off-aliased", "two tensors share one span", edit(same_span),
                             "EFORMAT", names=("model.safetensors",))
        self.llama_file_case("off-missing", "no data_offsets",
                             edit(set_entry(Q0, data_offsets=None)), "EFORMAT",
                             names=("model.safetensors", Q0))
        self.llama_file_case("off-one", "data_offsets with one number",
                             edit(lambda h, st: h[Q0].__setitem__("data_offsets",
                                                                  h[Q0]["data_offsets"][:1])),
                             "EFORMAT", names=("model.safetensors", Q0))
        self.llama_file_case("off-strings", "data_offsets are strings",
                             edit(lambda h, st: h[Q0].__setitem__(
                                 "data_offsets", [str(x) for x in h[Q0]["data_offsets"]])),
                             "EFORMAT", names=("model.safetensors", Q0))
        self.llama_file_case("size-mismatch", "shape x dtype is not the span size",
                             edit(set_entry(Q0, shape=[32, 31])), "EFORMAT",
                             names=("model.safetensors", Q0))
        self.llama_file_case("size-dtype-mismatch", "dtype changed to F64 (twice the bytes)",
                             edit(set_entry(Q0, dtype="F64")), "EFORMAT",
                             names=("model.safetensors", Q0))
        self.llama_file_case("shape-overflow", "element count overflows 64 bits",
                             edit(set_entry(Q0, shape=[4294967296, 4294967296, 4])),
                             "ERANGE", names=("model.safetensors", Q0))
        self.llama_file_case("shape-bytes-overflow", "byte size overflows 64 bits",
                             edit(set_entry(Q0, shape=[2305843009213693952, 2])), "ERANGE",
                             names=("model.safetensors", Q0))
        self.llama_file_case("shape-negative", "negative dimensions [-32, -32]",
                             edit(set_entry(Q0, shape=[-32, -32])), "ESHAPE",
                             names=("model.safetensors", Q0))
        self.llama_file_case("shape-float", "a non-integer dimension",
                             edit(set_entry(Q0, shape=[32.0, 32])), "EFORMAT",
                             names=("model.safetensors", Q0))
        self.llama_file_case("shape-missing", "no shape",
                             edit(set_entry(Q0, shape=None)), "EFORMAT",
                             names=("model.safetensors", Q0))
        self.llama_file_case("shape-too-many-dims", "9 dimensions",
                             edit(set_entry(Q0, shape=[1] * 7 + [32, 32])), "ESHAPE",
                             names=("model.safetensors", Q0))
        self.llama_file_case("dtype-unknown", "dtype \"F33\"",
                             edit(set_entry(Q0, dtype="F33")), "EDTYPE",
                             names=("model.safetensors", Q0))
        self.llama_file_case("dtype-missing", "no dtype",
                             edit(set_entry(Q0, dtype=None)), "EFORMAT",
                             names=("model.safetensors", Q0))
        self.llama_file_case("dtype-not-string", "dtype is a number",
                             edit(set_entry(Q0, dtype=32)), "EFORMAT",
                             names=("model.safetensors", Q0))
        self.llama_file_case("entry-not-object", "a tensor entry is an array",
                             edit(lambda h, st: h.__setitem__(Q0, [1, 2])), "EFORMAT",
                             names=("model.safetensors", Q0))
        self.llama_file_case("hdr-deep", "header nested 100000 deep",
                             header_text(b"[" * 100000 + b"]" * 100000), "EFORMAT")
        self.llama_file_case("metadata-not-strings", "__metadata__ value is a number",
                             edit(lambda h, st: h.__setitem__("__metadata__", {"format": 1})),
                             "EFORMAT")

    # -------------------------------------------------- tensor-level damage

    def tensor_cases(self):
        def llama_edit(cid, what, fn, svd, ana, info, tensor=Q0):
            d = self.new(cid, self.llama)
            p = os.path.join(d, "model.safetensors")
            st = St(p)
            fn(st)
            st.write(p)
            checks = {"analyze": ana, "info": info}
            if svd is not None:
                checks["svdvals"] = svd
            self.add(cid, what, d, p, tensor, **checks)

        def poke(name, index, value):
            def fn(st):
                t = st.get(name)
                a = np.frombuffer(t[3], dtype="<f4").copy()
                a[index] = value
                t[3] = a.tobytes()
            return fn

        f = lambda c, *n: self.fail(c, *n)
        llama_edit("nan-weight", "a NaN in q_proj (layer 0)", poke(Q0, 37, np.nan),
                   f("ENONFINITE", Q0), f("ENONFINITE", Q0), self.OK)
        llama_edit("inf-weight", "+Inf in q_proj (layer 1)", poke(Q1, 5, np.inf),
                   f("ENONFINITE", Q1), f("ENONFINITE", Q1), self.OK, tensor=Q1)
        llama_edit("neg-inf-weight", "-Inf in o_proj", poke(
            "model.layers.0.self_attn.o_proj.weight", 1000, -np.inf),
            f("ENONFINITE", "o_proj"), f("ENONFINITE", "o_proj"), self.OK,
            tensor="model.layers.0.self_attn.o_proj.weight")
        llama_edit("nan-norm", "a NaN in input_layernorm (folded into q/k/v)",
                   poke(NORM0, 3, np.nan), None, f("ENONFINITE", NORM0), self.OK)
        # finite weights whose singular values overflow float32: a correct
        # (finite) answer or a clean refusal, never inf
        llama_edit("huge-weight", "3e38 weights (finite, but sigma overflows float32)",
                   lambda st: st.get(Q0).__setitem__(3, f32(np.full(1024, 3e38))),
                   self.ANY, self.ANY, self.OK)

        def reshape(name, shape):
            return lambda st: st.get(name).__setitem__(2, shape)
        llama_edit("1d-weight", "q_proj stored 1-D [1024]", reshape(Q0, [1024]),
                   f("ESHAPE", Q0), f("ESHAPE", Q0), f("ESHAPE", Q0))
        llama_edit("3d-weight", "q_proj stored 3-D [4, 8, 32]", reshape(Q0, [4, 8, 32]),
                   f("ESHAPE", Q0), f("ESHAPE", Q0), f("ESHAPE", Q0))
        llama_edit("scalar-weight", "k_proj stored as a 0-D scalar", lambda st: st.get(
            "model.layers.0.self_attn.k_proj.weight").__setitem__(2, []) or st.get(
            "model.layers.0.self_attn.k_proj.weight").__setitem__(3, f32(1.0)),
            f("ESHAPE", "k_proj"), f("ESHAPE", "k_proj"), f("ESHAPE", "k_proj"),
            tensor="model.layers.0.self_attn.k_proj.weight")
        llama_edit("2d-norm", "input_layernorm stored 2-D [4, 8]", reshape(NORM0, [4, 8]),
                   None, f("ESHAPE", NORM0), f("ESHAPE", NORM0))
        llama_edit("empty-weight", "q_proj of shape [0, 32]",
                   lambda st: st.get(Q0).__setitem__(2, [0, 32]) or st.get(Q0).__setitem__(3, b""),
                   f("ESHAPE", Q0), f("ESHAPE EARCH", Q0), f("ESHAPE EARCH", Q0))
        llama_edit("wrong-shape", "q_proj [16, 32] where the config implies [32, 32]",
                   lambda st: st.get(Q0).__setitem__(2, [16, 32]) or st.get(Q0).__setitem__(
                       3, st.get(Q0)[3][:16 * 32 * 4]),
                   self.OK, f("EARCH ESHAPE", Q0), f("EARCH ESHAPE", Q0))
        llama_edit("wrong-shape-k", "k_proj stored [32, 16] (transposed)",
                   reshape("model.layers.1.self_attn.k_proj.weight", [32, 16]),
                   self.OK, f("EARCH ESHAPE", "k_proj"), f("EARCH ESHAPE", "k_proj"),
                   tensor="model.layers.1.self_attn.k_proj.weight")
        llama_edit("dtype-i32", "q_proj of dtype I32 (defined by safetensors, not read)",
                   lambda st: st.get(Q0).__setitem__(1, "I32"),
                   f("EDTYPE", Q0), f("EDTYPE", Q0), f("EDTYPE", Q0))
        llama_edit("dtype-bool-norm", "input_layernorm of dtype U8 (64 bytes, 64 elements)",
                   lambda st: (st.get(NORM0).__setitem__(1, "U8"),
                               st.get(NORM0).__setitem__(2, [128]),
                               st.get(NORM0).__setitem__(3, bytes(128))),
                   None, f("EDTYPE ESHAPE EARCH", NORM0), f("EDTYPE ESHAPE EARCH", NORM0))
        llama_edit("missing-tensor", "q_proj of layer 1 absent",
                   lambda st: st.remove(Q1), f("ENOTFOUND", Q1), f("ENOTFOUND", Q1),
                   self.OK, tensor=Q1)
        llama_edit("missing-norm", "input_layernorm of layer 0 absent (needed to fold)",
                   lambda st: st.remove(NORM0), None, f("ENOTFOUND", NORM0), self.OK)

    # ----------------------------------------------------- FP8 and scales

    def ds_shard_of(self, name):
        return self.ds_map[name]

    def ds_edit(self, cid, what, name, fn, svd, ana, info, tensor=DSQA, index_fn=None):
        """Edit the shard holding `name` with fn(St)."""
        d = self.new(cid, self.ds)
        shard = os.path.join(d, self.ds_shard_of(name))
        st = St(shard)
        fn(st)
        st.write(shard)
        if index_fn:
            ip = os.path.join(d, "model.safetensors.index.json")
            idx = json.load(open(ip))
            index_fn(idx)
            with open(ip, "w") as fh:
                json.dump(idx, fh, indent=2)
        checks = {"analyze": ana}
        if svd is not None:
            checks["svdvals"] = svd
        if info is not None:
            checks["info"] = info
        self.add(cid, what, d, d, tensor, **checks)

    def fp8_cases(self):
        f = lambda c, *n: self.fail(c, *n)
        sc = DSQA + "_scale_inv"

        def drop_from_index(name):
            return lambda idx: idx["weight_map"].pop(name)
        self.ds_edit("scale-missing", "q_a_proj.weight_scale_inv absent (from shard and index)",
                     sc, lambda st: st.remove(sc), f("ENOTFOUND", sc), f("ENOTFOUND", sc),
                     self.OK, index_fn=drop_from_index(sc))
        # fasvd_st_tensor does not read config.json: without a sibling
        # _scale_inv it gives the raw codes (documented); `fasvd svdvals`
        # reads the config, which declares block quantisation, and refuses.
        self.cases[-1]["svdvals_api"] = self.ANY

        def regrid(shape, raw):
            return lambda st: (st.get(sc).__setitem__(2, shape), st.get(sc).__setitem__(3, raw))
        self.ds_edit("scale-wrong-shape", "scale_inv grid [3, 3] where [2, 3] is needed", sc,
                     regrid([3, 3], f32(np.ones(9))), f("ESHAPE", DSQA, sc),
                     f("ESHAPE", DSQA, sc), self.ANY)
        self.ds_edit("scale-transposed", "scale_inv grid [3, 2] (transposed)", sc,
                     regrid([3, 2], f32(np.ones(6))), f("ESHAPE", DSQA, sc),
                     f("ESHAPE", DSQA, sc), self.ANY)
        self.ds_edit("scale-1d", "scale_inv stored 1-D [6]", sc, regrid([6], f32(np.ones(6))),
                     f("ESHAPE", DSQA, sc), f("ESHAPE", DSQA, sc), self.ANY)
        self.ds_edit("scale-nan", "a NaN in scale_inv", sc,
                     lambda st: st.get(sc).__setitem__(3, f32([1, 1, np.nan, 1, 1, 1])),
                     f("ENONFINITE", sc), f("ENONFINITE", sc), self.OK)
        self.ds_edit("scale-inf", "+Inf in scale_inv", sc,
                     lambda st: st.get(sc).__setitem__(3, f32([1, np.inf, 1, 1, 1, 1])),
                     f("ENONFINITE", sc), f("ENONFINITE", sc), self.OK)
        self.ds_edit("scale-i32", "scale_inv of dtype I32", sc,
                     lambda st: st.get(sc).__setitem__(1, "I32"),
                     f("EDTYPE", sc), f("EDTYPE", sc), self.ANY)

        def fp8_nan(st):
            t = st.get(DSQA)
            b = bytearray(t[3])
            b[1234] = 0x7F  # e4m3fn NaN
            t[3] = bytes(b)
        self.ds_edit("fp8-nan", "an F8_E4M3 NaN code (0x7F) in q_a_proj", DSQA, fp8_nan,
                     f("ENONFINITE", DSQA), f("ENONFINITE", DSQA), self.OK)
        self.ds_edit("fp8-as-i8", "q_a_proj of dtype I8 (same size as F8_E4M3)", DSQA,
                     lambda st: st.get(DSQA).__setitem__(1, "I8"),
                     f("EDTYPE", DSQA), f("EDTYPE", DSQA), f("EDTYPE", DSQA))

        # sharded-set damage
        def shard_case(cid, what, fn, codes, names, info=True):
            d = self.new(cid, self.ds)
            fn(d)
            fl = self.fail(codes, *names)
            checks = {"svdvals": fl, "analyze": fl}
            if info:
                checks["info"] = fl
            self.add(cid, what, d, d, DSQA, **checks)

        def edit_index(fn):
            def g(d):
                ip = os.path.join(d, "model.safetensors.index.json")
                idx = json.load(open(ip))
                fn(idx)
                with open(ip, "w") as fh:
                    json.dump(idx, fh, indent=2)
            return g

        shard2 = "model-00002-of-00003.safetensors"
        shard_case("index-missing-shard", "the index names a shard that does not exist",
                   edit_index(lambda idx: idx["weight_map"].__setitem__(
                       DSKVA, "model-00009-of-00003.safetensors")),
                   "EIO ENOTFOUND", ("model-00009-of-00003.safetensors",))
        shard_case("index-dotdot", "a shard path ../outside.safetensors (which exists)",
                   edit_index(lambda idx: idx["weight_map"].__setitem__(
                       DSKVA, "../../outside.safetensors")),
                   "EFORMAT", ("outside.safetensors",))
        shard_case("index-absolute", "an absolute shard path",
                   edit_index(lambda idx: idx["weight_map"].__setitem__(
                       DSKVA, os.path.join(self.out, "outside.safetensors"))),
                   "EFORMAT", ("outside.safetensors",))
        shard_case("index-subdir-escape", "a shard path sub/../../x",
                   edit_index(lambda idx: idx["weight_map"].__setitem__(
                       DSKVA, "sub/../../outside.safetensors")),
                   "EFORMAT", ("outside.safetensors",))

        def symlink_out(d):
            p = os.path.join(d, shard2)
            os.unlink(p)
            os.symlink(os.path.join("..", "..", "outside.safetensors"), p)
        shard_case("index-symlink-outside", "a shard that is a symlink leaving the folder",
                   symlink_out, "EFORMAT", (shard2,))
        shard_case("index-not-json", "model.safetensors.index.json is not JSON",
                   lambda d: write_bytes(os.path.join(d, "model.safetensors.index.json"),
                                         b'{"weight_map": {'), "EFORMAT",
                   ("model.safetensors.index.json",))
        shard_case("index-not-object", "the index is a JSON array",
                   lambda d: write_bytes(os.path.join(d, "model.safetensors.index.json"),
                                         b"[]"), "EFORMAT", ("model.safetensors.index.json",))
        shard_case("index-no-weight-map", "the index has no weight_map",
                   edit_index(lambda idx: idx.pop("weight_map")), "EFORMAT",
                   ("model.safetensors.index.json",))
        shard_case("index-weight-map-array", "weight_map is an array",
                   edit_index(lambda idx: idx.__setitem__("weight_map", [shard2])), "EFORMAT",
                   ("model.safetensors.index.json",))
        shard_case("index-shard-not-string", "a weight_map value is a number",
                   edit_index(lambda idx: idx["weight_map"].__setitem__(DSKVA, 2)), "EFORMAT",
                   ("model.safetensors.index.json",))
        shard_case("index-absent-tensor", "the index lists a tensor its shard lacks",
                   edit_index(lambda idx: idx["weight_map"].__setitem__(
                       "model.layers.0.self_attn.not_there.weight", shard2)),
                   "EFORMAT ENOTFOUND", ("not_there",))
        shard_case("index-utf8", "invalid UTF-8 in the index",
                   lambda d: write_bytes(os.path.join(d, "model.safetensors.index.json"),
                                         open(os.path.join(d, "model.safetensors.index.json"),
                                              "rb").read().replace(b"model.layers.1",
                                                                   b"model.l\xffyers.1", 1)),
                   "EFORMAT", ("model.safetensors.index.json",))
        shard_case("index-empty", "the index file is empty",
                   lambda d: write_bytes(os.path.join(d, "model.safetensors.index.json"), b""),
                   "EFORMAT", ("model.safetensors.index.json",))

        def trunc_shard(d):
            p = os.path.join(d, shard2)
            b = open(p, "rb").read()
            write_bytes(p, b[:len(b) // 2])
        shard_case("shard-truncated", "one shard of three cut in half", trunc_shard,
                   "EFORMAT", (shard2,))

        def fifo(name):
            def g(d):
                p = os.path.join(d, name)
                os.unlink(p)
                os.mkfifo(p)
            return g
        d = self.new("fifo-index", self.ds)
        fifo("model.safetensors.index.json")(d)
        self.add("fifo-index", "model.safetensors.index.json is a FIFO (no writer)", d, d,
                 DSQA, svdvals=self.fail("EIO EFORMAT", "model.safetensors.index.json"))
        d = self.new("fifo-shard", self.ds)
        fifo(shard2)(d)
        self.add("fifo-shard", "a shard is a FIFO (no writer)", d, info=self.fail("EIO", shard2))

    # ------------------------------------------------------ paths and kinds

    def path_cases(self):
        def case(cid, what, fn, codes, names, svd_path=None):
            d = self.new(cid, self.llama)
            fn(d)
            fl = self.fail(codes, *names)
            ck = svd_path(d) if svd_path else d
            self.add(cid, what, d, ck, Q0, svdvals=fl, info=fl, analyze=fl)

        def rm(*names):
            def g(d):
                for n in names:
                    p = os.path.join(d, n)
                    shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
            return g

        def fifo(d):
            p = os.path.join(d, "model.safetensors")
            os.unlink(p)
            os.mkfifo(p)
        case("fifo-checkpoint", "model.safetensors is a FIFO (no writer)", fifo, "EIO",
             ("model.safetensors",), lambda d: os.path.join(d, "model.safetensors"))

        def ckdir(d):
            rm("model.safetensors")(d)
            os.mkdir(os.path.join(d, "model.safetensors"))
        case("checkpoint-is-dir", "model.safetensors is a folder", ckdir, "EIO ENOTFOUND",
             ("model.safetensors",), lambda d: os.path.join(d, "model.safetensors"))
        case("checkpoint-devzero", "model.safetensors is a symlink to /dev/zero",
             lambda d: (rm("model.safetensors")(d),
                        os.symlink("/dev/zero", os.path.join(d, "model.safetensors"))),
             "EIO", ("model.safetensors",), lambda d: os.path.join(d, "model.safetensors"))
        case("no-checkpoint", "a folder with config.json only", rm("model.safetensors"),
             "ENOTFOUND", ())
        case("two-checkpoints", "two *.safetensors, no index, no model.safetensors",
             lambda d: (os.rename(os.path.join(d, "model.safetensors"),
                                  os.path.join(d, "a.safetensors")),
                        shutil.copy(os.path.join(d, "a.safetensors"),
                                    os.path.join(d, "b.safetensors"))),
             "EFORMAT", ())
        case("dangling-symlink", "model.safetensors is a dangling symlink",
             lambda d: (rm("model.safetensors")(d),
                        os.symlink("nowhere.safetensors", os.path.join(d, "model.safetensors"))),
             "EIO ENOTFOUND", ("model.safetensors",),
             lambda d: os.path.join(d, "model.safetensors"))

        d = os.path.join(self.root, "does-not-exist")
        fl = self.fail("EIO ENOTFOUND", "does-not-exist")
        self.add("path-missing", "the model folder does not exist", d, d, Q0, svdvals=fl,
                 info=fl, analyze=fl)

        def fifo_cfg(d):
            p = os.path.join(d, "config.json")
            os.unlink(p)
            os.mkfifo(p)
        d = self.new("fifo-config", self.llama)
        fifo_cfg(d)
        fl = self.fail("EIO EFORMAT", "config.json")
        self.add("fifo-config", "config.json is a FIFO (no writer)", d, info=fl, analyze=fl)
        d = self.new("config-devzero", self.llama)
        os.unlink(os.path.join(d, "config.json"))
        os.symlink("/dev/zero", os.path.join(d, "config.json"))
        fl = self.fail("EIO EFORMAT ERANGE", "config.json")
        self.add("config-devzero", "config.json is a symlink to /dev/zero", d, info=fl,
                 analyze=fl)

    # ------------------------------------------------------------ configs

    def config_cases(self):
        def cfg_case(cid, what, base, fn, codes, names=("config.json",), info=None,
                     ana=None):
            d = self.new(cid, base)
            p = os.path.join(d, "config.json")
            if fn is None:
                os.unlink(p)
            else:
                text = fn(json.load(open(p)))
                write_bytes(p, text if isinstance(text, bytes) else json.dumps(text).encode())
            fl = self.fail(codes, *names)
            self.add(cid, what, d, **{"analyze": ana or fl, "info": info or fl})

        def setk(**kw):
            def fn(c):
                for k, v in kw.items():
                    if v is KeyError:
                        c.pop(k, None)
                    else:
                        c[k] = v
                return c
            return fn

        L = self.llama
        cfg_case("config-missing", "no config.json", L, None, "ENOTFOUND")
        cfg_case("config-empty", "config.json is empty", L, lambda c: b"", "EFORMAT")
        cfg_case("config-not-json", "config.json is not JSON", L,
                 lambda c: b'{"model_type": "llama",', "EFORMAT")
        cfg_case("config-array", "config.json is an array", L, lambda c: [c], "EFORMAT")
        cfg_case("config-utf8", "invalid UTF-8 in config.json", L,
                 lambda c: json.dumps(c).encode().replace(b'"llama"', b'"ll\xe9ama"'),
                 "EFORMAT")
        cfg_case("config-no-model-type", "no model_type and no architectures", L,
                 setk(model_type=KeyError, architectures=KeyError), "EARCH",
                 ("config.json", "model_type"))
        cfg_case("config-architectures-unknown", "no model_type, unknown architectures", L,
                 setk(model_type=KeyError, architectures=["FalconMamba9000ForCausalLM"]),
                 "EARCH", ("config.json", "model_type"))
        cfg_case("config-deep", "config.json nested 100000 deep", L,
                 lambda c: b"[" * 100000 + b"]" * 100000, "EFORMAT")
        cfg_case("config-dup-key", "num_attention_heads given twice", L,
                 lambda c: json.dumps(c).encode()[:-1] + b', "num_attention_heads": 2}',
                 "EFORMAT EARCH", ("config.json",))
        cfg_case("config-unknown-arch", "model_type \"falcon_mamba_9000\"", L,
                 setk(model_type="falcon_mamba_9000"), "EARCH",
                 ("config.json", "falcon_mamba_9000"))
        cfg_case("config-model-type-int", "model_type is a number", L, setk(model_type=7),
                 "EARCH", ("config.json", "model_type"))
        cfg_case("config-missing-heads", "no num_attention_heads", L,
                 setk(num_attention_heads=KeyError), "EARCH",
                 ("config.json", "num_attention_heads"))
        cfg_case("config-missing-hidden", "no hidden_size", L, setk(hidden_size=KeyError),
                 "EARCH", ("config.json", "hidden_size"))
        cfg_case("config-missing-layers", "no num_hidden_layers", L,
                 setk(num_hidden_layers=KeyError), "EARCH", ("config.json", "num_hidden_layers"))
        cfg_case("config-zero-heads", "num_attention_heads 0", L,
                 setk(num_attention_heads=0), "EARCH", ("config.json", "num_attention_heads"))
        cfg_case("config-zero-layers", "num_hidden_layers 0", L, setk(num_hidden_layers=0),
                 "EARCH", ("config.json", "num_hidden_layers"))
        cfg_case("config-zero-kv", "num_key_value_heads 0", L, setk(num_key_value_heads=0),
                 "EARCH", ("config.json", "num_key_value_heads"))
        cfg_case("config-neg-hidden", "hidden_size -32", L, setk(hidden_size=-32), "EARCH",
                 ("config.json", "hidden_size"))
        cfg_case("config-string-int", "num_attention_heads \"4\" (a string)", L,
                 setk(num_attention_heads="4"), "EARCH", ("config.json", "num_attention_heads"))
        cfg_case("config-float", "head_dim 8.5", L, setk(head_dim=8.5), "EARCH",
                 ("config.json", "head_dim"))
        cfg_case("config-huge", "hidden_size 2^62", L, setk(hidden_size=1 << 62), "EARCH",
                 ("config.json", "hidden_size"))
        cfg_case("config-kv-not-divisor", "4 heads over 3 KV heads", L,
                 setk(num_key_value_heads=3), "EARCH", ("config.json",))
        cfg_case("config-kv-above-heads", "8 KV heads for 4 heads", L,
                 setk(num_key_value_heads=8), "EARCH", ("config.json",))
        cfg_case("config-head-dim-wrong", "head_dim 16 (tensors have 8)", L,
                 setk(head_dim=16), "EARCH", ("config.json",))
        cfg_case("config-hidden-wrong", "hidden_size 64 (tensors have 32)", L,
                 setk(hidden_size=64), "EARCH", ("config.json",))
        cfg_case("config-more-layers", "num_hidden_layers 3 (checkpoint has 2)", L,
                 setk(num_hidden_layers=3), "ENOTFOUND",
                 ("model.layers.2.",), info=self.OK)
        cfg_case("config-absurd-layers", "num_hidden_layers 1073741824", L,
                 setk(num_hidden_layers=1073741824), "ENOTFOUND EARCH ERANGE",
                 (), info=self.ANY)
        cfg_case("config-nested-broken", "text_config is a string", L,
                 lambda c: {"model_type": "llama", "text_config": "nope"}, "EARCH",
                 ("config.json",))
        cfg_case("config-gpt2-heads", "gpt2 n_head 3 (hidden 32 not divisible)", self.gpt2,
                 setk(n_head=3), "EARCH", ("config.json",))
        D = self.ds
        cfg_case("config-mla-kv-lora", "kv_lora_rank 100 (tensors have 144)", D,
                 setk(kv_lora_rank=100), "EARCH", ("config.json",))
        cfg_case("config-mla-rope-zero", "qk_rope_head_dim 0", D, setk(qk_rope_head_dim=0),
                 "EARCH", ("config.json", "qk_rope_head_dim"))
        cfg_case("config-mla-no-v-head", "no v_head_dim", D, setk(v_head_dim=KeyError),
                 "EARCH", ("config.json", "v_head_dim"))

        def qc(**kw):
            def fn(c):
                c["quantization_config"].update(kw)
                return c
            return fn
        cfg_case("config-block-zero", "weight_block_size [0, 128]", D,
                 qc(weight_block_size=[0, 128]), "EARCH", ("config.json", "weight_block_size"))
        cfg_case("config-block-short", "weight_block_size [128]", D,
                 qc(weight_block_size=[128]), "EARCH", ("config.json", "weight_block_size"))
        cfg_case("config-block-wrong", "weight_block_size [64, 64] (grids are for 128)", D,
                 qc(weight_block_size=[64, 64]), "ESHAPE EARCH", ("scale_inv",),
                 info=self.ANY)
        cfg_case("config-quant-gptq", "quant_method \"gptq\"", D, qc(quant_method="gptq"),
                 "EARCH", ("config.json", "gptq"))

    # ---------------------------------------------------------------- GGUF

    def gguf_cases(self):
        """GGUF files (docs/gguf.md), through the C API only (`gguf`:
        fasvd_gguf_open + fasvd_gguf_tensor + fasvd_svdvals): the commands
        do not take GGUF files yet. The writer is the fuzz corpus's."""
        rng = np.random.default_rng(13)
        Q = "blk.0.attn_q.weight"
        kvs = [("general.architecture", 8, "llama"), ("llama.block_count", 4, 1)]

        def tensors(ne0=256, qtype=12, q_raw=None):
            raw = q_raw if q_raw is not None else GG.gg_blocks(rng, 12, 8, 256)
            return [(Q, [ne0, 8], qtype, raw),
                    ("blk.0.attn_k.weight", [64, 4], 8, GG.gg_blocks(rng, 8, 4, 64))]

        base = GG.gguf_bytes(kvs, tensors())

        def case(cid, what, data, codes, names=(Q,)):
            d = os.path.join(self.root, cid)
            os.makedirs(d)
            p = os.path.join(d, "model.gguf")
            write_bytes(p, data)
            # a decoding failure names the tensor (as nan-weight), the others the file too
            file = () if codes == "ENONFINITE" else ("model.gguf",)
            exp = self.OK if codes == "ok" else self.fail(codes, *(file + tuple(names)))
            self.add(cid, what, d, p, Q, gguf=exp)

        case("gguf-valid", "a valid Q4_K / Q8_0 file", base, "ok")
        case("gguf-empty", "the file is empty", b"", "EFORMAT", names=())
        case("gguf-bad-magic", "magic GGUX", b"GGUX" + base[4:], "EFORMAT", names=())
        case("gguf-version-1", "version 1", base[:4] + struct.pack("<I", 1) + base[8:],
             "EFORMAT", names=("version",))
        case("gguf-counts-huge", "tensor and metadata counts 2^64 - 1",
             base[:8] + b"\xff" * 16 + base[24:], "EFORMAT", names=())
        case("gguf-trunc-infos", "cut inside the tensor infos", base[:120], "EFORMAT", names=())
        case("gguf-trunc-data", "the last data byte missing", base[:-1], "EFORMAT",
             names=("blk.0.attn_k.weight",))
        case("gguf-key-huge", "a key length of 2^63",
             base[:24] + struct.pack("<Q", 1 << 63) + base[32:], "EFORMAT", names=())
        case("gguf-array-huge", "an array of 2^60 UINT64",
             GG.gguf_bytes(kvs + [("big", 9, (10, []))], tensors()).replace(
                 struct.pack("<IQ", 10, 0), struct.pack("<IQ", 10, 1 << 60)),
             "EFORMAT", names=("big",))
        deep = (0, [])
        for _ in range(12):
            deep = (9, [deep])
        case("gguf-arrays-deep", "arrays nested 12 deep",
             GG.gguf_bytes(kvs + [("deep", 9, deep)], tensors()), "EFORMAT", names=("deep",))
        case("gguf-dup-key", "a metadata key twice",
             GG.gguf_bytes(kvs + kvs[:1], tensors()), "EFORMAT",
             names=("general.architecture",))
        case("gguf-dup-tensor", "a tensor name twice",
             GG.gguf_bytes(kvs, tensors() + tensors()[:1]), "EFORMAT")
        case("gguf-name-long", "a tensor name of 64 bytes",
             GG.gguf_bytes(kvs, [("x" * 64, [32], 0, bytes(128))]), "EFORMAT", names=())
        case("gguf-dims-5", "a tensor with 5 dimensions",
             GG.gguf_bytes(kvs, [(Q, [256, 8, 1, 1, 1], 0, bytes(8192))]), "EFORMAT")
        case("gguf-dim-zero", "a dimension of 0",
             GG.gguf_bytes(kvs, [(Q, [256, 0], 0, b"")]), "EFORMAT")
        case("gguf-numel-overflow", "element count overflowing 64 bits",
             GG.gguf_bytes(kvs, [(Q, [1 << 32, 1 << 32, 1 << 32], 0, b"")]), "EFORMAT")
        case("gguf-type-unknown", "ggml type id 4 (removed from the format)",
             GG.gguf_bytes(kvs, tensors(qtype=4)), "EFORMAT")
        case("gguf-partial-block", "Q4_K rows of 128 elements (half a block)",
             GG.gguf_bytes(kvs, tensors(ne0=128)), "EFORMAT")
        case("gguf-alignment-bad", "general.alignment 48",
             GG.gguf_bytes(kvs + [("general.alignment", 4, 48)], tensors()), "EFORMAT",
             names=("general.alignment",))
        mis = bytearray(base)
        off = base.index(struct.pack("<I", 8) + struct.pack("<Q", 8 * 144))
        mis[off + 4] += 4
        case("gguf-offset-misaligned", "a tensor offset 4 bytes past an aligned one",
             bytes(mis), "EFORMAT", names=("blk.0.attn_k.weight",))
        ovl = bytearray(base)
        ovl[off + 4:off + 12] = bytes(8)
        case("gguf-overlap", "two tensors at offset 0", bytes(ovl), "EFORMAT",
             names=("overlaps",))
        nan = bytearray(GG.gg_blocks(rng, 12, 8, 256))
        nan[1] = 0x7E
        case("gguf-nan-scale", "a NaN d in a Q4_K block of the queried tensor",
             GG.gguf_bytes(kvs, tensors(q_raw=bytes(nan))), "ENONFINITE")
        case("gguf-iq2", "an IQ2_XXS tensor (listed, not decoded)",
             GG.gguf_bytes(kvs, [(Q, [256, 8], 16, GG.gg_blocks(rng, 16, 8, 256))]), "EDTYPE",
             names=(Q, "IQ2_XXS"))
        self.gguf_split_cases(rng, kvs, Q)

    def gguf_split_cases(self, rng, kvs, Q):
        def part(no, count, name):
            pk = [("split.no", 2, no), ("split.count", 2, count)]
            return GG.gguf_bytes(pk, [(name, [64, 4], 8, GG.gg_blocks(rng, 8, 4, 64))])

        def split_case(cid, what, opened, codes, names, drop=(), link=None):
            d = os.path.join(self.root, cid)
            os.makedirs(d)
            for k, name in ((0, Q), (1, "blk.0.attn_k.weight")):
                f = os.path.join(d, "m-%05d-of-00002.gguf" % (k + 1))
                if k in drop:
                    continue
                write_bytes(f, part(k, 2, name))
            if link:
                os.symlink(link, os.path.join(d, "m-00002-of-00002.gguf"))
            p = os.path.join(d, opened)
            exp = self.OK if codes == "ok" else self.fail(codes, *names)
            self.add(cid, what, d, p, Q, gguf=exp)

        split_case("gguf-split-valid", "a model split in two files", "m-00001-of-00002.gguf",
                   "ok", ())
        split_case("gguf-split-missing", "the second part is missing", "m-00001-of-00002.gguf",
                   "EIO", ("m-00002-of-00002.gguf",), drop=(1,))
        split_case("gguf-split-second", "the second part opened", "m-00002-of-00002.gguf",
                   "EFORMAT", ("m-00002-of-00002.gguf", "first"))
        split_case("gguf-split-outside", "the second part is a symlink out of the folder",
                   "m-00001-of-00002.gguf", "EIO", ("m-00002-of-00002.gguf",), drop=(1,),
                   link=os.path.join(self.out, "outside.safetensors"))

    # ------------------------------------------------------------- outputs

    def output_cases(self):
        d = self.new("output-base", self.llama)

        def out_case(cid, what, args, codes, names):
            self.add(cid, what, d, analyze=self.fail(codes, *names), analyze_args=args)

        out_case("output-no-parent", "-o in a folder that does not exist",
                 {"out": "no/such/dir/spectra.safetensors"}, "EIO", ("spectra.safetensors",))
        out_case("output-parent-is-file", "-o under a regular file",
                 {"out": "@file/spectra.safetensors"}, "EIO", ("spectra.safetensors",))
        out_case("output-is-dir", "-o names an existing folder",
                 {"out": "@dir"}, "EIO", ("@dir",))
        out_case("output-readonly", "-o in a read-only folder (skipped as root)",
                 {"out": "@readonly/spectra.safetensors"}, "EIO", ("spectra.safetensors",))
        out_case("output-json-unwritable", "--json in a folder that does not exist",
                 {"out": "spectra.safetensors", "json": "no/such/dir/s.json"}, "EIO",
                 ("s.json",))
        out_case("output-csv-unwritable", "--csv under a regular file",
                 {"out": "spectra.safetensors", "csv": "@file/s.csv"}, "EIO", ("s.csv",))
        out_case("output-csv-unwritable-json-ok", "--json writable, --csv under a file",
                 {"out": "spectra.safetensors", "json": "s.json", "csv": "@file/s.csv"},
                 "EIO", ("s.csv",))

    def apply_timeouts(self):
        # A correct implementation refuses these at once (fstat / O_NONBLOCK);
        # a hang is the bug, so do not wait long for it.
        for c in self.cases:
            if c["id"].startswith("fifo-"):
                c["timeout"] = 3

    def apply_xfail(self):
        ids = {c["id"]: c for c in self.cases}
        for (cid, cmd), why in XFAIL.items():
            assert cid in ids and cmd in ids[cid], (cid, cmd)
            ids[cid][cmd] = dict(ids[cid][cmd], xfail=why)  # (OK/ANY are shared)

    def write_table(self, path):
        def fmt(e):
            if e is None:
                return "–"
            s = {"ok": "ok", "any": "no crash"}.get(e["expect"]) or "/".join(e["codes"])
            return s + (" (known bug)" if e.get("xfail") else "")
        with open(path, "w") as fh:
            fh.write("| case | what is broken | svdvals | info | analyze |\n")
            fh.write("| --- | --- | --- | --- | --- |\n")
            for c in self.cases:
                if "gguf" in c:
                    continue
                fh.write("| `%s` | %s | %s | %s | %s |\n" % (
                    c["id"], c["what"].replace("|", "\\|"), fmt(c.get("svdvals")),
                    fmt(c.get("info")), fmt(c.get("analyze"))))
            fh.write("\nGGUF files, through the C API (`gguf`: fasvd_gguf_open, "
                     "fasvd_gguf_tensor, fasvd_svdvals):\n\n")
            fh.write("| case | what is broken | gguf |\n| --- | --- | --- |\n")
            for c in self.cases:
                if "gguf" in c:
                    fh.write("| `%s` | %s | %s |\n" % (c["id"], c["what"], fmt(c["gguf"])))

    def write_manifest(self, path):
        with open(path, "w") as fh:
            json.dump({"root": self.out, "cases": self.cases}, fh, indent=1)
            fh.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixture-tool", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--manifest")
    ap.add_argument("--table", help="also write the catalogue as a Markdown table "
                                    "(for docs/hostile-inputs.md)")
    a = ap.parse_args()
    g = Gen(a.fixture_tool, a.out)
    g.setup()
    g.file_cases()
    g.tensor_cases()
    g.fp8_cases()
    g.path_cases()
    g.config_cases()
    g.output_cases()
    g.gguf_cases()
    g.apply_timeouts()
    g.apply_xfail()
    ids = [c["id"] for c in g.cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    g.write_manifest(a.manifest or os.path.join(g.out, "manifest.json"))
    if a.table:
        g.write_table(a.table)


if __name__ == "__main__":
    main()
