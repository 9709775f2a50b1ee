"""Model.analyze(rope_offsets=...): head.QK@Δ / stack.QK@Δ on stories260K
(Llama, rotate-half, GQA) against a numpy construction of the rotary
embedding from config.json, and the refusals."""

import json
import os

import numpy as np
import pytest

from support import require_library, svals, write_fixture

require_library()

import fasvd  # noqa: E402

STORIES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "data",
                       "stories260K")


def rotate(m, pos, theta):
    """HF apply_rotary_pos_emb (rotate_half) on the rows of one head."""
    d = m.shape[0]
    f = pos / theta ** (np.arange(0, d, 2) / d)
    cos, sin = np.cos(np.concatenate([f, f]))[:, None], np.sin(np.concatenate([f, f]))[:, None]
    half = np.concatenate([-m[d // 2:], m[:d // 2]])
    return m * cos + half * sin


def test_rope_offsets_on_stories(tmp_path):
    with open(os.path.join(STORIES, "config.json")) as f:
        theta = json.load(f)["rope_theta"]
    with fasvd.open(STORIES) as m:
        res = m.analyze(rope_offsets=(0, 1, 64), compute="f64", layers=(0, 1))
        assert res.metadata["rope_offsets"] == "0,1,64"
        for layer in (0, 1):
            w = m.layer(layer)
            q, k = w["Q"], w["K"]
            grp = q.shape[0] // k.shape[0]
            np.testing.assert_allclose(res.heads[layer]["QK@0"], res.heads[layer]["QK"],
                                       rtol=0, atol=1e-12 * res.heads[layer]["QK"].max())
            for d in (1, 64):
                ref = np.array([svals(rotate(q[i], d + 3, theta).T @ rotate(k[i // grp], 3, theta))
                                for i in range(q.shape[0])])
                got = res.heads[layer]["QK@%d" % d]
                np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10 * ref.max())
            assert not np.allclose(res.heads[layer]["QK@1"], res.heads[layer]["QK"])
            assert "QK@64" in res.stacked[layer]


def test_rope_offsets_refused_without_rope(tmp_path):
    d = str(tmp_path / "gpt2")
    write_fixture(d, "gpt2")
    with fasvd.open(d) as m, pytest.raises(fasvd.errors.ArchError, match="no rotary"):
        m.analyze(rope_offsets=(1,))


def test_rope_bands_on_stories():
    with open(os.path.join(STORIES, "config.json")) as f:
        theta = json.load(f)["rope_theta"]
    with fasvd.open(STORIES) as m:
        for layer in (0, 4):
            share, freq = m.rope_bands(layer)
            w = m.layer(layer)
            q, k = w["Q"], w["K"]
            d, grp = q.shape[1], q.shape[0] // k.shape[0]
            np.testing.assert_allclose(freq, theta ** (-np.arange(0, d, 2) / d), rtol=1e-14)
            pq = np.array([[np.linalg.norm(h[[j, j + d // 2]]) for j in range(d // 2)] for h in q])
            pk = np.array([[np.linalg.norm(h[[j, j + d // 2]]) for j in range(d // 2)] for h in k])
            ref = pq * pk[np.arange(q.shape[0]) // grp]
            ref /= ref.sum(axis=1, keepdims=True)
            np.testing.assert_allclose(share, ref, rtol=1e-12)
            # the bands are not uniform: the test would see a constant
            assert share.std() > 1e-3


def test_rope_bands_refused_for_mla(tmp_path):
    d = str(tmp_path / "ds")
    write_fixture(d, "deepseek_v2")
    with fasvd.open(d) as m, pytest.raises(fasvd.errors.ArchError, match="latent attention"):
        m.rope_bands(0)
