"""Model folders: open, describe, analyse (fasvd/model.h, analyze.h)."""

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading

import numpy as np

from . import _lib as L
from . import errors
from ._core import _Handle, get_context, parse_choice, parse_compute
from .spectra import LayerSpectra, Result, read_safetensors

__all__ = ["Model", "open", "architectures", "truncate"]


def architectures():
    """The canonical model_type of every supported architecture."""
    return [L.decode(L.lib.fasvd_arch_name(i)) for i in range(L.lib.fasvd_arch_count())]


def _s(b):
    return L.decode(b)


def _info_dict(i):
    return {
        "model_type": _s(i.model_type), "arch": _s(i.arch), "dir": _s(i.dir),
        "config_path": _s(i.config_path), "layer_prefix": _s(i.layer_prefix),
        "mla": bool(i.mla), "nested_config": bool(i.nested_config),
        "norm": L.NORM_KINDS.get(i.norm, "?"), "n_layers": i.n_layers, "n_heads": i.n_heads,
        "n_kv_heads": i.n_kv_heads, "hidden": i.hidden, "head_dim": i.head_dim,
        "q_head": i.q_head, "q_rope": i.q_rope, "k_head": i.k_head, "v_head": i.v_head,
        "q_in": i.q_in, "kv_in": i.kv_in, "q_lora_rank": i.q_lora_rank,
        "kv_lora_rank": i.kv_lora_rank,
        "block_size": (i.block_rows, i.block_cols) if i.block_rows else None,
        "weight_dtypes": [d.strip() for d in (_s(i.weight_dtypes) or "").split(",")
                          if d.strip()],
        "has_bias": bool(i.has_bias), "n_shards": i.n_shards, "n_needed": i.n_needed,
        "n_missing": i.n_missing, "bytes_needed": i.bytes_needed,
    }


def _input_dict(x):
    return {
        "layer": x.layer, "role": _s(x.role), "name": _s(x.name), "is_norm": bool(x.is_norm),
        "present": bool(x.present), "dtype": _s(x.dtype), "file": _s(x.file),
        "shape": tuple(x.shape[:x.ndim]), "nbytes": x.nbytes, "scale_name": _s(x.scale_name),
        "scale_present": bool(x.scale_present), "scale_file": _s(x.scale_file),
        "scale_nbytes": x.scale_nbytes, "has_bias": bool(x.has_bias),
        "factored": bool(x.factored), "rank": x.rank, "factor_heads": x.factor_heads,
    }


def _parse_layers(layers, n_layers):
    """(first, last) inclusive from None, an int, "A-B" / "A" / "A-", a
    contiguous range or list, or a (first, last) pair (inclusive). n_layers
    None (several models): negative indexes are refused."""
    def norm(i):
        i = int(i)
        if i < 0 and n_layers is None:
            raise errors.InvalidArgument("layers=%r: negative indexes need one model's layer "
                                         "count" % (layers,))
        return i + n_layers if i < 0 else i
    if layers is None:
        return 0, -1
    if isinstance(layers, (int, np.integer)):
        return norm(layers), norm(layers)
    if isinstance(layers, str):
        m = re.match(r"^\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?$", layers)
        if not m:
            raise errors.InvalidArgument("layers=%r: use 'A-B', 'A', 'A-', an int, a range "
                                         "or a (first, last) pair" % (layers,))
        a = int(m.group(1))
        if not m.group(2):
            return a, a
        return a, (int(m.group(3)) if m.group(3) else -1)
    if isinstance(layers, range):
        if layers.step != 1 or len(layers) == 0:
            raise errors.InvalidArgument("layers=%r: the analysis takes one contiguous, "
                                         "non-empty range of layers" % (layers,))
        return norm(layers.start), norm(layers.stop - 1)
    if isinstance(layers, tuple) and len(layers) == 2:
        return norm(layers[0]), norm(layers[1])
    try:
        seq = sorted(norm(x) for x in layers)
    except TypeError:
        raise errors.InvalidArgument("layers=%r is not understood" % (layers,)) from None
    if not seq or seq != list(range(seq[0], seq[-1] + 1)):
        raise errors.InvalidArgument("layers=%r: the analysis takes one contiguous, non-empty "
                                     "range of layers" % (layers,))
    return seq[0], seq[-1]


