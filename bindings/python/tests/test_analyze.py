"""fasvd.open(...).analyze(): against an independent float64 reference that
materialises every fused and stacked matrix from the raw checkpoint, against
the CLI's own spectra file, progress / cancel / resume, and errors."""

import json
import os
import signal
import struct
import subprocess

import numpy as np
import pytest

from support import (cli_path, read_checkpoint, reference_layer, reference_spectra,
                     require_library, svals, write_fixture)

require_library()

import fasvd  # noqa: E402

TAUS = (0.01, 0.001)
CONTRACT = {"f64": 1e-10, "f32": 1e-4}  # docs/accuracy.md, relative to sigma_1


def view(res, layer, key):
    kind, name = key.split(".", 1)
    return {"head": res.heads, "stack": res.stacked, "sub": res.subspaces}[kind][layer][name]


def compare_to_reference(res, model_dir, compute, fold=True, weights=None):
    """Check res against the float64 reference of model_dir's checkpoint (or
    of ``weights``, with model_dir's config)."""
    read, cfg = read_checkpoint(model_dir)
    weights = read if weights is None else weights
    tol = CONTRACT[compute]
    n_checked = 0
    for layer in range(cfg.get("num_hidden_layers") or cfg["n_layer"]):
        ref = reference_spectra(reference_layer(weights, cfg, layer, fold))
        got_keys = {"%s.%s" % (k, n) for k, v in (("head", res.heads), ("stack", res.stacked),
                                                  ("sub", res.subspaces))
                    for n in v.get(layer, {})}
        assert got_keys == set(ref), (sorted(got_keys), sorted(ref))
        for key, r in ref.items():
            g = view(res, layer, key)
            assert g.shape == r.shape, (layer, key, g.shape, r.shape)
            assert res.matrix_shapes["L%d.%s" % (layer, key)]
            rows = np.atleast_2d(g), np.atleast_2d(r)
            for h, (gs, rs) in enumerate(zip(*rows)):
                err = np.max(np.abs(gs - rs)) / rs[0]
                assert err <= tol, "L%d.%s head %d: error %.3g sigma_1 > %g" % (
                    layer, key, h, err, tol)
                for t in TAUS:
                    assert fasvd.effective_rank(gs, t) == fasvd.effective_rank(rs, t), \
                        "L%d.%s head %d: rank at tau=%g differs" % (layer, key, h, t)
                n_checked += 1
            # the result's effective-rank views agree with the spectra
            for t in TAUS:
                er = res.effective_ranks[t]
                kind, name = key.split(".", 1)
                v = {"head": er.heads, "stack": er.stacked, "sub": er.subspaces}[kind]
                np.testing.assert_array_equal(v[layer][name], fasvd.effective_rank(r, t))
    return n_checked


@pytest.mark.parametrize("compute", ["f64", "f32"])
def test_deepseek_fp8_matches_float64_reference(deepseek_dir, compute):
    with fasvd.open(deepseek_dir) as m:
        assert m.info["mla"] and m.info["weight_dtypes"] == ["F8_E4M3"]
        res = m.analyze(compute=compute, tau=TAUS)
    assert res.complete and res.layers == [0, 1] and res.path is None
    assert res.metadata["compute_dtype"] == compute
    assert res.heads[0]["VO"].shape == (4, 144) and res.stacked[1]["O"].shape == (160,)
    assert set(res.subspaces[0]) == {"QA", "KVA", "KVA_pe"}
    assert compare_to_reference(res, deepseek_dir, compute) > 50


@pytest.mark.parametrize("compute", ["f64", "f32"])
@pytest.mark.parametrize("fold", [True, False])
def test_llama_gqa_matches_float64_reference(llama_dir, compute, fold):
    with fasvd.open(llama_dir) as m:
        assert m.info["n_kv_heads"] == 2 and m.info["n_heads"] == 4
        res = m.analyze(compute=compute, fold_norms=fold)
    assert res.heads[0]["V"].shape[0] == 2 and res.heads[0]["VO"].shape[0] == 4
    assert res.metadata["fold_norms"] == ("true" if fold else "false")
    compare_to_reference(res, llama_dir, compute, fold)


