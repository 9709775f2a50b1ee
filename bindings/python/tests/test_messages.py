"""Error messages carry one prefix (docs/error-model.md); files of other
formats are named; one shard of a sharded checkpoint opens the whole
model."""

import os
import struct

import pytest

from support import require_library

require_library()

import fasvd  # noqa: E402


def test_one_prefix_per_message(deepseek_dir):
    with fasvd.open(deepseek_dir) as m:
        with pytest.raises(fasvd.InvalidArgument) as e:
            m.analyze(tau=2)
    assert str(e.value) == "fasvd_analyze: tau 2 is outside [0, 1] (invalid argument)"
    assert e.value.function == "fasvd_analyze"
    with pytest.raises(fasvd.InvalidArgument) as e:
        fasvd.truncate(deepseek_dir, "/nonexistent/out", rank=-1)
    assert str(e.value) == "rank=-1 must be >= 0"
    # A detail that does not name the function gets it in front, once.
    err = fasvd.errors.IOError("x.safetensors: cannot open", function="fasvd_st_open")
    assert str(err) == "fasvd_st_open: x.safetensors: cannot open"


def test_other_formats_are_named(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 291, 24) + bytes(64))
    # GGUF is read as a model: this truncated one is named with the cause,
    # as a file and as the one GGUF model of a folder without config.json.
    for path in (gguf, tmp_path):
        with pytest.raises(fasvd.FormatError) as e:
            fasvd.open(str(path))
        assert str(gguf) in str(e.value) and "cannot fit" in str(e.value)
        assert "absurd" not in str(e.value)
    (tmp_path / "model.gguf").rename(tmp_path / "model.zip")
    (tmp_path / "model.zip").write_bytes(b"PK\3\4" + bytes(60))
    with pytest.raises(fasvd.NotFoundError) as e:
        fasvd.open(str(tmp_path))
    assert "config.json: no such file" in str(e.value)
    assert "model.zip (a ZIP archive)" in str(e.value)


def test_one_shard_opens_the_whole_model(deepseek_dir):
    shard = os.path.join(deepseek_dir, "model-00001-of-00003.safetensors")
    with fasvd.open(shard) as one, fasvd.open(deepseek_dir) as whole:
        assert one.info["n_shards"] == 3
        assert one.info == whole.info