def _c_strings(strings):
    """(keep-alive array, char ** or None, count) for a str or a sequence of
    str; keep the first item alive while C reads the pointer."""
    if isinstance(strings, str):
        strings = [strings]
    strings = list(strings)
    arr = (L.c_char_p * max(1, len(strings)))(*[s.encode() for s in strings])
    return arr, (ctypes.cast(arr, L.P(L.c_char_p)) if strings else None), len(strings)


def analysis_opts(first_last, tau, fold_norms, stack_norm, tensors, compute):
    """A fasvd_analyze_opts of the analysis options shared by Model.analyze
    and fasvd.survey, and what must stay alive while C reads it: (opts,
    (taus, tau array, tensor pattern array))."""
    taus = (float(tau),) if np.ndim(tau) == 0 else tuple(float(t) for t in tau)
    if not taus:
        raise errors.InvalidArgument("tau: give at least one value")
    o = L.struct_init(L.AnalyzeOpts)
    o.layer_first, o.layer_last = first_last
    tv = np.ascontiguousarray(taus, dtype=np.float64)
    o.taus = tv.ctypes.data_as(L.P(L.c_double))
    o.n_taus = tv.size
    o.fold_norms = 1 if fold_norms else 0
    o.stack_norm = parse_choice(stack_norm, L.STACK_NORMS, "stack_norm")
    o.compute = parse_compute(compute)
    globs, o.tensor_globs, o.n_tensor_globs = _c_strings(tensors)
    return o, (taus, tv, globs)


