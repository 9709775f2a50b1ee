"""Model.analyze(shard=(i, n)) and fasvd.merge(): work items in separate
calls joined into the file of a whole run, byte for byte; parts of another
checkpoint or missing parts refused."""

import pytest

from support import require_library, write_fixture

require_library()

import fasvd  # noqa: E402


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_shards_merge_to_the_whole_run(tmp_path):
    model = write_fixture(str(tmp_path / "m"), n_layers=5)
    m = fasvd.open(model)
    whole = tmp_path / "whole.st"
    m.analyze(out=whole, threads=1, tensors=["*mlp.down_proj.weight"])
    parts = []
    for i in range(3):
        p = tmp_path / ("part%d.st" % i)
        res = m.analyze(out=p, threads=1, shard=(i, 3), tensors=["*mlp.down_proj.weight"])
        assert res.metadata["shard"] == "%d/3" % i
        parts.append(p)
    # every layer in exactly one part
    layers = [res_l for p in parts
              for res_l in fasvd.load_spectra(p).metadata["shard_layers"].split(",") if res_l]
    assert sorted(int(x) for x in layers) == list(range(5))
    out = tmp_path / "merged.st"
    assert fasvd.merge(parts[::-1], out, threads=1) == str(out)
    assert read(out) == read(whole)
    with pytest.raises(fasvd.InvalidArgument, match="exists"):
        fasvd.merge(parts, out)
    with pytest.raises(fasvd.InvalidArgument, match="3 parts are needed"):
        fasvd.merge(parts[:2], tmp_path / "x.st")


def test_merge_refuses_another_checkpoint(tmp_path):
    a = fasvd.open(write_fixture(str(tmp_path / "a"), n_layers=2, seed=1))
    b = fasvd.open(write_fixture(str(tmp_path / "b"), n_layers=2, seed=2))
    a.analyze(out=tmp_path / "a0.st", shard=(0, 2), threads=1)
    b.analyze(out=tmp_path / "b1.st", shard=(1, 2), threads=1)
    with pytest.raises(fasvd.InvalidArgument, match="differ in"):
        fasvd.merge([tmp_path / "a0.st", tmp_path / "b1.st"], tmp_path / "x.st")


def test_bad_shard(tmp_path):
    m = fasvd.open(write_fixture(str(tmp_path / "m"), n_layers=2))
    for bad in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(fasvd.InvalidArgument):
            m.analyze(out=tmp_path / "x.st", shard=bad)
    with pytest.raises(fasvd.InvalidArgument, match="needs out"):
        m.analyze(shard=(0, 2))
