"""fasvd.svdvals / fasvd.svd against numpy.linalg.svd in every layout and
dtype, zero-copy borrowing, keep-alive, errors, and the library loader."""

import ctypes
import gc
import os
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest

from support import (PKG_ROOT, apply_block_scales, bf16_decode, bf16_encode, f8_e4m3_decode,
                     f8_e5m2_decode, require_library, svals)

require_library()

import fasvd  # noqa: E402
from fasvd import _lib  # noqa: E402

F64_TOL = 1e-10  # docs/accuracy.md, relative to sigma_1
F32_TOL = 1e-4

rng = np.random.default_rng(20240611)


def matrices():
    """Random and structured test matrices (float64)."""
    a = rng.standard_normal((37, 23))
    low = rng.standard_normal((40, 5)) @ rng.standard_normal((5, 31))  # rank 5
    graded = (rng.standard_normal((30, 30)) * np.logspace(0, -6, 30)) @ np.linalg.qr(
        rng.standard_normal((30, 30)))[0]
    ident = np.eye(12)
    hilbert = 1.0 / (np.arange(15)[:, None] + np.arange(15)[None, :] + 1.0)
    return {"random": a, "low_rank": low, "graded": graded, "identity": ident,
            "hilbert": hilbert, "row": rng.standard_normal((1, 9)),
            "col": rng.standard_normal((9, 1)), "scalar": np.array([[3.5]])}


def layouts(a):
    """Views of a that must all be read in place, with their strides."""
    big = np.zeros((a.shape[0] * 2 + 1, a.shape[1] * 3 + 2), dtype=a.dtype)
    big[1::2, 2::3] = a
    return {
        "C": np.ascontiguousarray(a),
        "F": np.asfortranarray(a),
        "transposed": np.ascontiguousarray(a.T).T,
        "sliced": big[1::2, 2::3],
        "negative": np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1],
        "neg_rows": np.asfortranarray(a[::-1])[::-1],
    }


def check(s, ref, tol):
    assert s.shape == ref.shape
    scale = max(ref[0], 1e-300) if ref.size else 1.0
    err = np.max(np.abs(s - ref)) / scale if ref.size else 0.0
    assert err <= tol, "max |s - ref| / s1 = %g > %g" % (err, tol)
    assert np.all(np.diff(s) <= 0), "not descending"