@contextlib.contextmanager
def _sigint_recorded(state):
    """While a C call runs Python callbacks, make Ctrl-C set state["exc"]
    instead of raising. A signal that arrives during the C work is raised as
    the next callback is entered, before any ``try`` of its own, and ctypes
    prints such an exception ("Exception ignored ...") and drops it. Recorded
    here, it makes the callbacks return "cancel", and _call_cancellable
    raises it once the C call has returned. Only in the main thread and when
    SIGINT has Python's default handler (a program's own handler is left
    alone)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return

    def record(signum, frame):
        if state["exc"] is None:
            state["exc"] = KeyboardInterrupt()

    old = signal.signal(signal.SIGINT, record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _call_cancellable(state, name, *args):
    """L.call(name, *args) for a C function whose callbacks store their
    exception (or a Ctrl-C, see _sigint_recorded) in state["exc"] and return
    1 to cancel: the stored exception is raised instead of Cancelled, or
    after a call that ended anyway (raised at the last callback)."""
    with _sigint_recorded(state):
        try:
            L.call(name, *args)
        except errors.Cancelled:
            if state["exc"] is not None:
                raise state["exc"] from None
            raise
    if state["exc"] is not None:
        raise state["exc"]


def _progress_printer(stream=None):
    stream = stream or sys.stderr
    base = {}

    def show(p):
        frac = p["steps_done"] / p["steps_total"] if p["steps_total"] else 1.0
        if p["stage"] == "start":
            base["frac"] = frac  # the steps of an earlier run (resume) took no time now
            return
        mine = frac - base.get("frac", 0.0)
        eta = "%.1f s" % ((1 - frac) * p["elapsed_s"] / mine) if mine > 0 else "--"
        what = ("layer %d" % p["layer"] if p["layer"] >= 0 else
                (p["tensor"] or p["stage"]))
        stream.write("fasvd: %3d%% %d/%d %s, %.1f s elapsed, ETA %s\n"
                     % (round(100 * frac), p["steps_done"], p["steps_total"], what,
                        p["elapsed_s"], eta))
        stream.flush()
    return show


class Model(_Handle):
    """A model folder opened for analysis (config.json + safetensors
    checkpoint, single or sharded; see docs/architectures.md), or a GGUF
    file (llama.cpp's format: architecture and dimensions from its
    metadata, tensors dequantised exactly; docs/gguf.md).

    ``info``: a dict describing it (architecture, layers, heads, KV heads,
    head dimensions, latent ranks, dtypes, tensors needed / missing, bytes
    an analysis reads). ``config``: config.json parsed. ``inputs``: every
    checkpoint tensor the layers read, with shape, dtype, shard and
    presence. Use as a context manager or call :meth:`close`; the checkpoint
    stays mapped (not read) while the Model is open.
    """

    def __init__(self, path, require_all=False, threads=None, ctx=None):
        self.path = os.fspath(path)
        self.ctx = get_context(threads, ctx)
        h = L.model_p()
        L.call("fasvd_model_open", ctypes.byref(h), self.ctx, self.path.encode(),
               L.MODEL_REQUIRE_ALL if require_all else 0)
        self._h = h
        info = L.struct_init(L.ModelInfo)
        L.call("fasvd_model_info_get", ctypes.byref(info), self)
        self.info = _info_dict(info)
        self.config = json.loads(L.decode(L.lib.fasvd_model_config_json(self)) or "{}")

    _free_fn = "fasvd_model_free"

    def _describe(self):
        return "model %s" % self.path

    @property
    def n_layers(self):
        return self.info["n_layers"]

    @property
    def inputs(self):
        self._require()
        out = []
        for i in range(L.lib.fasvd_model_input_count(self)):
            x = L.struct_init(L.ModelInput)
            L.call("fasvd_model_input_get", ctypes.byref(x), self, i)
            out.append(_input_dict(x))
        return out

    def _gguf(self):
        """The GGUF reader of a GGUF model (its checkpoint is no
        safetensors one), opened on first use; None otherwise."""
        if L.lib.fasvd_model_checkpoint(self) or self.info["config_path"] is None:
            return None
        if getattr(self, "_gg", None) is None:
            g = L.gguf_p()
            L.call("fasvd_gguf_open", ctypes.byref(g), self.ctx, self.info["config_path"].encode())
            self._gg = g
        return self._gg

    def close(self):
        g, self._gg = getattr(self, "_gg", None), None
        if g and L is not None and L.lib is not None:
            L.lib.fasvd_gguf_free(g)
        super().close()

    def tensor_names(self):
        """Every tensor name of the checkpoint (sorted)."""
        self._require()
        g = self._gguf()
        if g:
            return sorted(L.decode(L.lib.fasvd_gguf_tensor_name(g, i))
                          for i in range(L.lib.fasvd_gguf_tensor_count(g)))
        st = L.lib.fasvd_model_checkpoint(self)
        return [L.decode(L.lib.fasvd_st_name(st, i)) for i in range(L.lib.fasvd_st_count(st))]

    def tensor(self, name, scales=True):
        """A 2-D checkpoint tensor decoded to float64 (FP8 block scales
        applied unless ``scales=False``; a GGUF tensor dequantised exactly
        as ggml does, ``ne = {in, out}`` giving out rows). Raises
        NotFoundError, ShapeError (not 2-D), DtypeError."""
        self._require()
        t = L.tensor_p()
        g = self._gguf()
        if g:
            L.call("fasvd_gguf_tensor", ctypes.byref(t), g, name.encode())
        else:
            L.call("fasvd_st_tensor", ctypes.byref(t), L.lib.fasvd_model_checkpoint(self),
                   name.encode(), 0 if scales else L.ST_NO_SCALES)
        try:
            rows, cols = L.lib.fasvd_tensor_rows(t), L.lib.fasvd_tensor_cols(t)
            out = np.empty((rows, cols), dtype=np.float64)
            L.call("fasvd_tensor_to_f64", out.ctypes.data_as(L.P(L.c_double)), cols,
                   L.LAYOUT_ROW_MAJOR, t, L.DECODE_ALLOW_NONFINITE)
            return out
        finally:
            L.lib.fasvd_tensor_free(t)

    @contextlib.contextmanager
    def _layer_handle(self, layer, fold_norms):
        """An open fasvd_model_layer of this model, freed on exit."""
        self._require()
        opts = L.struct_init(L.ModelLayerOpts)
        opts.fold_norms = 1 if fold_norms else 0
        lh = L.layer_p()
        L.call("fasvd_model_layer_open", ctypes.byref(lh), self, int(layer), ctypes.byref(opts))
        try:
            yield lh
        finally:
            L.lib.fasvd_model_layer_free(lh)

    def layer(self, layer, fold_norms=True):
        """The canonical per-head matrices of one layer (docs/design.md),
        decoded to float64 with the norms folded (unless ``fold_norms`` is
        False): a dict with "Q", "Q_pe", "K", "V", "O" ([heads, rows, cols])
        and, for MLA, "QA", "KVA", "KVA_pe" (2-D); absent parts are left out.
        Materialises the layer's attention weights in memory."""
        with self._layer_handle(layer, fold_norms) as lh:
            d = L.struct_from_library(L.lib.fasvd_model_layer_desc(lh), L.LayerDesc,
                                      "fasvd_model_layer_desc")
            out = {}
            for name, h in (("Q", d.q), ("Q_pe", d.q_pe), ("K", d.k), ("V", d.v), ("O", d.o)):
                if not h:
                    continue
                n = L.lib.fasvd_heads_count(h)
                r, c = L.lib.fasvd_heads_rows(h), L.lib.fasvd_heads_cols(h)
                arr = np.empty((n, r, c), dtype=np.float64)
                for i in range(n):
                    L.call("fasvd_heads_decode_f64", arr[i].ctypes.data_as(L.P(L.c_double)), c,
                           L.LAYOUT_ROW_MAJOR, h, i)
                out[name] = arr
            for name, t, sc in (("QA", d.qa, d.qa_col_scale), ("KVA", d.kva, d.kva_col_scale),
                                ("KVA_pe", d.kva_pe, d.kva_pe_col_scale)):
                if not t:
                    continue
                r, c = L.lib.fasvd_tensor_rows(t), L.lib.fasvd_tensor_cols(t)
                arr = np.empty((r, c), dtype=np.float64)
                L.call("fasvd_tensor_to_f64", arr.ctypes.data_as(L.P(L.c_double)), c,
                       L.LAYOUT_ROW_MAJOR, t, 0)
                if sc:
                    arr *= np.ctypeslib.as_array(sc, shape=(c,))
                out[name] = arr
            return out

    def rope_bands(self, layer, fold_norms=True):
        """RoPE frequency bands of one layer: ``(share, inv_freq)``, share
        [n_heads, n_pairs] the part of each rotary pair (head rows j and
        j + d/2) in the head's QK, ‖Q_i pair rows‖_F·‖K_g(i) pair rows‖_F
        normalised per head (MHA2MLA's ranking, on the weights), inv_freq
        [n_pairs] the pair's radians per position. Raises ArchError for
        models without RoPE, MLA, GGUF and unsupported rope scaling."""
        with self._layer_handle(layer, fold_norms) as lh:
            n = L.c_int64()
            L.call("fasvd_model_layer_rope_bands", None, 0, None, ctypes.byref(n), lh)
            share = np.empty((self.info["n_heads"], n.value), dtype=np.float64)
            freq = np.empty(n.value, dtype=np.float64)
            L.call("fasvd_model_layer_rope_bands", share.ctypes.data_as(L.P(L.c_double)),
                   share.size, freq.ctypes.data_as(L.P(L.c_double)), ctypes.byref(n), lh)
            return share, freq

    def spectra(self, layer, fold_norms=True, stack_norm="sigma1", compute="f32"):
        """Every spectrum of one layer, in memory (no file): a
        :class:`fasvd.LayerSpectra`, the dict "head.VO" -> [n_heads, k],
        "stack.O" -> [k], "sub.KVA" -> [k] ... with the structural rank
        bound of each matrix (``max_rank(name)``, ``max_ranks``) and its
        shape (``matrix_shapes``), computed exactly as :meth:`analyze`
        computes them."""
        self._require()
        lopts = L.struct_init(L.ModelLayerOpts)
        lopts.fold_norms = 1 if fold_norms else 0
        o = L.struct_init(L.LayerOpts)
        o.compute = parse_compute(compute)
        o.stack_norm = parse_choice(stack_norm, L.STACK_NORMS, "stack_norm")
        lh = L.layer_p()
        sp = L.spectra_p()
        L.call("fasvd_model_layer_open", ctypes.byref(lh), self, int(layer),
               ctypes.byref(lopts))
        try:
            L.call("fasvd_layer_spectra", ctypes.byref(sp), self.ctx,
                   L.lib.fasvd_model_layer_desc(lh), ctypes.byref(o))
            out, shapes, bounds = {}, {}, {}
            for i in range(L.lib.fasvd_spectra_count(sp)):
                nr, nc, mr, mc, mx = (L.c_int64() for _ in range(5))
                L.call("fasvd_spectra_shape", ctypes.byref(nr), ctypes.byref(nc),
                       ctypes.byref(mr), ctypes.byref(mc), sp, i)
                L.call("fasvd_spectra_max_rank", ctypes.byref(mx), sp, i)
                name = L.decode(L.lib.fasvd_spectra_name(sp, i))
                data = np.ctypeslib.as_array(L.lib.fasvd_spectra_data(sp, i),
                                             shape=(nr.value * nc.value,)).copy()
                out[name] = data.reshape(nr.value, nc.value) if name.startswith("head.") \
                    else data
                shapes[name] = (mr.value, mc.value)
                bounds[name] = mx.value
            return LayerSpectra(out, shapes, bounds)
        finally:
            L.lib.fasvd_spectra_free(sp)
            L.lib.fasvd_model_layer_free(lh)

    def analyze(self, out=None, layers=None, tau=(0.01, 0.001), fold_norms=True,
                stack_norm="sigma1", tensors=(), threads=None, resume=False, compute="f32",
                progress=None, json_path=None, csv_path=None, force=False, shard=None,
                rope_offsets=()):
        """Run the whole analysis (``fasvd analyze``) and return a
        :class:`fasvd.Result`.

        ``out``: the spectra file to write (kept); None analyses into a
        temporary file that is read back and removed. ``layers``: None (all),
        an int (negative counts from the end), "A-B" / "A" / "A-" as the CLI,
        a range, or a (first, last) pair, both inclusive. ``tau``: the τ
        values of the result's effective ranks and of the JSON / CSV
        summaries (fractions of squared Frobenius energy lost).
        ``fold_norms``, ``stack_norm`` ("sigma1", "frobenius", "none"),
        ``tensors`` (fnmatch patterns of extra 2-D tensors, written as
        T.{name}), ``resume`` (continue ``out`` after an interrupted run),
        ``compute`` ("f32" or "f64"), ``json_path`` / ``csv_path``,
        ``force`` (replace an existing complete ``out``): as the CLI's
        --no-fold-norms, --stack-norm, --tensors, --resume, --compute, --json,
        --csv, --force. ``threads``: worker threads (default: the model's
        context, all CPUs). ``shard``: None (everything) or (i, n), only
        work item i of n (0 <= i < n) of the selected layers and tensors,
        dealt by estimated cost, as the CLI's --shard I/N: ``out`` is a
        partial spectra file (needed: shard=... requires out=) that
        :func:`fasvd.merge` joins with the other n - 1 into the file of a
        whole run; each can run in its own process or on its own node (Ray,
        Dask, a job array). ``rope_offsets``: integer offsets Δ (at most
        64), as the CLI's --rope-offsets: the result also holds head.QK@Δ
        and stack.QK@Δ, the spectra of W_Qᵀ·R(Δ)ᵀ·W_K (a query and the key
        Δ positions before it under the model's rotary embedding; MLA
        models: head.QK_pe@Δ and stack.QK_pe@Δ, each head's Q_pe against
        the shared k_pe); models without RoPE and GGUF inputs raise.
        ``progress``: None, True (a line per step on stderr), or a callable
        receiving a dict (stage, layer, tensor, steps_done, steps_total,
        bytes_done, bytes_total, elapsed_s); returning True cancels. A
        cancelled run (or Ctrl-C, or an exception in the callback) stops
        after the current layer: ``out`` keeps every completed layer and
        ``resume=True`` continues it; Cancelled (or the callback's
        exception) is raised.
        Raises InvalidArgument (bad option, layer range outside the model,
        a pattern matching nothing, resume with other options), NotFoundError
        (a needed tensor is missing), NonFiniteError, fasvd.IOError, ...
        """
        self._require()
        ctx = self.ctx if threads is None else get_context(threads)
        o, keep = analysis_opts(_parse_layers(layers, self.n_layers), tau, fold_norms,
                                stack_norm, tensors, compute)
        taus = keep[0]
        o.resume = 1 if resume else 0
        o.force = 1 if force else 0
        if shard is not None:
            try:
                o.shard_index, o.shard_count = (int(v) for v in shard)
            except (TypeError, ValueError):
                raise errors.InvalidArgument("shard=%r: give (i, n)" % (shard,)) from None
            if not 0 <= o.shard_index < o.shard_count:
                raise errors.InvalidArgument("shard=%r: 0 <= i < n needed" % (shard,))
            if out is None:
                raise errors.InvalidArgument("shard= needs out= (the shard file to keep)")
        rv = np.ascontiguousarray([int(d) for d in rope_offsets], dtype=np.int64)
        if rv.size:
            o.rope_offsets = rv.ctypes.data_as(L.P(L.c_int64))
            o.n_rope_offsets = rv.size
        if json_path is not None:
            o.json_path = os.fspath(json_path).encode()
        if csv_path is not None:
            o.csv_path = os.fspath(csv_path).encode()

        if progress is True:
            progress = _progress_printer()
        elif progress is not None and not callable(progress):
            raise errors.InvalidArgument("progress must be None, True or a callable")
        state = {"exc": None}

        def trampoline(user, p):
            try:
                if state["exc"] is not None:  # Ctrl-C recorded: cancel
                    return 1
                if progress is None:
                    return 0
                c = L.struct_from_library(p, L.Progress, "fasvd_analyze")
                d = {"stage": L.decode(c.stage), "layer": c.layer,
                     "tensor": L.decode(c.tensor), "steps_done": c.steps_done,
                     "steps_total": c.steps_total, "bytes_done": c.bytes_done,
                     "bytes_total": c.bytes_total, "elapsed_s": c.elapsed_s}
                cancel = progress(d) is True
                return 1 if cancel or state["exc"] is not None else 0
            except BaseException as e:  # KeyboardInterrupt included: cancel, re-raise later
                state["exc"] = e
                return 1

        cb = L.PROGRESS_FN(trampoline)
        o.progress = cb

        tmpdir = None
        if out is None:
            if resume:
                raise errors.InvalidArgument("resume=True needs out= (the file to continue)")
            tmpdir = tempfile.mkdtemp(prefix="fasvd-")
            path = os.path.join(tmpdir, "spectra.safetensors")
        else:
            path = os.fspath(out)
        try:
            _call_cancellable(state, "fasvd_analyze", ctx, self.path.encode(), path.encode(),
                              ctypes.byref(o))
            spectra, meta = read_safetensors(path)
            if tmpdir is not None:
                spectra = {k: np.array(v) for k, v in spectra.items()}
            res = Result(spectra, meta, path=None if tmpdir else path, taus=taus)
            for a in (res.spectra.values()):
                a.flags.writeable = False
            return res
        finally:
            del cb
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)

    def __repr__(self):
        i = self.info
        return "<fasvd.Model %s (%s): %d layers, %d heads, %d KV heads>" % (
            self.path, i["model_type"], i["n_layers"], i["n_heads"], i["n_kv_heads"])


