"""fasvd.blas_info() and the OpenBLAS kernels the binding chooses before it
loads the library (fasvd._blas, docs/blas.md). Each case imports fasvd in a
fresh interpreter, where OpenBLAS is loaded for the first time."""

import json
import os
import subprocess
import sys

import pytest

from support import PKG_ROOT, require_library

require_library()

import fasvd  # noqa: E402
from fasvd import _blas  # noqa: E402

# What each core's kernels need, in /proc/cpuinfo's names (independent of
# fasvd._blas's table).
NEEDS = {
    "Sandybridge": {"avx"},
    "Haswell": {"avx", "avx2", "fma"},
    "Zen": {"avx", "avx2", "fma"},
    "SkylakeX": {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl",
                 "avx512cd"},
}
NEEDS["Cooperlake"] = NEEDS["SkylakeX"] | {"avx512_bf16"}

FLAGS, VENDOR = _blas.cpu()
BEST = _blas.best_core(FLAGS, VENDOR)


def fresh(code, **env_changes):
    """Run `code` after `import fasvd` in a new interpreter with
    OPENBLAS_CORETYPE and FASVD_NO_REEXEC unset but for env_changes;
    returns (fasvd.blas_info() there, its OPENBLAS_CORETYPE, its stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE",
                                                           "FASVD_NO_REEXEC")}
    env.update(env_changes)
    env["PYTHONPATH"] = PKG_ROOT
    script = ("import json, os, sys, warnings\nwarnings.simplefilter('always')\n%s\n"
              "import fasvd\nprint(json.dumps([fasvd.blas_info(), "
              "os.environ.get('OPENBLAS_CORETYPE')]))" % code)
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    info, coretype = json.loads(r.stdout.splitlines()[-1])
    return info, coretype, r.stderr


def test_blas_info():
    info = fasvd.blas_info()
    assert set(info) == {"name", "version", "config", "core", "threads", "dynamic", "fallback",
                         "recommended", "cpu_features", "coretype_set_by_fasvd"}
    assert info["threads"] >= 1
    assert isinstance(info["fallback"], bool) and isinstance(info["dynamic"], bool)
    if info["name"] == "OpenBLAS":
        assert info["version"] in info["config"]
        assert info["dynamic"] == ("DYNAMIC_ARCH" in info["config"])
    assert info["recommended"] == BEST
    if FLAGS:
        usable = {"pni" if f == "sse3" else f for f in info["cpu_features"].split()}
        assert usable <= FLAGS


@pytest.mark.parametrize("flags,vendor,core", [
    (NEEDS["Cooperlake"], "GenuineIntel", "Cooperlake"),
    (NEEDS["SkylakeX"], "AuthenticAMD", "SkylakeX"),
    (NEEDS["SkylakeX"] - {"avx512cd"}, "GenuineIntel", "Haswell"),
    (NEEDS["Haswell"], "AuthenticAMD", "Zen"),
    (NEEDS["Haswell"] - {"fma"}, "GenuineIntel", "Sandybridge"),
    ({"sse3", "pni"}, "GenuineIntel", None),
    (set(), "", None),
])
def test_best_core(flags, vendor, core):
    assert _blas.best_core(flags, vendor) == core
    if core:
        assert NEEDS[core] <= flags


def test_wheel_copies_are_not_ours():
    assert _blas._private_copy("/x/site-packages/numpy.libs/libopenblas64_p-r0-1.3.so")
    assert _blas._private_copy("/x/site-packages/scipy_openblas32/lib/libscipy_openblas.so")
    assert not _blas._private_copy("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0")


@pytest.mark.skipif(BEST is None, reason="no AVX: no core to choose")
def test_sets_the_best_core_before_loading():
    info, coretype, err = fresh("")
    assert coretype == BEST and info["coretype_set_by_fasvd"] == BEST
    if info["dynamic"]:
        assert info["core"].lower() == BEST.lower() and not info["fallback"]
        assert BEST in info["config"].split()
    assert "Warning" not in err


def test_keeps_the_users_choice():
    info, coretype, err = fresh("", OPENBLAS_CORETYPE="Prescott")
    assert coretype == "Prescott" and info["coretype_set_by_fasvd"] is None
    if info["dynamic"]:
        assert info["core"] == "Prescott"
        assert info["fallback"] == (BEST is not None)
    assert "Warning" not in err  # the user chose it


def test_opt_out():
    info, coretype, err = fresh("", FASVD_NO_REEXEC="1")
    assert coretype is None and info["coretype_set_by_fasvd"] is None


@pytest.mark.skipif(BEST is None, reason="no AVX: Prescott is no fallback here")
def test_warns_when_openblas_was_loaded_first():
    # Another module loads the OpenBLAS libfasvd uses with generic kernels
    # (as numpy would in an environment that chose them), then fasvd comes.
    load = ("import ctypes\nos.environ['OPENBLAS_CORETYPE'] = 'Prescott'\n"
            "ctypes.CDLL('libopenblas.so.0', mode=ctypes.RTLD_GLOBAL)\n"
            "del os.environ['OPENBLAS_CORETYPE']")
    info, coretype, err = fresh(load)
    if not info["dynamic"] or info["core"] != "Prescott":
        pytest.skip("libfasvd does not use this libopenblas.so.0")
    assert coretype is None and info["fallback"]
    assert err.count("RuntimeWarning") == 1
    assert "OPENBLAS_CORETYPE=%s" % BEST in err and "numpy" in err
    info, coretype, err = fresh(load, FASVD_NO_REEXEC="1")
    assert "Warning" not in err
