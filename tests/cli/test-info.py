#!/usr/bin/python3
"""CLI tests of `fasvd info` (TAP output).

usage: test-info.py PATH/TO/fasvd

Runs `fasvd info` (text and --json) on the real stories260K checkpoint and on
checkpoints written here with numpy alone (a GPT-2 layout with the
"transformer." prefix and a missing tensor, a sharded DeepSeek-V3-style FP8
checkpoint with a scale_inv in another shard and one missing), and checks
the architecture, dimensions, the tensors found and missing and the bytes
to read against values computed here from the safetensors headers. Errors:
exit status 1..125 (2 for usage), nothing on stdout, exactly one line
"fasvd: ..." on stderr naming the file / key.
"""
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np

from clitap import finish, report, run

ROOT = os.environ.get("FASVD_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
STORIES = os.path.join(ROOT, "tests", "data", "stories260K")


def write_st(path, tensors):
    """tensors: name -> (dtype string, shape, bytes)."""
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        dt, shape, data = tensors[name]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def header_sizes(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in h.items()
            if k != "__metadata__"}


def f32(rng, *shape):
    return ("F32", shape, rng.standard_normal(shape).astype("<f4").tobytes())


def check_error(name, args, status, words):
    rc, out, err = run(*args)
    lines = err.splitlines()
    ok = rc == status and out == "" and len(lines) == 1 and lines[0].startswith("fasvd: ")
    ok = ok and all(w in err for w in words)
    report(ok, name, "rc=%d stdout=%r stderr=%r" % (rc, out, err))


def main():
    rng = np.random.default_rng(3)
    tmp = tempfile.mkdtemp(prefix="fasvd-info-")
    try:
        # ---------------------------------------------------- stories260K
        rc, out, err = run("info", STORIES)
        report(rc == 0 and err == "", "stories260K text exits 0", err)
        want = ["architecture llama", "layers       5", "8 query, 4 key/value (GQA: 2 query",
                "head_dim     8", "Q 8x64, K 8x64, V 8x64, O 8x64", "25 needed, 25 found, 0 missing",
                "(247040 bytes)", "prefix       model.layers.%d."]
        miss = [w for w in want if w not in out]
        report(not miss, "stories260K text content", "missing %r in\n%s" % (miss, out))

        rc, out, err = run("info", STORIES, "--json")
        try:
            j = json.loads(out)
        except ValueError as e:
            j = None
            report(False, "stories260K --json parses", str(e) + out)
        if j is not None:
            sizes = header_sizes(os.path.join(STORIES, "model.safetensors"))
            expect_bytes = sum(sizes[t["name"]] for t in j["tensors"])
            ok = (j["architecture"] == "llama" and j["layers"] == 5 and j["heads"] == 8
                  and j["kv_heads"] == 4 and j["head_dim"] == 8 and j["hidden"] == 64
                  and j["per_head"]["Q"] == [8, 64] and j["per_head"]["O"] == [8, 64]
                  and j["tensors_needed"] == 25 and j["tensors_missing"] == 0
                  and j["missing"] == [] and j["weight_dtypes"] == ["F32"]
                  and j["weight_block_size"] is None and j["mla"] is False
                  and j["bytes_needed"] == expect_bytes == 247040
                  and len(j["tensors"]) == 25
                  and all(t["present"] and t["dtype"] == "F32" for t in j["tensors"]))
            report(ok, "stories260K --json values", json.dumps(j)[:2000])
            roles = sorted({t["role"] for t in j["tensors"]})
            report(roles == ["input_norm", "k_proj", "o_proj", "q_proj", "v_proj"],
                   "stories260K roles", roles)

        # ---------------------------------- GPT-2 (Conv1D), one tensor missing
        g = os.path.join(tmp, "gpt2")
        os.mkdir(g)
        with open(os.path.join(g, "config.json"), "w") as f:
            json.dump({"model_type": "gpt2", "n_embd": 16, "n_layer": 2, "n_head": 4}, f)
        t = {}
        for layer in range(2):
            p = "transformer.h.%d." % layer
            t[p + "attn.c_attn.weight"] = f32(rng, 16, 48)
            t[p + "attn.c_attn.bias"] = f32(rng, 48)
            if layer == 0:
                t[p + "attn.c_proj.weight"] = f32(rng, 16, 16)
            t[p + "ln_1.weight"] = f32(rng, 16)
            t[p + "ln_1.bias"] = f32(rng, 16)
        write_st(os.path.join(g, "model.safetensors"), t)
        rc, out, err = run("info", g)
        ok = (rc == 0 and "architecture gpt2" in out and "prefix       transformer.h.%d." in out
              and "4 query, 4 key/value (MHA)" in out and "1 missing" in out
              and "missing: transformer.h.1.attn.c_proj.weight (layer 1 o_proj)" in out
              and "biases       present" in out and "LayerNorm" in out)
        report(ok, "gpt2 text: prefix, MHA, missing tensor listed, biases", out + err)
        rc, out, err = run("info", g, "--json")
        j = json.loads(out) if rc == 0 else {}
        sizes = header_sizes(os.path.join(g, "model.safetensors"))
        present = [x for x in j.get("tensors", []) if x["present"]]
        ok = (rc == 0 and j["missing"] == ["transformer.h.1.attn.c_proj.weight"]
              and j["tensors_needed"] == 6 and j["tensors_found"] == 5
              and j["per_head"]["Q"] == [4, 16] and j["per_head"]["O"] == [4, 16]
              and j["bytes_needed"] == sum(sizes[x["name"]] for x in present)
              and any(x["role"] == "qkv_proj" and x["shape"] == [16, 48] and x.get("has_bias")
                      for x in present))
        report(ok, "gpt2 --json: missing, shapes as stored, bytes", out + err)

        # ----------------- DeepSeek-V3 style: FP8, shards, scales elsewhere
        d = os.path.join(tmp, "dsv3")
        os.mkdir(d)
        H, hid, ql, kvl, nope, rope, vh = 2, 200, 136, 130, 16, 8, 12
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"model_type": "deepseek_v3", "hidden_size": hid, "num_hidden_layers": 1,
                       "num_attention_heads": H, "num_key_value_heads": H, "q_lora_rank": ql,
                       "kv_lora_rank": kvl, "qk_nope_head_dim": nope, "qk_rope_head_dim": rope,
                       "v_head_dim": vh,
                       "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                               "weight_block_size": [128, 128]}}, f)
        shapes = {"q_a_proj": (ql, hid), "q_b_proj": (H * (nope + rope), ql),
                  "kv_a_proj_with_mqa": (kvl + rope, hid), "kv_b_proj": (H * (nope + vh), kvl),
                  "o_proj": (hid, H * vh)}
        shard = [{}, {}]
        wmap = {}
        for i, (k, (r, c)) in enumerate(sorted(shapes.items())):
            name = "model.layers.0.self_attn.%s.weight" % k
            codes = rng.integers(0, 0x70, size=(r, c), dtype=np.uint8)
            shard[i % 2][name] = ("F8_E4M3", (r, c), codes.tobytes())
            wmap[name] = i % 2
            if k == "o_proj":
                continue  # its scale_inv is missing
            gr, gc = -(-r // 128), -(-c // 128)
            s = ("F32", (gr, gc), (np.ones((gr, gc)) * 0.01).astype("<f4").tobytes())
            shard[(i + 1) % 2][name + "_scale_inv"] = s  # in the other shard
            wmap[name + "_scale_inv"] = (i + 1) % 2
        for name, n in [("model.layers.0.input_layernorm.weight", hid),
                        ("model.layers.0.self_attn.q_a_layernorm.weight", ql),
                        ("model.layers.0.self_attn.kv_a_layernorm.weight", kvl)]:
            shard[0][name] = f32(rng, n)
            wmap[name] = 0
        files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        for k in range(2):
            write_st(os.path.join(d, files[k]), shard[k])
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": {n: files[k] for n, k in wmap.items()}}, f)
        rc, out, err = run("info", d, "--json")
        j = json.loads(out) if rc == 0 else {}
        sizes = {}
        for k in range(2):
            sizes.update(header_sizes(os.path.join(d, files[k])))
        expect = sum(v for n, v in sizes.items())
        scaled = [x for x in j.get("tensors", []) if "scale_inv" in x]
        ok = (rc == 0 and j["mla"] is True and j["architecture"] == "deepseek_v3"
              and j["weight_block_size"] == [128, 128] and j["weight_dtypes"] == ["F8_E4M3"]
              and j["q_lora_rank"] == ql and j["kv_lora_rank"] == kvl and j["shards"] == 2
              and j["per_head"]["Q"] == [nope, ql] and j["per_head"]["Q_pe"] == [rope, ql]
              and j["per_head"]["K"] == [nope, kvl] and j["per_head"]["V"] == [vh, kvl]
              and j["per_head"]["O"] == [vh, hid]
              and j["missing"] == ["model.layers.0.self_attn.o_proj.weight_scale_inv"]
              and j["tensors_needed"] == 8 + 5 and j["tensors_missing"] == 1
              and j["bytes_needed"] == expect and len(scaled) == 5
              and all(x["scale_inv"]["present"] == (x["role"] != "o_proj") for x in scaled)
              and all(x["scale_inv"]["file"] != x["file"] for x in scaled
                      if x["scale_inv"]["present"]))
        report(ok, "deepseek_v3 FP8 sharded --json", out + err)
        rc, out, err = run("info", d)
        ok = (rc == 0 and "multi-head latent attention" in out
              and "q_lora_rank 136, kv_lora_rank 130, shared RoPE key 8" in out
              and "F8_E4M3, 128x128 block scales" in out
              and "missing: model.layers.0.self_attn.o_proj.weight_scale_inv" in out)
        report(ok, "deepseek_v3 text", out + err)

        # ------------------------------------------------------- errors
        check_error("nonexistent folder", ["info", os.path.join(tmp, "nope")], 20, ["nope"])
        e = os.path.join(tmp, "unknown")
        os.mkdir(e)
        with open(os.path.join(e, "config.json"), "w") as f:
            f.write('{"model_type": "mamba", "hidden_size": 16}')
        shutil.copy(os.path.join(g, "model.safetensors"), e)
        check_error("unknown model_type", ["info", e], 21,
                    ["config.json", "mamba", "deepseek_v3", "gpt2"])
        with open(os.path.join(e, "config.json"), "w") as f:
            f.write('{"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4}')
        check_error("config not matching tensor shapes", ["info", e], 21,
                    ["transformer.h.0.attn.c_attn.weight", "n_embd = 32", "config.json"])
        with open(os.path.join(e, "config.json"), "w") as f:
            f.write('{"model_type": "gpt2", "n_embd": 16, "n_layer": 2, "n_head": 0}')
        check_error("zero heads", ["info", e], 21, ["'n_head'", "config.json"])
        os.remove(os.path.join(e, "config.json"))
        check_error("no config.json", ["info", e], 20, ["config.json"])
        check_error("no argument", ["info"], 2, ["info"])
        check_error("unknown option", ["info", STORIES, "--frobnicate"], 2, ["frobnicate"])
        rc, out, err = run("help", "info")
        report(rc == 0 and out.startswith("usage: fasvd info") and err == "", "help info")
        rc, out, err = run("--help")
        report(rc == 0 and "info" in out, "info listed in --help")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