def open(model_dir, require_all=False, threads=None, ctx=None):  # noqa: A001 (fasvd.open)
    """Open a model folder (config.json + safetensors checkpoint), a
    checkpoint file / index inside one, or a GGUF file (or a folder holding
    one GGUF model and no config.json): a :class:`Model`. ``require_all``:
    fail with NotFoundError when a tensor the layers need is missing
    (otherwise missing tensors are listed in ``info`` and refused by the
    analysis). Raises NotFoundError, ArchError (unknown architecture or an
    inconsistent config: the detail names the key), FormatError,
    ShapeError, DtypeError, fasvd.IOError."""
    return Model(model_dir, require_all=require_all, threads=threads, ctx=ctx)


_TRUNC_DTYPES = {None: 0, "f32": L.DTYPE_F32, "f16": L.DTYPE_F16, "bf16": L.DTYPE_BF16,
                 "f64": L.DTYPE_F64}
_DTYPE_NAMES = {L.DTYPE_F64: "F64", L.DTYPE_F32: "F32", L.DTYPE_F16: "F16",
                L.DTYPE_BF16: "BF16", L.DTYPE_F8_E4M3: "F8_E4M3", L.DTYPE_F8_E5M2: "F8_E5M2"}


def merge(parts, out, force=False, threads=None):
    """Join the shard files ``parts`` (written by :meth:`Model.analyze`
    with shard=(i, n) for every i of n, in any order) into the spectra file
    ``out`` of a whole run, byte for byte what one analysis with the same
    options and thread count writes (``fasvd merge``). The parts must be
    complete shards of the same model, checkpoint, options and library
    version, each layer in exactly one; an existing ``out`` is replaced only
    with ``force``. Returns ``out``. Raises InvalidArgument (parts that do not
    belong together or do not cover every layer once, naming the part and
    the layer; an existing ``out``), FormatError, fasvd.IOError."""
    paths = [os.fspath(p).encode() for p in parts]
    if not paths:
        raise errors.InvalidArgument("merge: no parts")
    arr = (ctypes.c_char_p * len(paths))(*paths)
    o = L.struct_init(L.MergeOpts)
    o.force = 1 if force else 0
    L.call("fasvd_merge", get_context(threads), arr, len(paths), os.fspath(out).encode(),
           ctypes.byref(o))
    return os.fspath(out)


