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
    with pytest.raises(fasvd.FormatError) as e:
        fasvd.open(str(gguf))
    assert "is a GGUF file" in str(e.value) and "absurd" not in str(e.value)
    with pytest.raises(fasvd.NotFoundError) as e:
        fasvd.open(str(tmp_path))
    assert "config.json: no such file" in str(e.value)
    assert "model.gguf (a GGUF file)" in str(e.value)


def test_one_shard_opens_the_whole_model(deepseek_dir):
    shard = os.path.join(deepseek_dir, "model-00001-of-00003.safetensors")
    with fasvd.open(shard) as one, fasvd.open(deepseek_dir) as whole:
        assert one.info["n_shards"] == 3
        assert one.info == whole.info
