"""fasvd.open() on a GGUF file: dimensions from its metadata, tensors
dequantised as the gguf package (PyPI) dequantises them, and the spectra of
the same weights as a Hugging Face folder. Skipped without the gguf package."""

import json
import os
import struct

import numpy as np
import pytest

from support import require_library

require_library()

import fasvd  # noqa: E402

gguf = pytest.importorskip("gguf", reason="the gguf Python package is not installed")
import gguf.quants  # noqa: E402

H, KV, HD, HIDDEN = 4, 2, 16, 64


def write_pair(tmp_path, qtype):
    """A two-layer qwen2 model as GGUF (weights in `qtype`) and the same
    dequantised weights as a Hugging Face folder."""
    rng = np.random.default_rng(7)
    path = str(tmp_path / "m.gguf")
    w = gguf.GGUFWriter(path, "qwen2")
    w.add_block_count(2)
    w.add_embedding_length(HIDDEN)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    hf = {}
    shapes = {"attn_q": ("q_proj", H * HD, HIDDEN), "attn_k": ("k_proj", KV * HD, HIDDEN),
              "attn_v": ("v_proj", KV * HD, HIDDEN), "attn_output": ("o_proj", HIDDEN, H * HD)}
    for layer in range(2):
        for g, (h, r, c) in shapes.items():
            a = rng.standard_normal((r, c)).astype(np.float32)
            q = gguf.quants.quantize(a, qtype)
            w.add_tensor("blk.%d.%s.weight" % (layer, g), q, raw_dtype=qtype)
            hf["model.layers.%d.self_attn.%s.weight" % (layer, h)] = \
                gguf.quants.dequantize(q, qtype).astype(np.float32)
        n = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
        w.add_tensor("blk.%d.attn_norm.weight" % layer, n)
        hf["model.layers.%d.input_layernorm.weight" % layer] = n
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": HIDDEN, "num_hidden_layers": 2,
        "num_attention_heads": H, "num_key_value_heads": KV}))
    header, blobs, off = {}, [], 0
    for name in sorted(hf):
        b = hf[name].tobytes()
        header[name] = {"dtype": "F32", "shape": list(hf[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return path, str(folder), hf


def test_open_gguf_matches_folder(tmp_path):
    path, folder, hf = write_pair(tmp_path, gguf.GGMLQuantizationType.Q4_0)
    with fasvd.open(path) as m, fasvd.open(folder) as f:
        assert m.info["model_type"] == "qwen2" and m.info["n_layers"] == 2
        assert (m.info["n_heads"], m.info["n_kv_heads"], m.info["head_dim"]) == (H, KV, HD)
        assert m.info["weight_dtypes"] == ["Q4_0"]
        assert "blk.1.attn_output.weight" in m.tensor_names()
        np.testing.assert_array_equal(m.tensor("blk.0.attn_k.weight"),
                                      hf["model.layers.0.self_attn.k_proj.weight"])
        a, b = m.analyze(compute="f64"), f.analyze(compute="f64")
        for layer in (0, 1):
            for name, s in b.heads[layer].items():
                np.testing.assert_allclose(a.heads[layer][name], s, rtol=0,
                                           atol=1e-9 * float(np.max(s)))


def test_open_gguf_folder_and_errors(tmp_path):
    path, _, _ = write_pair(tmp_path, gguf.GGMLQuantizationType.Q8_0)
    with fasvd.open(str(tmp_path)) as m:  # a folder holding one GGUF, no config.json
        assert m.info["config_path"] == path
    with fasvd.open(path) as m, pytest.raises(fasvd.NotFoundError, match="nope"):
        m.tensor("nope")


def test_truncate_gguf(tmp_path):
    """fasvd.truncate of a GGUF model: the Hugging Face names, the ggml type
    reported, the optimum loss of numpy's SVD of the package's
    dequantisation, and the weights not selected written dequantised."""
    path, folder, hf = write_pair(tmp_path, gguf.GGMLQuantizationType.Q4_0)
    out = str(tmp_path / "lr")
    entries = fasvd.truncate(path, out, rank=3, tensors=["blk.1.*"])
    assert sorted(e["name"] for e in entries) == sorted(
        n for n in hf if n.startswith("model.layers.1.") and n.endswith("proj.weight"))
    for e in entries:
        assert e["in_dtype"] == "Q4_0" and e["dtype"] == "F32" and not e["skipped"]
        s = np.linalg.svd(hf[e["name"]].astype(np.float64), compute_uv=False)
        want = np.sum(s[3:] ** 2) / np.sum(s ** 2)
        assert abs(e["report"]["energy_lost"] - want) <= 1e-9 * want
    name = "model.layers.0.self_attn.q_proj.weight"
    with fasvd.open(out) as m:
        assert np.array_equal(m.tensor(name), hf[name].astype(np.float64))
    with open(os.path.join(out, "config.json")) as f:
        sec = json.load(f)["fasvd_lowrank"]
    assert sec["tensors"]["model.layers.1.self_attn.q_proj.weight"]["gguf_name"] == \
        "blk.1.attn_q.weight"