def truncate(model_dir, out_dir, rank=None, energy_loss=None, max_rank=None, tensors=(),
             per_head=False, shared_o=False, dtype=None, split="balanced", compute="f64",
             backend=None, allow_larger=False, threads=None, progress=None,
             only_if_smaller=None, format="factors", calibration=None,  # noqa: A002
             whiten=True):
    """Write a low-rank copy of a checkpoint (``fasvd truncate``): every
    selected weight W of ``model_dir`` is replaced in ``out_dir`` by
    ``<name>.A`` and ``<name>.B`` with W ≈ A @ B, everything else copied
    byte for byte, config.json annotated with a "fasvd_lowrank" section.

    Give ``rank`` (clamped to min(rows, cols)) or ``energy_loss`` τ (the
    smallest rank losing at most τ of the SQUARED Frobenius norm; capped by
    ``max_rank``). ``tensors``: fnmatch patterns of the weights to replace
    (default: every attention projection of the architecture).
    ``per_head``: factorise each head's rows separately; ``shared_o``:
    o_proj over one output basis shared by all heads; ``dtype``: factor
    dtype "f32", "f16", "bf16", "f64" (None: the weight's own for F32 / F16 /
    BF16, bf16 for FP8, f32 for F64); ``split``, ``compute`` (default "f64":
    the reported losses exact to rounding), ``backend`` as :func:`fasvd.factor`
    (default exact; "randomized" is approximate: each report then says
    ``approximate`` with the loss achieved and, with ``energy_loss``, the
    ``optimal_energy_lost``). A weight whose factors would not be smaller
    stays dense (its entry says ``skipped``); when no weight would be smaller
    nothing is written (InvalidArgument). ``allow_larger=True`` replaces
    them anyway (``only_if_smaller=False`` is the older spelling of it).
    ``format``: "factors" (default: ``<name>.A`` / ``<name>.B``; a
    transformers model gets the loader fasvd_lowrank.py and an auto_map, to
    load with ``trust_remote_code=True``) or "dense" (W' = A @ B under the
    weight's own name, dtype and shape: a drop-in checkpoint).
    ``calibration``: a safetensors file of input Grams ``<module>.input_gram``
    (:func:`fasvd.calibration.collect` writes one): activation-aware
    truncation (``whiten=False``: plain, the activation loss measured);
    each report then has ``act_energy_lost``.
    ``progress``: a callable receiving each replaced
    tensor's dict as it is done; returning True cancels (Cancelled; nothing
    is left behind). ``out_dir`` must not exist or be empty.
    Returns the list of replaced tensors: dicts with name, a_name, b_name,
    role, skipped, in_dtype, dtype and the factor report (rank, inner,
    energy_lost, rel_error_sq, params_before, params_after ...).
    Raises InvalidArgument, NotFoundError, ArchError, FormatError,
    fasvd.IOError, NonFiniteError, Cancelled ...
    """
    from .linalg import _factor_report
    if rank is None and energy_loss is None:
        raise errors.InvalidArgument("give rank= or energy_loss=")
    o = L.struct_init(L.TruncateOpts)
    f = L.struct_init(L.FactorOpts)  # borrowed by o for the call
    if rank is not None:
        if int(rank) < 0:
            raise errors.InvalidArgument("rank=%r must be >= 0" % (rank,))
        f.rank = int(rank)
        if energy_loss is not None:
            raise errors.InvalidArgument("give rank= or energy_loss=, not both")
    else:
        f.rank = L.FACTOR_RANK_TAU
        f.tau = float(energy_loss)
    if max_rank is not None:
        f.max_rank = int(max_rank)
    if dtype not in _TRUNC_DTYPES:
        raise errors.DtypeError("dtype=%r: use f32, f16, bf16 or f64" % (dtype,))
    o.dtype = _TRUNC_DTYPES[dtype]
    f.split = parse_choice(split, L.FACTOR_SPLITS, "split")
    f.compute = parse_compute(compute)
    f.backend = parse_choice(backend, L.BACKENDS, "backend")
    o.factor = ctypes.pointer(f)
    pats, o.patterns, o.n_patterns = _c_strings(tensors)
    o.per_head = 1 if per_head else 0
    o.shared_o = 1 if shared_o else 0
    if only_if_smaller is not None and bool(only_if_smaller) == bool(allow_larger):
        raise errors.InvalidArgument("only_if_smaller=%r contradicts allow_larger=%r"
                                     % (only_if_smaller, allow_larger))
    o.only_if_smaller = 0 if allow_larger or only_if_smaller is False else 1
    o.format = parse_choice(format, {"factors": 0, "dense": 1}, "format")
    f.whiten = 1 if whiten else 0
    cal = os.fsencode(calibration) if calibration is not None else None
    o.calibration = cal
    entries = []
    state = {"exc": None}

    def cb(user, ep):
        try:
            if state["exc"] is not None:  # Ctrl-C recorded: cancel
                return 1
            e = L.struct_from_library(ep, L.TruncateEntry, "fasvd_truncate")
            d = {"name": L.decode(e.name), "a_name": L.decode(e.a_name),
                 "b_name": L.decode(e.b_name), "role": L.decode(e.role),
                 "skipped": bool(e.skipped),
                 "in_dtype": _DTYPE_NAMES.get(e.in_dtype)
                 or L.decode(L.lib.fasvd_dtype_name(e.in_dtype)),  # ggml types (GGUF)
                 "dtype": _DTYPE_NAMES.get(e.dtype, "?"), "report": _factor_report(e.report)}
            entries.append(d)
            cancel = progress is not None and progress(d) is True
            return 1 if cancel or state["exc"] is not None else 0
        except BaseException as exc:
            state["exc"] = exc
            return 1

    fn = L.TRUNCATE_FN(cb)
    try:
        _call_cancellable(state, "fasvd_truncate", get_context(threads),
                          os.fspath(model_dir).encode(), os.fspath(out_dir).encode(),
                          ctypes.byref(o), fn, None)
    finally:
        del fn
    return entries