def test_model_layer_views_equal_the_layout_rules(deepseek_dir):
    weights, cfg = read_checkpoint(deepseek_dir)
    with fasvd.open(deepseek_dir) as m:
        got = m.layer(1)
        ref = reference_layer(weights, cfg, 1)
        for name, r in ref.items():
            np.testing.assert_allclose(got[name], np.stack(r) if isinstance(r, list) else r,
                                       rtol=1e-15, atol=0)
        # in-memory spectra of one layer are the analysis' own
        sp = m.spectra(1)
        res = m.analyze(layers=1)
        assert res.layers == [1]
        for key, arr in sp.items():
            np.testing.assert_array_equal(arr, view(res, 1, key))


def _read(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h, b[8 + n:]


def test_analyze_equals_the_cli_file(deepseek_dir, tmp_path):
    cli = cli_path()
    if cli is None:
        pytest.skip("the fasvd CLI is not built next to the library")
    cli_out, py_out = str(tmp_path / "cli.safetensors"), str(tmp_path / "py.safetensors")
    r = subprocess.run([cli, "analyze", deepseek_dir, "-o", cli_out, "--threads", "1", "-q",
                        "--csv", str(tmp_path / "cli.csv"), "--tau", "0.01,0.001"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with fasvd.open(deepseek_dir) as m:
        res = m.analyze(py_out, threads=1, csv_path=str(tmp_path / "py.csv"))
    assert res.path == py_out
    cli_res = fasvd.load_spectra(cli_out)
    assert cli_res.metadata == res.metadata
    assert sorted(cli_res.spectra) == sorted(res.spectra)
    for k in res.spectra:
        np.testing.assert_array_equal(cli_res.spectra[k], res.spectra[k], err_msg=k)
    # same bytes: same header and data
    assert _read(cli_out) == _read(py_out)
    assert (tmp_path / "cli.csv").read_text() == (tmp_path / "py.csv").read_text()
    # the Python table gives the CLI's CSV ranks
    lines = (tmp_path / "cli.csv").read_text().strip().splitlines()
    header = lines[0].split(",")
    rows = res.table()
    assert len(rows) == len(lines) - 1
    for line, row in zip(lines[1:], rows):
        cells = dict(zip(header, line.split(",")))
        assert int(cells["layer"]) == row["layer"] and cells["name"].strip('"') == row["name"]
        assert int(cells["er@0.01"]) == row["er@0.01"]
        assert int(cells["er@0.001"]) == row["er@0.001"]
        assert abs(float(cells["sigma1"]) - row["sigma1"]) <= 1e-15 * row["sigma1"]


def test_load_spectra_views(deepseek_dir, tmp_path):
    out = str(tmp_path / "s.safetensors")
    with fasvd.open(deepseek_dir) as m:
        res = m.analyze(out)
    back = fasvd.load_spectra(out, taus=(0.05,))
    assert back.model_type == "deepseek_v3" and back.config["model_type"] == "deepseek_v3"
    assert back.layers == res.layers and back.complete
    for l in res.layers:
        for name, arr in res.heads[l].items():
            np.testing.assert_array_equal(back.heads[l][name], arr)
            assert not back.heads[l][name].flags.writeable
    assert back.taus == (0.05,)
    assert back.effective_ranks[0.05].stacked[0]["VO"] == fasvd.effective_rank(
        res.stacked[0]["VO"], 0.05)
    # structural bounds, not min(rows, cols) = 288 / 144: 4 heads of v_head 40
    assert back.max_rank("L0.stack.VO") == 160 and back.max_rank("L0.head.VO") == 40
    assert back.max_ranks_stored
    # not a spectra file / not a safetensors file
    shard = os.path.join(deepseek_dir, "model-00001-of-00003.safetensors")
    with pytest.raises(fasvd.FormatError):
        fasvd.load_spectra(shard)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(fasvd.FormatError):
        fasvd.load_spectra(str(bad))
    with pytest.raises(fasvd.IOError):
        fasvd.load_spectra(str(tmp_path / "missing.safetensors"))


STORIES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "data",
                       "stories260K")


def test_stories260k_structural_rank_bounds(tmp_path):
    """8 heads, 4 KV heads, head_dim 8, hidden 64: a fused VO head is a
    64 x 64 matrix of rank <= 8, the stacked QK a 512 x 64 matrix of rank
    <= 4·8 = 32; the spectra file, the JSON, the CSV and the Python result
    all say so, and no effective rank exceeds its bound."""
    out, js, cs = (str(tmp_path / n) for n in ("s.safetensors", "s.json", "s.csv"))
    with fasvd.open(STORIES) as m:
        m.analyze(out, json_path=js, csv_path=cs, compute="f64")
    res = fasvd.load_spectra(out)
    assert res.model_name() == "stories260K"
    for l in res.layers:
        assert res.max_rank("L%d.head.VO" % l) == 8 and res.max_rank("L%d.head.QK" % l) == 8
        assert res.max_rank("L%d.stack.QK" % l) == 32 and res.max_rank("L%d.stack.VO" % l) == 64
        assert res.matrix_shapes["L%d.head.VO" % l] == (64, 64)
        # the values past the bound are rounding noise
        vo = res.heads[l]["VO"]
        assert np.all(vo[:, 8:] <= 1e-12 * vo[:, :1])
        qk = res.stacked[l]["QK"]
        assert np.all(qk[32:] <= 1e-12 * qk[0])
    summ = json.loads(open(js).read())
    got = {(r["layer"], r["kind"], r["name"]): r["max_rank"] for r in summ["matrices"]}
    assert got[(0, "head", "VO")] == 8 and got[(0, "stack", "QK")] == 32
    for r in summ["matrices"]:
        assert all(v <= r["max_rank"] for v in r["effective_rank"].values()), r
    lines = open(cs).read().strip().splitlines()
    header = lines[0].split(",")
    assert header[:7] == ["layer", "kind", "name", "head", "rows", "cols", "max_rank"]
    cells = [dict(zip(header, ln.split(","))) for ln in lines[1:]]
    vo = [c for c in cells if c["kind"] == "head" and c["name"] == '"VO"']
    sqk = [c for c in cells if c["kind"] == "stack" and c["name"] == '"QK"']
    assert vo and all(c["max_rank"] == "8" and c["rows"] == "64" for c in vo)
    assert sqk and all(c["max_rank"] == "32" for c in sqk)
    assert [r["max_rank"] for r in res.table()] == [int(c["max_rank"]) for c in cells]
    # the in-memory spectra of a layer carry the same bounds and shapes
    with fasvd.open(STORIES) as m:
        sp = m.spectra(2, compute="f64")
    assert isinstance(sp, fasvd.LayerSpectra) and isinstance(sp, dict)
    assert sp.max_rank("head.VO") == 8 and sp.max_rank("stack.QK") == 32
    assert sp.matrix_shapes["head.VO"] == (64, 64)
    assert {"L2." + k: v for k, v in sp.max_ranks.items()} == \
        {k: v for k, v in res.max_ranks.items() if k.startswith("L2.")}


def test_older_spectra_files_without_bounds_still_load(tmp_path):
    """A file written before max_ranks existed: min(rows, cols), flagged."""
    out = str(tmp_path / "s.safetensors")
    with fasvd.open(STORIES) as m:
        m.analyze(out, layers=0)
    tensors, meta = fasvd.read_safetensors(out)
    del meta["max_ranks"]
    res = fasvd.Result(tensors, meta)
    assert not res.max_ranks_stored
    assert res.max_rank("L0.head.VO") == 64 and res.max_rank("L0.stack.QK") == 64
    # load_spectra says so
    old = str(tmp_path / "old.safetensors")
    hdr = {k: {"dtype": "F64", "shape": list(v.shape)} for k, v in tensors.items()}
    off, blobs = 0, []
    for k in sorted(tensors):
        b = np.ascontiguousarray(tensors[k], dtype="<f8").tobytes()
        hdr[k]["data_offsets"] = [off, off + len(b)]
        off += len(b)
        blobs.append(b)
    hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode()
    with open(old, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    with pytest.warns(UserWarning, match="max_ranks"):
        back = fasvd.load_spectra(old)
    assert back.max_rank("L0.head.VO") == 64


def test_progress_cancel_and_resume(deepseek_dir, tmp_path):
    out = str(tmp_path / "run.safetensors")
    seen = []

    def cancel_after_first_layer(p):
        seen.append(p)
        return p["stage"] == "layer"

    with fasvd.open(deepseek_dir) as m:
        with pytest.raises(fasvd.Cancelled):
            m.analyze(out, progress=cancel_after_first_layer, threads=1)
        assert [p["stage"] for p in seen] == ["start", "layer"]
        assert seen[1]["layer"] == 0 and seen[1]["steps_total"] == 2
        part = fasvd.load_spectra(out)
        assert not part.complete and part.layers == [0]
        stages = []
        res = m.analyze(out, resume=True, progress=lambda p: stages.append(p["stage"]),
                        threads=1)
        assert stages[0] == "start" and stages[-1] == "done" and "layer" in stages
        assert res.complete and res.layers == [0, 1]
        full = m.analyze(threads=1)
    for k in full.spectra:
        np.testing.assert_array_equal(res.spectra[k], full.spectra[k], err_msg=k)

    def boom(p):
        if p["stage"] == "layer":
            raise ZeroDivisionError("from the callback")

    with fasvd.open(deepseek_dir) as m:
        with pytest.raises(ZeroDivisionError):
            m.analyze(str(tmp_path / "boom.safetensors"), progress=boom)


def test_ctrl_c_stops_after_the_layer_and_resumes(deepseek_dir, tmp_path, capsys):
    out = str(tmp_path / "int.safetensors")

    def interrupt(p):
        if p["stage"] == "layer":
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C during the run

    with fasvd.open(deepseek_dir) as m:
        with pytest.raises(KeyboardInterrupt):
            m.analyze(out, progress=interrupt)
        assert fasvd.load_spectra(out).layers == [0]
        res = m.analyze(out, resume=True, progress=True)
    assert res.complete and res.layers == [0, 1]
    err = capsys.readouterr().err
    assert "2/2" in err and "layer 1" in err


def test_layers_tensors_and_options(llama_dir):
    weights, _ = read_checkpoint(llama_dir)
    with fasvd.open(llama_dir) as m:
        assert m.analyze(layers="1-1").layers == [1]
        assert m.analyze(layers=-1).layers == [1]
        assert m.analyze(layers=range(0, 2)).layers == [0, 1]
        assert m.analyze(layers=(0, 0)).layers == [0]
        with pytest.raises(fasvd.InvalidArgument):
            m.analyze(layers="5-6")
        with pytest.raises(fasvd.InvalidArgument):
            m.analyze(layers=[0, 2, 3])
        with pytest.raises(fasvd.InvalidArgument):
            m.analyze(stack_norm="max")
        ups = [n for n in m.tensor_names() if n.endswith("mlp.up_proj.weight")]
        assert ups
        res = m.analyze(tensors=["*mlp.up_proj.weight"], compute="f64")
        assert sorted(res.tensors) == sorted(ups)
        for n in ups:
            r = svals(weights[n])
            assert np.max(np.abs(res.tensors[n] - r)) <= 1e-10 * r[0]
        with pytest.raises(fasvd.InvalidArgument):
            m.analyze(tensors=["no.such.*"])
        res = m.analyze(stack_norm="none", compute="f64")
        assert res.metadata["stack_normalisation"] == "none"
        ref = reference_layer(weights, m.config, 0)
        r = svals(np.vstack(ref["O"]))
        assert np.max(np.abs(res.stacked[0]["O"] - r)) <= 1e-10 * r[0]


def test_info_and_inputs(llama_dir, deepseek_dir):
    with fasvd.open(llama_dir) as m:
        i = m.info
        assert i["arch"] == "llama" and i["n_layers"] == 2 and i["head_dim"] == 16
        assert i["weight_dtypes"] == ["BF16"] and i["n_missing"] == 0
        roles = {x["role"] for x in m.inputs if x["layer"] == 0}
        assert {"q_proj", "k_proj", "v_proj", "o_proj", "input_norm"} <= roles
        assert "llama" in fasvd.architectures()
    with fasvd.open(deepseek_dir) as m:
        ins = [x for x in m.inputs if x["role"] == "kv_a_proj_with_mqa"]
        assert ins[0]["shape"] == (176, 288) and ins[0]["scale_present"]
        assert m.info["block_size"] == (128, 128) and m.info["n_shards"] == 3
    m.close()
    with pytest.raises(fasvd.StateError):
        m.analyze()


def test_open_errors(tmp_path, llama_dir):
    with pytest.raises(fasvd.NotFoundError):
        fasvd.open(str(tmp_path / "nothing"))
    d = tmp_path / "badarch"
    write_fixture(str(d), arch="llama")
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "not_a_model"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(fasvd.ArchError) as ei:
        fasvd.open(str(d))
    assert "not_a_model" in str(ei.value)
    with pytest.raises(fasvd.ArchError):
        write_fixture(str(tmp_path / "x"), arch="not_a_model")


def test_nan_weight_raises_and_keeps_the_completed_layer(tmp_path):
    d = str(tmp_path / "nan")
    write_fixture(d, arch="llama", dtype="f32")
    path = os.path.join(d, "model.safetensors")
    with open(path, "rb") as f:
        b = bytearray(f.read())
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    name = "model.layers.1.self_attn.v_proj.weight"
    e = h[name]
    cols = e["shape"][1]
    off = 8 + n + e["data_offsets"][0] + (2 * cols + 3) * 4
    b[off:off + 4] = struct.pack("<f", float("nan"))
    with open(path, "wb") as f:
        f.write(bytes(b))
    out = str(tmp_path / "nan.safetensors")
    with fasvd.open(d) as m:
        with pytest.raises(fasvd.NonFiniteError) as ei:
            m.analyze(out)
    assert isinstance(ei.value, fasvd.Error)
    assert name in str(ei.value) and "resume" in str(ei.value)
    part = fasvd.load_spectra(out)  # layer 0 kept, resumable
    assert not part.complete and part.layers == [0]


def test_truncate_dense_format_is_the_product(tmp_path):
    """format="dense": each replaced weight is A @ B of the factors, under its
    own name, dtype and shape; every other tensor as it was."""
    d = write_fixture(str(tmp_path / "m"), arch="llama", dtype="f32")
    weights, _ = read_checkpoint(d)
    fasvd.truncate(d, str(tmp_path / "f"), rank=3, per_head=True)
    ents = fasvd.truncate(d, str(tmp_path / "d"), rank=3, per_head=True, format="dense")
    facs, _ = read_checkpoint(str(tmp_path / "f"))
    dense, _ = read_checkpoint(str(tmp_path / "d"))
    assert set(dense) == set(weights) and len(ents) == 8
    for e in ents:
        A, B = facs[e["a_name"]].astype(np.float64), facs[e["b_name"]].astype(np.float64)
        W = np.matmul(A, B).reshape(weights[e["name"]].shape) if A.ndim == 3 else A @ B
        got = dense[e["name"]]
        assert got.dtype == weights[e["name"]].dtype and got.shape == W.shape
        np.testing.assert_allclose(got, W, rtol=1e-6, atol=1e-6)
        assert np.abs(got - weights[e["name"]]).max() > 1e-3  # truncated
    for k in set(weights) - {e["name"] for e in ents}:
        assert np.array_equal(dense[k], weights[k])
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    assert cfg["fasvd_lowrank"]["storage"] == "dense" and cfg["model_type"] == "llama"
    assert "A" not in cfg["fasvd_lowrank"]["tensors"][ents[0]["name"]]


def test_factored_folder_reads_as_the_product(tmp_path):
    """A factor output opens as its architecture: every replaced weight is
    A @ B (per head too), so its layers and spectra are those of the
    truncated model, and analyze runs on it."""
    d = write_fixture(str(tmp_path / "m"), arch="llama", dtype="f32")
    out = str(tmp_path / "f")
    ents = fasvd.truncate(d, out, rank=3, per_head=True, tensors=["*q_proj.weight"],
                          dtype="f64")
    fasvd.truncate(d, str(tmp_path / "dense"), rank=3, per_head=True,
                   tensors=["*q_proj.weight"], dtype="f64", format="dense")
    with fasvd.open(out) as m, fasvd.open(str(tmp_path / "dense")) as ref:
        assert all(i["present"] for i in m.inputs)
        q = [i for i in m.inputs if i["role"] == "q_proj"]
        assert all(i["factored"] and i["rank"] == 3 and i["factor_heads"] == 4 for i in q)
        assert not any(i["factored"] for i in m.inputs if i["role"] != "q_proj")
        a, b = m.layer(1, fold_norms=False), ref.layer(1, fold_norms=False)
        for k in ("Q", "K", "V", "O"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
        assert max(np.linalg.matrix_rank(h) for h in a["Q"]) == 3
        sp = m.spectra(1, compute="f64")
        assert np.sum(sp["head.Q"][:, 3:] ** 2) <= 1e-10 * np.sum(sp["head.Q"] ** 2)
        m.analyze(str(tmp_path / "an"))
    assert len(ents) == 2


def product_weights(factored_dir):
    """{name: float64 array} of a factor output with every `X.A`/`X.B` pair
    replaced by X = A @ B (per head: the rows of head k are A[k] @ B[k])."""
    w, _ = read_checkpoint(factored_dir)
    for a in [k for k in w if k.endswith(".A")]:
        A, B = w.pop(a), w.pop(a[:-2] + ".B")
        w[a[:-2]] = (np.matmul(A, B).reshape(-1, B.shape[-1]) if A.ndim == 3 else A @ B)
    return w


# (fixture arch, its options, fasvd.truncate tensors)
FACTORED_CASES = {
    "llama-gqa": ("llama", {"dtype": "f64"}, None),
    "gpt2": ("gpt2", {"dtype": "f64"}, None),
    "mla": ("deepseek_v3", {"dtype": "f64"}, None),
}


@pytest.mark.parametrize("case", sorted(FACTORED_CASES))
@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("compute", ["f64", "f32"])
def test_factored_folder_spectra_from_the_factors(tmp_path, case, per_head, compute):
    """analyze on a factor output (its heads held reduced, W = A·B never
    formed: docs/design.md "Factored weights") meets the accuracy contract
    against a numpy float64 reference built from A @ B, and agrees with the
    materialised route (the same truncation written as a dense checkpoint)."""
    arch, opts, tensors = FACTORED_CASES[case]
    d = write_fixture(str(tmp_path / "m"), arch=arch, **opts)
    out, dense = str(tmp_path / "f"), str(tmp_path / "d")
    kw = dict(rank=2, per_head=per_head, dtype="f64", allow_larger=True)
    if tensors:
        kw["tensors"] = tensors
    ents = fasvd.truncate(d, out, **kw)
    fasvd.truncate(d, dense, format="dense", **kw)
    assert ents and all(e["a_name"] for e in ents)
    rope = (3,) if case != "gpt2" else ()  # rotated heads (QK@3) are reduced too
    runs = []
    for folder in (out, dense):
        with fasvd.open(folder) as m:
            if case == "llama-gqa":
                assert m.info["n_kv_heads"] < m.info["n_heads"]
            plain = m.analyze(compute=compute)
            runs.append(m.analyze(compute=compute, rope_offsets=rope) if rope else plain)
        # both routes against the numpy float64 reference from A @ B
        assert compare_to_reference(plain, d, compute, weights=product_weights(out)) > 10
    res, mat = runs
    assert not rope or any("@3" in k for k in res.heads[0])
    for kind in ("heads", "stacked", "subspaces"):
        for layer, group in getattr(res, kind).items():
            for name, g in group.items():
                r = getattr(mat, kind)[layer][name]
                assert g.shape == r.shape
                key = "L%d.%s.%s" % (layer, {"heads": "head", "stacked": "stack",
                                             "subspaces": "sub"}[kind], name)
                assert res.matrix_shapes[key] == mat.matrix_shapes[key]
                top = np.max(np.atleast_2d(r)[:, :1])
                assert np.max(np.abs(g - r)) <= CONTRACT[compute] * max(top, 1e-300), key


def _arch_names():
    return [a if isinstance(a, str) else a["name"] for a in fasvd.architectures()]


@pytest.mark.parametrize("arch", _arch_names())
def test_factored_folder_equals_dense_every_architecture(tmp_path, arch):
    """Every layout's factor output (per weight and per head: Q/K/V row heads,
    fused qkv with offsets and strides, o_proj column heads, GPT-2's Conv1D,
    q_norm / k_norm row scales, Gemma's post-attention norm, MLA) gives,
    within the contract, the spectra of the same truncation written dense."""
    d = write_fixture(str(tmp_path / "m"), arch=arch, dtype="f64", n_layers=1)
    for per_head in (False, True):
        kw = dict(rank=2, per_head=per_head, dtype="f64", allow_larger=True)
        out, dense = str(tmp_path / ("f%d" % per_head)), str(tmp_path / ("d%d" % per_head))
        fasvd.truncate(d, out, **kw)
        fasvd.truncate(d, dense, format="dense", **kw)
        for compute in ("f32", "f64"):
            with fasvd.open(out) as m:
                res = m.analyze(compute=compute)
            with fasvd.open(dense) as m:
                mat = m.analyze(compute=compute)
            for kind in ("heads", "stacked", "subspaces"):
                assert getattr(res, kind).keys() == getattr(mat, kind).keys()
                for layer, group in getattr(res, kind).items():
                    assert group.keys() == getattr(mat, kind)[layer].keys()
                    for name, g in group.items():
                        r = getattr(mat, kind)[layer][name]
                        top = np.max(np.atleast_2d(r)[:, :1])
                        assert g.shape == r.shape and \
                            np.max(np.abs(g - r)) <= CONTRACT[compute] * top, (name, per_head)


def test_truncate_writes_exact_factors(tmp_path):
    d = write_fixture(str(tmp_path / "m"), arch="llama", dtype="f32")
    weights, _ = read_checkpoint(d)
    seen = []
    ents = fasvd.truncate(d, str(tmp_path / "out"), energy_loss=0.01, dtype="f64",
                          progress=seen.append)
    assert len(ents) == 8 and seen == ents  # q, k, v, o of 2 layers
    out, _ = read_checkpoint(str(tmp_path / "out"))
    for e in ents:
        W, A, B = weights[e["name"]], out[e["a_name"]], out[e["b_name"]]
        assert e["name"] not in out
        lost = np.linalg.norm(W - A @ B) ** 2 / np.linalg.norm(W) ** 2
        s = svals(W)
        r = e["report"]["rank"]
        assert r == fasvd.effective_rank(s, 0.01) and A.shape[1] == r
        assert abs(lost - np.sum(s[r:] ** 2) / np.sum(s ** 2)) <= 1e-12
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["fasvd_lowrank"]["tensors"][ents[0]["name"]]["rank"] == ents[0]["report"]["rank"]
    ents = fasvd.truncate(d, str(tmp_path / "ph"), rank=3, per_head=True,
                          tensors=["*q_proj.weight"])
    assert len(ents) == 2 and all(e["report"]["heads"] == 4 for e in ents)
    assert all(not e["report"]["approximate"] and
               e["report"]["optimal_energy_lost"] == e["report"]["energy_lost"] for e in ents)
    # the randomised backend is opt-in and its reports say approximate
    ents = fasvd.truncate(d, str(tmp_path / "rand"), rank=3, backend="randomized")
    assert ents and all(e["report"]["approximate"] and
                        e["report"]["optimal_energy_lost"] is None for e in ents)
    ents = fasvd.truncate(d, str(tmp_path / "rand-tau"), energy_loss=0.3, backend="randomized")
    assert all(e["report"]["approximate"] and
               e["report"]["energy_lost"] >= e["report"]["optimal_energy_lost"] * (1 - 1e-9)
               for e in ents if not e["skipped"])
    # factors that would not be smaller: kept, or nothing written at all
    with pytest.raises(fasvd.InvalidArgument, match="nothing to truncate"):
        fasvd.truncate(d, str(tmp_path / "big"), rank=10000)
    assert not os.path.exists(tmp_path / "big")
    ents = fasvd.truncate(d, str(tmp_path / "big"), rank=10000, allow_larger=True)
    assert ents and not any(e["skipped"] for e in ents)
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.truncate(d, str(tmp_path / "x2"), rank=1, allow_larger=True, only_if_smaller=True)
    with pytest.raises(fasvd.Cancelled):
        fasvd.truncate(d, str(tmp_path / "cancel"), rank=2, progress=lambda e: True)
    assert not os.path.exists(tmp_path / "cancel")
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.truncate(d, str(tmp_path / "x"))


def test_progress_eta_counts_only_this_runs_work():
    import io
    from fasvd.model import _progress_printer
    out = io.StringIO()
    show = _progress_printer(out)

    def p(stage, done, t):
        return {"stage": stage, "layer": done - 1, "tensor": None, "steps_done": done,
                "steps_total": 10, "bytes_done": 0, "bytes_total": 0, "elapsed_s": t}

    show(p("start", 8, 0.0))     # resumed: 8 of 10 layers done by an earlier run
    show(p("layer", 9, 5.0))     # this run: one layer in 5 s, one left
    assert out.getvalue().rstrip().endswith("ETA 5.0 s")
