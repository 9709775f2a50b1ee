"""Contexts, zero-copy tensors and per-head handles over numpy arrays."""

import ctypes
import sys
import threading

import numpy as np

from . import _lib as L
from . import errors

__all__ = ["Context", "Tensor", "Heads", "tensor", "heads", "dequantize", "DTYPES"]

# dtype names accepted by dtype= (case-insensitive) -> (C value, storage dtype)
_DTYPE_ALIASES = {
    "f64": L.DTYPE_F64, "float64": L.DTYPE_F64, "double": L.DTYPE_F64,
    "f32": L.DTYPE_F32, "float32": L.DTYPE_F32, "float": L.DTYPE_F32,
    "f16": L.DTYPE_F16, "float16": L.DTYPE_F16, "half": L.DTYPE_F16,
    "bf16": L.DTYPE_BF16, "bfloat16": L.DTYPE_BF16,
    "f8_e4m3": L.DTYPE_F8_E4M3, "f8_e4m3fn": L.DTYPE_F8_E4M3, "e4m3": L.DTYPE_F8_E4M3,
    "float8_e4m3fn": L.DTYPE_F8_E4M3,
    "f8_e5m2": L.DTYPE_F8_E5M2, "e5m2": L.DTYPE_F8_E5M2, "float8_e5m2": L.DTYPE_F8_E5M2,
}
_STORAGE = {
    L.DTYPE_F64: np.dtype(np.float64), L.DTYPE_F32: np.dtype(np.float32),
    L.DTYPE_F16: np.dtype(np.float16), L.DTYPE_BF16: np.dtype(np.uint16),
    L.DTYPE_F8_E4M3: np.dtype(np.uint8), L.DTYPE_F8_E5M2: np.dtype(np.uint8),
}
_NAMES = {L.DTYPE_F64: "f64", L.DTYPE_F32: "f32", L.DTYPE_F16: "f16", L.DTYPE_BF16: "bf16",
          L.DTYPE_F8_E4M3: "f8_e4m3", L.DTYPE_F8_E5M2: "f8_e5m2"}
# GGUF tensors (read only: their blocks are decoded, never written)
_NAMES.update({getattr(L, "DTYPE_" + n): n.lower() for n in (
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
    "IQ4_NL", "IQ4_XS")})
# numpy dtypes of the ml_dtypes package (if a caller uses it) by name
_ML_DTYPES = {"bfloat16": L.DTYPE_BF16, "float8_e4m3fn": L.DTYPE_F8_E4M3,
              "float8_e5m2": L.DTYPE_F8_E5M2}

#: The dtype names ``dtype=`` accepts, with the numpy storage they need.
DTYPES = {"f64": "float64", "f32": "float32", "f16": "float16", "bf16": "uint16 codes",
          "f8_e4m3": "uint8 codes (e4m3fn)", "f8_e5m2": "uint8 codes"}

_COMPUTE = {"f32": L.COMPUTE_F32, "float32": L.COMPUTE_F32,
            "f64": L.COMPUTE_F64, "float64": L.COMPUTE_F64}


def parse_dtype(dtype, what="dtype"):
    """C dtype value of a name ("bf16", "F8_E4M3", ...) or numpy dtype."""
    if isinstance(dtype, str):
        code = _DTYPE_ALIASES.get(dtype.lower())
        if code is None:
            raise errors.DtypeError("%s=%r is not one of %s" % (what, dtype, ", ".join(DTYPES)))
        return code
    try:
        nd = np.dtype(dtype)
    except TypeError:
        raise errors.DtypeError("%s=%r is not a dtype" % (what, dtype)) from None
    for code, st in ((L.DTYPE_F64, np.float64), (L.DTYPE_F32, np.float32),
                     (L.DTYPE_F16, np.float16)):
        if nd == st:
            return code
    if nd.name in _ML_DTYPES:
        return _ML_DTYPES[nd.name]
    raise errors.DtypeError("%s=%r: give a float numpy dtype or one of %s"
                            % (what, dtype, ", ".join(DTYPES)))


def dtype_name(code):
    return _NAMES.get(code, "?")