@pytest.mark.parametrize("name", list(matrices()))
@pytest.mark.parametrize("layout", ["C", "F", "transposed", "sliced", "negative", "neg_rows"])
def test_svdvals_f64_layouts(name, layout):
    a = matrices()[name]
    v = layouts(a)[layout]
    assert np.array_equal(v, a)
    t = fasvd.tensor(v)
    assert not t.copied
    item = v.dtype.itemsize
    assert t.strides == (v.strides[0] // item, v.strides[1] // item)
    check(fasvd.svdvals(v), svals(a), F64_TOL)
    check(fasvd.svdvals(v, compute="f32"), svals(a), F32_TOL)


@pytest.mark.parametrize("layout", ["C", "F", "transposed", "sliced", "negative"])
@pytest.mark.parametrize("dt", [np.float32, np.float16])
def test_svdvals_narrow_floats(layout, dt):
    a = rng.standard_normal((29, 41)).astype(dt)
    v = layouts(a)[layout]
    ref = svals(a.astype(np.float64))  # the exact values the array holds
    assert not fasvd.tensor(v).copied
    check(fasvd.svdvals(v), ref, F32_TOL)
    check(fasvd.svdvals(v, compute="f64"), ref, F64_TOL)


@pytest.mark.parametrize("layout", ["C", "F", "sliced", "negative"])
def test_svdvals_bf16(layout):
    x = rng.standard_normal((33, 20))
    codes = bf16_encode(x)
    ref = svals(bf16_decode(codes))
    v = layouts(codes)[layout]
    check(fasvd.svdvals(v, dtype="bf16", compute="f64"), ref, F64_TOL)
    check(fasvd.svdvals(v, dtype="bf16"), ref, F32_TOL)
    np.testing.assert_array_equal(fasvd.dequantize(v, dtype="bf16"), bf16_decode(codes))


def _fp8_codes(shape, dtype):
    c = rng.integers(0, 256, size=shape, dtype=np.uint8)
    if dtype == "f8_e4m3":
        c[(c & 0x7F) == 0x7F] = 0x3C  # no NaN codes
    else:
        c[((c >> 2) & 0x1F) == 31] = 0x3C  # no Inf/NaN codes
    return c


@pytest.mark.parametrize("dtype,decode", [("f8_e4m3", f8_e4m3_decode),
                                          ("f8_e5m2", f8_e5m2_decode)])
@pytest.mark.parametrize("layout", ["C", "F", "transposed", "sliced", "negative"])
def test_svdvals_fp8(dtype, decode, layout):
    codes = _fp8_codes((26, 18), dtype)
    v = layouts(codes)[layout]
    ref = svals(decode(codes))
    check(fasvd.svdvals(v, dtype=dtype, compute="f64"), ref, F64_TOL)
    check(fasvd.svdvals(v, dtype=dtype), ref, F32_TOL)
    np.testing.assert_array_equal(fasvd.dequantize(v, dtype=dtype), decode(codes))


def test_fp8_every_code_decodes_exactly():
    codes = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for dtype, decode in (("f8_e4m3", f8_e4m3_decode), ("f8_e5m2", f8_e5m2_decode)):
        got = fasvd.dequantize(codes, dtype=dtype, allow_nonfinite=True)
        np.testing.assert_array_equal(got, decode(codes))


@pytest.mark.parametrize("block", [128, (4, 5), 7])
def test_svdvals_fp8_block_scales(block):
    rows, cols = 150, 133  # not multiples of the block: partial edge blocks
    codes = _fp8_codes((rows, cols), "f8_e4m3")
    br, bc = (block, block) if isinstance(block, int) else block
    grid = (-(-rows // br), -(-cols // bc))
    scale = rng.uniform(0.01, 2.0, size=grid).astype(np.float32)
    w = apply_block_scales(f8_e4m3_decode(codes), scale, br, bc)
    ref = svals(w)
    t = fasvd.tensor(codes, dtype="f8_e4m3", scale_inv=scale, block=block)
    assert t.has_block_scales
    np.testing.assert_array_equal(t.to_numpy(), w)
    check(fasvd.svdvals(codes, dtype="f8_e4m3", scale_inv=scale, block=block, compute="f64"),
          ref, F64_TOL)
    check(fasvd.svdvals(codes, dtype="f8_e4m3", scale_inv=scale, block=block), ref, F32_TOL)
    # a transposed view keeps its scales per element
    check(fasvd.svdvals(np.asfortranarray(codes), dtype="f8_e4m3", scale_inv=scale,
                        block=block, compute="f64"), ref, F64_TOL)


def test_block_scale_grid_shape_is_checked():
    codes = _fp8_codes((10, 10), "f8_e4m3")
    with pytest.raises(fasvd.ShapeError):
        fasvd.tensor(codes, dtype="f8_e4m3", scale_inv=np.ones((2, 2), np.float32), block=4)


def test_broadcast_zero_strides():
    row = rng.standard_normal(11)
    a = np.broadcast_to(row, (6, 11))  # row stride 0, read-only
    t = fasvd.tensor(a)
    assert t.strides == (0, 1) and not t.copied
    check(fasvd.svdvals(a), svals(np.array(a)), F64_TOL)


def test_odd_strides_are_copied():
    rec = np.zeros((13, 9), dtype=[("x", "<f4"), ("pad", "u1")])
    rec["x"] = rng.standard_normal((13, 9))
    v = rec["x"]  # strides 45 and 5 bytes: not multiples of 4
    assert v.strides[1] % 4
    t = fasvd.tensor(v)
    assert t.copied
    check(fasvd.svdvals(v), svals(v.astype(np.float64)), F32_TOL)


def test_byteswapped_and_integer_inputs():
    a = rng.standard_normal((8, 6))
    be = a.astype(">f8")
    assert fasvd.tensor(be).copied
    check(fasvd.svdvals(be), svals(a), F64_TOL)
    ints = rng.integers(-5, 5, size=(7, 7))
    check(fasvd.svdvals(ints), svals(ints), F64_TOL)
    check(fasvd.svdvals([[1.0, 2.0], [3.0, 4.0]]), svals([[1.0, 2.0], [3.0, 4.0]]), F64_TOL)


def test_batched_like_numpy():
    a = rng.standard_normal((3, 2, 9, 7))
    s = fasvd.svdvals(a)
    assert s.shape == (3, 2, 7)
    np.testing.assert_allclose(s, np.linalg.svd(a, compute_uv=False), rtol=0, atol=1e-12)


def test_rank_and_backends():
    a = rng.standard_normal((120, 90)) @ np.diag(np.logspace(0, -3, 90))
    ref = svals(a)
    for backend in ("gesdd", "gesvd", "gesvdx", "auto"):
        s, rep = fasvd.svdvals(a, backend=backend, rank=10, return_report=True)
        assert s.shape == (10,)
        check(s, ref[:10], F64_TOL)
        assert rep["backend"] != "auto"
    s, rep = fasvd.svdvals(a, backend="gram", compute="f32", return_report=True)
    assert rep["backend"] == "gram"
    check(s, ref, F32_TOL)
    s, rep = fasvd.svdvals(a, backend="randomized", rank=5, power_iters=4, return_report=True)
    assert rep["backend"] == "randomized" and rep["error_estimate"] >= 0
    check(s, ref[:5], 1e-3)
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.svdvals(a, backend="randomized")  # needs rank
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.svdvals(a, backend="nope")


def test_svd_reconstruction_and_truncation():
    a = rng.standard_normal((40, 25))
    ref = svals(a)
    for layout, v in layouts(a).items():
        U, S, Vt = fasvd.svd(v)
        assert U.dtype == np.float64 and U.shape == (40, 25) and Vt.shape == (25, 25)
        np.testing.assert_allclose(U @ np.diag(S) @ Vt, a, atol=1e-12)
        np.testing.assert_allclose(U.T @ U, np.eye(25), atol=1e-12)
        check(S, ref, F64_TOL)
    # truncation loses exactly sum_{i>r} s_i^2 (docs/design.md)
    U, S, Vt = fasvd.svd(a, rank=7)
    lost = np.linalg.norm(a - U @ np.diag(S) @ Vt) ** 2
    assert abs(lost - np.sum(ref[7:] ** 2)) <= 1e-10 * np.sum(ref ** 2)
    # energy_loss picks the effective rank
    for tau in (0.5, 0.1, 0.01):
        U, S, Vt = fasvd.svd(a, energy_loss=tau)
        r = S.size
        assert r == fasvd.effective_rank(ref, tau)
        assert np.sum(ref[r:] ** 2) / np.sum(ref ** 2) <= tau
        assert np.sum(ref[r - 1:] ** 2) / np.sum(ref ** 2) > tau
    U, S, Vt = fasvd.svd(a, energy_loss=1.0)
    assert U.shape == (40, 0) and S.shape == (0,) and Vt.shape == (0, 25)
    U, S, Vt = fasvd.svd(a.astype(np.float32), rank=3)
    assert U.dtype == np.float32
    check(S, ref[:3], F32_TOL)


def test_nan_and_inf_raise_nonfinite():
    a = rng.standard_normal((6, 5))
    a[3, 4] = np.nan
    with pytest.raises(fasvd.NonFiniteError) as ei:
        fasvd.svdvals(a)
    e = ei.value
    assert isinstance(e, fasvd.Error) and isinstance(e, ValueError)
    assert e.code == -7 and e.function == "fasvd_svdvals"
    assert "(3, 4)" in str(e) and "NaN" in str(e)
    a[3, 4] = np.inf
    with pytest.raises(fasvd.NonFiniteError):
        fasvd.svd(a.astype(np.float32))
    with pytest.raises(fasvd.NonFiniteError):
        fasvd.svdvals(np.array([[0x7F, 0]], dtype=np.uint8), dtype="f8_e4m3")
    with pytest.raises(fasvd.NonFiniteError):
        fasvd.svdvals(np.array([[0x7C, 0]], dtype=np.uint8), dtype="f8_e5m2")  # +Inf


def test_bad_inputs_raise_the_right_errors():
    with pytest.raises(fasvd.ShapeError):
        fasvd.svdvals(np.ones(5))
    with pytest.raises(fasvd.ShapeError):
        fasvd.svdvals(np.ones((0, 3)))
    with pytest.raises(fasvd.DtypeError):
        fasvd.svdvals(np.ones((3, 3), dtype=np.uint16))  # codes need dtype=
    with pytest.raises(fasvd.DtypeError):
        fasvd.svdvals(np.ones((3, 3), dtype=np.float32), dtype="bf16")
    with pytest.raises(fasvd.DtypeError):
        fasvd.svdvals(np.ones((3, 3), dtype=np.uint16), dtype="f8_e4m3")
    with pytest.raises(fasvd.DtypeError):
        fasvd.svdvals(np.ones((3, 3), dtype=np.complex128))
    with pytest.raises(fasvd.DtypeError):
        fasvd.svdvals(np.ones((3, 3)), dtype="int8")
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.svdvals(np.ones((3, 3)), compute="f16")
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.svdvals(np.ones((3, 3)), rank=0)
    # built-in bases, so existing except clauses keep working
    assert issubclass(fasvd.OutOfMemory, MemoryError)
    assert issubclass(fasvd.IOError, OSError) and fasvd.IOError is not OSError
    assert issubclass(fasvd.LapackError, np.linalg.LinAlgError)
    assert issubclass(fasvd.NotFoundError, LookupError)


def test_every_error_code_has_its_class():
    names = {-1: "InvalidArgument", -2: "OutOfMemory", -3: "IOError", -4: "FormatError",
             -5: "DtypeError", -6: "ShapeError", -7: "NonFiniteError", -8: "RangeError",
             -9: "LapackError", -10: "NotFoundError", -11: "ArchError", -12: "Cancelled",
             -13: "StateError", -14: "InternalError"}
    for code, name in names.items():
        cls = fasvd.errors.error_class(code)
        assert cls.__name__ == name and cls.code == code and issubclass(cls, fasvd.Error)
        # raised from the library's own message for that code
        with pytest.raises(cls) as ei:
            _lib.raise_error(code, "f")
        assert _lib.decode(_lib.lib.fasvd_strerror(code)) in str(ei.value)
    assert fasvd.errors.error_class(-999) is fasvd.InternalError


def test_arrays_are_kept_alive_while_borrowed():
    class Arr(np.ndarray):  # weak-referenceable ndarray
        pass
    a = rng.standard_normal((20, 10)).view(Arr)
    ref = svals(np.asarray(a))
    r = weakref.ref(a)
    t = fasvd.tensor(a)
    del a
    gc.collect()
    assert r() is not None  # the tensor holds it
    garbage = [np.full((20, 10), 7.0) for _ in range(50)]  # reuse freed memory if any
    check(fasvd.svdvals(t), ref, F64_TOL)
    del garbage
    t.close()
    gc.collect()
    assert r() is None
    with pytest.raises(fasvd.StateError):
        fasvd.svdvals(t)


def test_concurrent_calls_from_threads():
    mats = [rng.standard_normal((60, 40)) for _ in range(8)]
    refs = [svals(m) for m in mats]
    out = [None] * len(mats)

    def work(i):
        for _ in range(5):
            out[i] = fasvd.svdvals(mats[i], threads=1)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(mats))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for s, r in zip(out, refs):
        check(s, r, F64_TOL)


def test_context_parameters():
    c = fasvd.Context(threads=2, compute="f64")
    assert c.threads == 2 and c.compute == "f64"
    a = rng.standard_normal((10, 10))
    check(fasvd.svdvals(a, ctx=c), svals(a), F64_TOL)
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.Context(threads=-1)


def test_struct_layouts_match_the_library():
    checked = _lib.check_struct_sizes()
    assert "SvdOpts" in checked and "AnalyzeOpts" in checked and "ModelInfo" in checked


def _c_layouts():
    """{struct: (size, [(member, offset, size)])} of the checkout's
    tests/abi/struct-layout.txt (the C layout of the public structs in the
    previous release), or None outside a checkout."""
    path = os.path.join(PKG_ROOT, "..", "..", "tests", "abi", "struct-layout.txt")
    if not os.path.exists(path):
        return None
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            w = line.split(None, 4)
            if w and w[0] == "struct":
                cur = out[w[1]] = (int(w[2]), [])
            elif w and w[0] == "member":
                cur[1].append((w[1], int(w[2]), int(w[3])))
    return out


def test_struct_layouts_match_the_c_headers():
    # Every struct the binding mirrors has the C layout: each member of the
    # released struct at the same offset with the same size (the binding may
    # know members appended since).
    layouts = _c_layouts()
    if layouts is None:
        pytest.skip("no tests/abi/struct-layout.txt (not a checkout)")
    classes = [c for c in vars(_lib).values() if isinstance(c, type) and
               issubclass(c, ctypes.Structure) and c is not _lib._Opaque and c._fields_]
    assert len(classes) >= 20
    for cls in classes:
        name = "fasvd_" + "".join("_" + ch.lower() if ch.isupper() else ch
                                  for ch in cls.__name__).lstrip("_")
        assert name in layouts, "%s: no C struct %s" % (cls.__name__, name)
        size, members = layouts[name]
        for member, offset, msize in members:
            field = getattr(cls, member, None)
            assert field is not None, "%s has no member %s" % (cls.__name__, member)
            assert (field.offset, field.size) == (offset, msize), \
                "%s.%s at %d (%d bytes), C: %d (%d bytes)" % (cls.__name__, member,
                                                             field.offset, field.size,
                                                             offset, msize)
        if members[0][0] != "size":  # a frozen struct
            assert ctypes.sizeof(cls) == size, cls.__name__


def test_every_declared_function_is_exported():
    missing = sorted(n for n in _lib._PROTOTYPES if not _lib.available(n))
    assert not missing, missing


def test_version_policy():
    assert fasvd.library_version == "%d.%d.%d" % (_lib.version_number // 10000,
                                                  (_lib.version_number // 100) % 100,
                                                  _lib.version_number % 100)
    assert _lib.compatible(100, (0, 1)) and _lib.compatible(105, (0, 1))
    assert _lib.compatible(200, (0, 1)) and _lib.compatible(1203, (0, 1))
    assert not _lib.compatible(5, (0, 1)) and not _lib.compatible(10100, (0, 1))
    assert _lib.compatible(10300, (1, 2)) and not _lib.compatible(10100, (1, 2))
    assert not _lib.compatible(20000, (1, 0))


def test_a_newer_minor_is_accepted(monkeypatch):
    major, minor = _lib.EXPECTED_VERSION
    monkeypatch.setattr(_lib.lib, "fasvd_version_number",
                        lambda: major * 10000 + (minor + 1) * 100 + 3)
    assert _lib._check_version() == major * 10000 + (minor + 1) * 100 + 3
    monkeypatch.setattr(_lib.lib, "fasvd_version_number",
                        lambda: (major + 1) * 10000 + minor * 100)
    with pytest.raises(ImportError, match="needs %d.%d or a later %d.x" % (major, minor, major)):
        _lib._check_version()


real_fn = _lib.fn


def test_init_writes_only_the_binding_struct():
    # The binding's struct in a larger buffer (as a newer library's larger
    # struct would be): every *_init writes its defaults into the binding's
    # bytes only, and sets size to the binding's sizeof.
    for cls, name in _lib._INITS.items():
        n = ctypes.sizeof(cls)
        buf = (ctypes.c_ubyte * (n + 40))(*([0x7f] * (n + 40)))
        assert _lib.fn(name)(ctypes.cast(buf, ctypes.POINTER(cls)), n) == 0
        assert ctypes.c_size_t.from_buffer(buf).value == n, name
        assert list(buf[n:]) == [0x7f] * 40, name
        ref = _lib.struct_init(cls)
        assert bytes(buf[:n]) == ctypes.string_at(ctypes.addressof(ref), n), name


def test_struct_init_passes_the_binding_size(monkeypatch):
    # A newer library accepts an older caller's struct: the binding passes its
    # own size, to the init and then to the call.
    name = _lib._INITS[_lib.SvdOpts]
    real = real_fn(name)
    sizes = []

    def init(p, size):
        sizes.append(size)
        return real(p, size)

    monkeypatch.setattr(_lib, "fn", lambda n: init if n == name else real_fn(n))
    opts = _lib.struct_init(_lib.SvdOpts)
    assert sizes == [ctypes.sizeof(_lib.SvdOpts)]
    assert opts.size == ctypes.sizeof(_lib.SvdOpts) and opts.oversample == 10
    a = np.random.default_rng(5).standard_normal((9, 6))
    check(fasvd.svdvals(a, rank=3, backend="randomized"), svals(a)[:3], 1e-6)


def test_a_refused_binding_size_is_an_internal_error(monkeypatch):
    # A library whose StackOpts starts larger than the binding's (another
    # major version, or a binding that disagrees with the headers) refuses the
    # binding's size: InternalError naming the struct, not a corrupted call.
    name = _lib._INITS[_lib.StackOpts]
    real = real_fn(name)
    monkeypatch.setattr(_lib, "fn",
                        lambda n: (lambda p, size: real(p, size - 1)) if n == name else
                        real_fn(n))
    with pytest.raises(fasvd.InternalError, match="StackOpts"):
        _lib.struct_init(_lib.StackOpts)


def _run_import(env_extra):
    env = dict(os.environ)
    env.update(env_extra)
    env["PYTHONPATH"] = PKG_ROOT
    return subprocess.run([sys.executable, "-c", "import fasvd; print(fasvd.library_path)"],
                          env=env, capture_output=True, text=True)


def test_loader_honours_fasvd_library(tmp_path):
    r = _run_import({"FASVD_LIBRARY": str(tmp_path / "nope.so")})
    assert r.returncode != 0
    assert "LibraryNotFound" in r.stderr and "FASVD_LIBRARY" in r.stderr
    r = _run_import({"FASVD_LIBRARY": os.path.abspath(fasvd.library_path)})
    assert r.returncode == 0 and r.stdout.strip() == os.path.abspath(fasvd.library_path)