def parse_compute(compute, default=None):
    """C compute value of "f32" / "f64" (None: `default`, then the context's)."""
    if compute is None:
        return default or 0
    if isinstance(compute, str) and compute.lower() in _COMPUTE:
        return _COMPUTE[compute.lower()]
    raise errors.InvalidArgument("compute=%r: use 'f32' or 'f64'" % (compute,))


def parse_choice(value, table, what):
    if value is None:
        return 0
    key = value.lower() if isinstance(value, str) else value
    if key not in table:
        raise errors.InvalidArgument("%s=%r: use one of %s" % (what, value, ", ".join(table)))
    return table[key]


# ------------------------------------------------------------------ handles


class _Handle:
    """Owner of one C handle: passed to ctypes as the handle itself, freed by
    close() (or a with block, or garbage collection) with `_free_fn`; a
    closed handle raises StateError from _require()."""

    _free_fn = None
    _h = None

    @property
    def _as_parameter_(self):
        return self._h

    def _describe(self):
        return type(self).__name__

    def _require(self):
        if self._h is None:
            raise errors.StateError("%s is closed" % self._describe())
        return self

    def close(self):
        """Free the C object now (later uses raise StateError)."""
        h, self._h = self._h, None
        if h and L is not None and L.lib is not None:
            getattr(L.lib, self._free_fn)(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if not sys.is_finalizing():
            self.close()


# ------------------------------------------------------------------ contexts


class Context(_Handle):
    """A libfasvd context: thread count and default compute precision.

    ``threads``: worker threads for parallel work and the BLAS thread count of
    single large problems (None or 0: every online CPU). ``compute``: "f32"
    (the library's default) or "f64", used by calls that do not name one.
    Functions of this package take ``threads=`` and use a shared context per
    thread count (see :func:`get_context`); create a Context yourself only to
    pass it as ``ctx=``. A context may be used by several Python threads at
    once. It is freed when the last object using it is gone.
    """

    def __init__(self, threads=None, compute=None):
        h = L.ctx_p()
        L.call("fasvd_ctx_new", ctypes.byref(h), None)
        self._h = h
        try:
            if threads:
                t = int(threads)
                if t < 0:
                    raise errors.InvalidArgument("threads=%r must be >= 0" % (threads,))
                L.call("fasvd_ctx_set_param", h, L.CTX_THREADS, t)
            if compute is not None:
                L.call("fasvd_ctx_set_param", h, L.CTX_COMPUTE, parse_compute(compute))
        except BaseException:
            self.close()
            raise

    _free_fn = "fasvd_ctx_free"

    @property
    def threads(self):
        """Effective thread count (0 resolved to the number of CPUs)."""
        self._require()
        v = ctypes.c_int64()
        L.call("fasvd_ctx_get_param", ctypes.byref(v), self, L.CTX_THREADS)
        return v.value

    @property
    def compute(self):
        self._require()
        v = ctypes.c_int64()
        L.call("fasvd_ctx_get_param", ctypes.byref(v), self, L.CTX_COMPUTE)
        return "f64" if v.value == L.COMPUTE_F64 else "f32"

    def __repr__(self):
        if self._h is None:
            return "<fasvd.Context closed>"
        return "<fasvd.Context threads=%d compute=%s>" % (self.threads, self.compute)


_contexts = {}
_contexts_lock = threading.Lock()


def get_context(threads=None, ctx=None):
    """`ctx` if given, else the shared context for `threads` (None: all CPUs)."""
    if ctx is not None:
        if not isinstance(ctx, Context):
            raise errors.InvalidArgument("ctx must be a fasvd.Context")
        return ctx._require()
    key = int(threads or 0)
    if key < 0:
        raise errors.InvalidArgument("threads=%r must be >= 0" % (threads,))
    with _contexts_lock:
        c = _contexts.get(key)
        if c is None:
            c = _contexts[key] = Context(threads=key)
        return c


# ------------------------------------------------------------------ tensors


class Tensor(_Handle):
    """A 2-D libfasvd tensor borrowing a numpy array (no copy).

    Create with :func:`fasvd.tensor`. The Tensor keeps the array (and its
    context) alive while the C side borrows it; the array must not be
    modified while the Tensor is used. ``copied`` says whether the binding
    had to copy the array (see :func:`fasvd.tensor`).
    """

    def __init__(self, handle, keep, ctx, copied, name):
        self._h = handle
        self._keep = keep
        self.ctx = ctx
        self.copied = copied
        self.name = name

    _free_fn = "fasvd_tensor_free"

    def _describe(self):
        return "tensor %r" % (self.name,)

    @property
    def shape(self):
        self._require()
        return (L.lib.fasvd_tensor_rows(self), L.lib.fasvd_tensor_cols(self))

    @property
    def strides(self):
        """(row stride, column stride) in elements, as the C side sees them."""
        self._require()
        return (L.lib.fasvd_tensor_row_stride(self), L.lib.fasvd_tensor_col_stride(self))

    @property
    def dtype(self):
        """The element type's name ("f32", "bf16", "f8_e4m3" ...)."""
        self._require()
        return dtype_name(L.lib.fasvd_tensor_dtype(self))

    @property
    def has_block_scales(self):
        self._require()
        return bool(L.lib.fasvd_tensor_has_block_scales(self))

    def to_numpy(self, allow_nonfinite=False):
        """Decode (and dequantise) into a new float64 C-order array, exactly
        (every element of every dtype is a binary64 value). NaN/Inf raise
        NonFiniteError unless allow_nonfinite."""
        self._require()
        rows, cols = self.shape
        out = np.empty((rows, cols), dtype=np.float64)
        L.call("fasvd_tensor_to_f64", out.ctypes.data_as(L.P(L.c_double)), cols,
               L.LAYOUT_ROW_MAJOR, self, L.DECODE_ALLOW_NONFINITE if allow_nonfinite else 0)
        return out

    def close(self):
        """Free the C handle and drop the borrowed array."""
        super().close()
        self._keep = None

    def __repr__(self):
        if self._h is None:
            return "<fasvd.Tensor closed>"
        return "<fasvd.Tensor %r %dx%d %s%s>" % (self.name, self.shape[0], self.shape[1],
                                                self.dtype,
                                                " block-scaled" if self.has_block_scales else "")


def _native(a):
    """`a` in native byte order (copy only if it is not)."""
    if not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="), copy=True), True
    return a, False


def _resolve_array(a, dtype, what):
    """(array, C dtype, copied) for `a` read as `dtype`."""
    copied = False
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
        copied = True
    a, swapped = _native(a)
    copied = copied or swapped
    if dtype is None:
        kind = a.dtype.kind
        if a.dtype in (np.float64, np.float32, np.float16):
            code = parse_dtype(a.dtype)
        elif a.dtype.name in _ML_DTYPES:
            code = _ML_DTYPES[a.dtype.name]
        elif kind == "u" and a.dtype.itemsize in (1, 2):
            raise errors.DtypeError(
                "%s is a %s array: say what its codes are with dtype='bf16' (uint16), "
                "'f8_e4m3' or 'f8_e5m2' (uint8); to use the integers as numbers pass "
                "%s.astype(float)" % (what, a.dtype, what))
        elif kind in "uib":
            a = a.astype(np.float64)
            code, copied = L.DTYPE_F64, True
        else:
            raise errors.DtypeError("%s has dtype %s: libfasvd reads float64, float32, "
                                    "float16, and bf16 / fp8 codes (uint16 / uint8 with "
                                    "dtype=)" % (what, a.dtype))
    else:
        code = parse_dtype(dtype)
        storage = _STORAGE[code]
        if a.dtype.kind == "f" or code in (L.DTYPE_F64, L.DTYPE_F32, L.DTYPE_F16):
            ok = a.dtype == storage or (a.dtype.name in _ML_DTYPES
                                        and _ML_DTYPES[a.dtype.name] == code)
        else:
            ok = a.dtype.itemsize == storage.itemsize and (
                a.dtype.kind in "uiV" or a.dtype.name in _ML_DTYPES)
        if not ok:
            raise errors.DtypeError("%s has dtype %s, which cannot hold dtype=%r (needs %s)"
                                    % (what, a.dtype, dtype, DTYPES[dtype_name(code)]))
    return a, code, copied


def tensor(a, dtype=None, scale_inv=None, block=128, name=None, ctx=None, threads=None):
    """Wrap a 2-D numpy array as a libfasvd :class:`Tensor` without copying.

    The C side reads the array's memory in place, with its strides (C order,
    Fortran order, transposed and sliced views, negative strides all work).
    ``dtype``: None to use the array's own dtype (float64, float32, float16;
    integer arrays are converted to float64), or "bf16" for uint16 arrays of
    bfloat16 codes, "f8_e4m3" / "f8_e5m2" for uint8 arrays of FP8 codes
    ("f32", "f64", "f16" are accepted for arrays of that dtype).
    ``scale_inv``: optional block scales of an FP8 (or F16 / BF16) weight, a
    2-D array of shape [ceil(rows / block_rows), ceil(cols / block_cols)];
    element (r, c) is then ``code(r, c) * scale_inv[r // br, c // bc]``
    (DeepSeek-V3 checkpoints, partial edge blocks included). ``block``: an
    int or a (rows, cols) pair, default 128.

    The array is COPIED (and ``Tensor.copied`` is True) only when it cannot
    be borrowed as is: strides that are not a multiple of the item size,
    unaligned data, non-native byte order, or a non-array input / integer
    dtype needing conversion. The Tensor keeps the array alive; do not
    modify it while the Tensor is in use.
    Raises DtypeError, ShapeError (not 2-D, an empty dimension),
    InvalidArgument, NonFiniteError (a NaN/Inf scale), OutOfMemory.
    """
    if isinstance(a, Tensor):
        if dtype is not None or scale_inv is not None:
            raise errors.InvalidArgument("dtype= and scale_inv= apply to arrays, not to an "
                                         "existing fasvd.Tensor")
        return a._require()
    what = name or "array"
    a, code, copied = _resolve_array(a, dtype, what)
    if a.ndim != 2:
        raise errors.ShapeError("%s must be 2-D, got shape %s" % (what, a.shape))
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise errors.ShapeError("%s is empty (shape %s)" % (what, a.shape))
    item = a.dtype.itemsize
    if (a.strides[0] % item or a.strides[1] % item or not a.flags.aligned):
        a = np.ascontiguousarray(a)
        copied = True
    context = get_context(threads, ctx)
    h = L.tensor_p()
    L.call("fasvd_tensor_new_borrowed", ctypes.byref(h), context, code,
           ctypes.c_void_p(a.ctypes.data), a.shape[0], a.shape[1],
           a.strides[0] // item, a.strides[1] // item)
    t = Tensor(h, [a], context, copied, what)
    if name:
        L.call("fasvd_tensor_set_name", t, name.encode())
    if scale_inv is not None:
        br, bc = _block(block)
        s = np.asarray(scale_inv)
        if s.ndim != 2:
            raise errors.ShapeError("scale_inv of %s must be 2-D, got shape %s"
                                    % (what, s.shape))
        st = tensor(s, name=(name or "array") + "_scale_inv", ctx=context)
        try:
            L.call("fasvd_tensor_set_block_scales", t, st, br, bc)
        finally:
            st.close()  # the scales were copied
    return t


def _block(block):
    if isinstance(block, (int, np.integer)):
        return int(block), int(block)
    try:
        br, bc = block
        return int(br), int(bc)
    except (TypeError, ValueError):
        raise errors.InvalidArgument("block=%r: give an int or a (rows, cols) pair"
                                     % (block,)) from None


def dequantize(a, dtype=None, scale_inv=None, block=128, allow_nonfinite=False):
    """Decode an array of `dtype` codes (and block scales) to float64 with the
    library's exact decoder. Same arguments as :func:`fasvd.tensor`.
    NaN/Inf raise NonFiniteError unless ``allow_nonfinite``."""
    a = np.asarray(a)
    if a.ndim == 1:
        return dequantize(a[None, :], dtype, scale_inv, block, allow_nonfinite)[0]
    return tensor(a, dtype=dtype, scale_inv=scale_inv, block=block).to_numpy(allow_nonfinite)


# ------------------------------------------------------------------ heads


class Heads(_Handle):
    """Per-head operands over one 2-D weight (docs/design.md orientation: each
    head is head_dim rows by the space it reads from or writes to).

    Create with :func:`fasvd.heads`. Immutable except for the column scale
    given at creation; keeps its tensor (and the array) alive.
    """

    def __init__(self, handle, tensor_, col_scale):
        self._h = handle
        self.tensor = tensor_
        self._col_scale = col_scale

    _free_fn = "fasvd_heads_free"

    @property
    def ctx(self):
        return self.tensor.ctx

    @property
    def count(self):
        self._require()
        return L.lib.fasvd_heads_count(self)

    @property
    def head_shape(self):
        """(rows, cols) of one head."""
        self._require()
        return (L.lib.fasvd_heads_rows(self), L.lib.fasvd_heads_cols(self))

    def __len__(self):
        return self.count

    def head(self, i):
        """Head i decoded (dequantised, column scale applied) as a float64
        array [rows, cols]."""
        i = int(i)
        if i < 0:
            i += self.count
        rows, cols = self.head_shape
        out = np.empty((rows, cols), dtype=np.float64)
        L.call("fasvd_heads_decode_f64", out.ctypes.data_as(L.P(L.c_double)), cols,
               L.LAYOUT_ROW_MAJOR, self, i)
        return out

    def to_numpy(self):
        """Every head decoded: float64 array [count, rows, cols]."""
        return np.stack([self.head(i) for i in range(self.count)])


    def __repr__(self):
        if self._h is None:
            return "<fasvd.Heads closed>"
        r, c = self.head_shape
        return "<fasvd.Heads %d x [%d, %d] of %r>" % (self.count, r, c, self.tensor.name)


def heads(w, n_heads=None, axis="rows", head_dim=None, offset=0, stride=0, dtype=None,
          scale_inv=None, block=128, col_scale=None, name=None, ctx=None, threads=None):
    """Per-head view of a weight, zero-copy (:class:`Heads`).

    ``w`` is either
      - a 3-D array [n_heads, head_dim, cols]: head i is ``w[i]`` (already in
        docs/design.md orientation; borrowed when its strides allow, else
        copied to C order), or
      - a 2-D weight in PyTorch ``Linear`` layout [out, in] with
        ``axis="rows"`` (q_proj, k_proj, v_proj: head i is rows
        ``offset + i*stride ... + head_dim``; ``stride`` 0 means head_dim;
        interleaved layouts such as MLA q_b_proj [nope | rope] per head or
        kv_b_proj [k_nope ; v] per head use offset / stride), or
        ``axis="cols"`` (o_proj [hidden, n_heads*v_head]: head i is a block
        of columns, transposed, so that O heads are v_head x hidden).
    Give ``n_heads`` or ``head_dim`` for 2-D weights (the other is derived
    when the heads tile the axis). ``col_scale``: optional per-column factors
    (norm folding: the RMSNorm weight gamma, or 1 + gamma for Gemma).
    ``dtype``, ``scale_inv``, ``block``: as :func:`fasvd.tensor`.
    Raises InvalidArgument, ShapeError, DtypeError, NonFiniteError.
    """
    if isinstance(w, Heads):
        return w._require()
    what = name or "weight"
    ax = {"rows": L.AXIS_ROWS, "cols": L.AXIS_COLS, 0: L.AXIS_ROWS, 1: L.AXIS_COLS}.get(axis)
    if ax is None:
        raise errors.InvalidArgument("axis=%r: use 'rows' or 'cols'" % (axis,))
    if isinstance(w, Tensor):
        t = w._require()
    else:
        arr = w if isinstance(w, np.ndarray) else np.asarray(w)
        if arr.ndim == 3:
            if scale_inv is not None:
                raise errors.InvalidArgument("scale_inv= needs the 2-D weight, not a 3-D "
                                             "per-head array (%s)" % what)
            if axis not in ("rows", 0) or offset or stride:
                raise errors.InvalidArgument("%s is 3-D [heads, rows, cols]: axis, offset "
                                             "and stride do not apply" % what)
            h3, r3, c3 = arr.shape
            if n_heads is not None and int(n_heads) != h3:
                raise errors.ShapeError("%s has %d heads (shape %s), n_heads=%d"
                                        % (what, h3, arr.shape, n_heads))
            if head_dim is not None and int(head_dim) != r3:
                raise errors.ShapeError("%s has head_dim %d (shape %s), head_dim=%d"
                                        % (what, r3, arr.shape, head_dim))
            t, stride = _tensor_3d(arr, dtype, what, ctx, threads)
            n_heads, head_dim, offset = h3, r3, 0
        elif arr.ndim == 2:
            t = tensor(arr, dtype=dtype, scale_inv=scale_inv, block=block, name=what, ctx=ctx,
                       threads=threads)
        else:
            raise errors.ShapeError("%s must be 2-D (a projection weight) or 3-D [heads, "
                                    "rows, cols], got shape %s" % (what, arr.shape))
    extent = t.shape[0] if ax == L.AXIS_ROWS else t.shape[1]
    if n_heads is None and head_dim is None:
        raise errors.InvalidArgument("%s: give n_heads or head_dim to split the %s into heads"
                                     % (what, "rows" if ax == L.AXIS_ROWS else "columns"))
    if n_heads is None:
        step = int(stride) or int(head_dim)
        if step <= 0 or (extent - int(offset)) % step:
            raise errors.ShapeError("%s: %d %s do not split into heads of %d (offset %d, "
                                    "stride %d)" % (what, extent, "rows" if ax == L.AXIS_ROWS
                                                    else "columns", int(head_dim),
                                                    int(offset), int(stride)))
        n_heads = (extent - int(offset)) // step
    if head_dim is None:
        if int(stride) or int(offset) or extent % int(n_heads):
            raise errors.ShapeError("%s: cannot derive head_dim from n_heads=%d over %d %s "
                                    "(give head_dim)" % (what, int(n_heads), extent,
                                                         "rows" if ax == L.AXIS_ROWS
                                                         else "columns"))
        head_dim = extent // int(n_heads)
    h = L.heads_p()
    L.call("fasvd_heads_new", ctypes.byref(h), t.ctx, t, ax, int(n_heads), int(head_dim),
           int(offset), int(stride))
    hd = Heads(h, t, None)
    if col_scale is not None:
        cs = np.ascontiguousarray(col_scale, dtype=np.float64)
        if cs.ndim != 1:
            raise errors.ShapeError("col_scale must be 1-D, got shape %s" % (cs.shape,))
        L.call("fasvd_heads_set_col_scale", hd, cs.ctypes.data_as(L.P(L.c_double)), cs.size)
        hd._col_scale = cs
    return hd


def _tensor_3d(arr, dtype, what, ctx, threads):
    """A 2-D tensor over a 3-D per-head array and the head stride in rows."""
    h, r, c = arr.shape
    a, code, copied = _resolve_array(arr, dtype, what)
    item = a.dtype.itemsize
    s0, s1, s2 = a.strides
    ok = (a.flags.aligned and not any(s % item for s in a.strides) and r > 0 and c > 0
          and h > 0)
    if ok and h > 1:
        ok = s1 > 0 and s0 > 0 and s0 % s1 == 0 and s0 // s1 >= r
    if not ok and h > 0 and r > 0 and c > 0:
        a = np.ascontiguousarray(a)
        copied = True
        s0, s1, s2 = a.strides
    if min(h, r, c) < 1:
        raise errors.ShapeError("%s is empty (shape %s)" % (what, arr.shape))
    step = (s0 // s1) if (h > 1 and s1) else r
    rows = (h - 1) * step + r
    context = get_context(threads, ctx)
    hd = L.tensor_p()
    L.call("fasvd_tensor_new_borrowed", ctypes.byref(hd), context, code,
           ctypes.c_void_p(a.ctypes.data), rows, c, s1 // item, s2 // item)
    t = Tensor(hd, [a], context, copied, what)
    L.call("fasvd_tensor_set_name", t, what.encode())
    return t, step
