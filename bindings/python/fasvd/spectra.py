"""Spectra files (docs/spectra-schema.md) as notebook-style
views, read with numpy alone (no dependency on the ``safetensors`` package).

A spectra file is a safetensors file: an 8-byte little-endian header length
N, N bytes of JSON (tensor name -> dtype, shape, data_offsets; plus
"__metadata__" of strings), then the data. Its tensors are the singular
values, F64, descending:

    L{layer}.head.{NAME}   [n_heads, k]   NAME in Q Q_pe K V O QK KQ VO
    L{layer}.stack.{NAME}  [k]            sigma1-normalised stacked heads
    L{layer}.sub.{NAME}    [k]            QA KVA KVA_pe (MLA)
    T.{tensor name}        [k]            other 2-D tensors asked for
"""

import json
import re
import struct
import warnings

import numpy as np

from . import errors
from . import metrics

__all__ = ["Result", "Ranks", "LayerSpectra", "load_spectra", "read_safetensors"]

_KEY = re.compile(r"^L(\d+)\.(head|stack|sub)\.(.+)$")
_NP_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "F8_E4M3": "u1",
              "F8_E5M2": "u1", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
              "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_MAX_HEADER = 100 * 1000 * 1000


def read_safetensors(path, with_dtypes=False):
    """Read a safetensors file with numpy: ``(tensors, metadata)``, where
    tensors maps names to read-only arrays and metadata is the
    "__metadata__" dict; with ``with_dtypes`` a third dict gives each
    tensor's safetensors dtype. F64 / F32 / F16 and integer tensors come
    as such; BF16 as uint16 and F8_E4M3 / F8_E5M2 as uint8 arrays of codes
    (pass them to :func:`fasvd.tensor` with ``dtype="bf16"`` ...); other
    dtypes raise DtypeError. The whole header is validated (FormatError
    naming the file and tensor): header length, JSON object, dtypes,
    shapes, offsets inside the data and shape x dtype size equal to the
    byte span."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        raise errors.IOError("%s: %s" % (path, e.strerror or e)) from None
    if len(buf) < 8:
        raise errors.FormatError("%s: %d bytes, shorter than the 8-byte header length"
                                 % (path, len(buf)))
    (n,) = struct.unpack("<Q", buf[:8])
    if n == 0 or n > len(buf) - 8 or n > _MAX_HEADER:
        raise errors.FormatError("%s: header length %d out of range (file has %d bytes)"
                                 % (path, n, len(buf)))
    try:
        header = json.loads(buf[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise errors.FormatError("%s: header is not UTF-8 JSON: %s" % (path, e)) from None
    if not isinstance(header, dict):
        raise errors.FormatError("%s: header is not a JSON object" % path)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise errors.FormatError("%s: __metadata__ is not an object of strings" % path)
    data = memoryview(buf)[8 + n:]
    out, dtypes = {}, {}
    for name, e in header.items():
        where = "%s: tensor '%s'" % (path, name)
        if not isinstance(e, dict):
            raise errors.FormatError("%s: entry is not an object" % where)
        dt, shape, offs = e.get("dtype"), e.get("shape"), e.get("data_offsets")
        if not isinstance(dt, str):
            raise errors.FormatError("%s: missing dtype" % where)
        if (not isinstance(shape, list) or not all(isinstance(d, int) and
                                                    not isinstance(d, bool) and d >= 0
                                                    for d in shape)):
            raise errors.FormatError("%s: bad shape %r" % (where, shape))
        if (not isinstance(offs, list) or len(offs) != 2 or
                not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0
                        for o in offs) or offs[0] > offs[1] or offs[1] > len(data)):
            raise errors.FormatError("%s: bad data_offsets %r (data has %d bytes)"
                                     % (where, offs, len(data)))
        if dt not in _NP_DTYPES:
            raise errors.DtypeError("%s: dtype %s is not one this reader takes (%s)"
                                    % (where, dt, ", ".join(_NP_DTYPES)))
        npd = np.dtype(_NP_DTYPES[dt])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * npd.itemsize != offs[1] - offs[0]:
            raise errors.FormatError("%s: shape %s x %s needs %d bytes, span is %d"
                                     % (where, shape, dt, count * npd.itemsize,
                                        offs[1] - offs[0]))
        arr = np.frombuffer(data, dtype=npd, count=count, offset=offs[0]).reshape(shape)
        out[name] = arr
        dtypes[name] = dt
    return (out, meta, dtypes) if with_dtypes else (out, meta)


class Ranks:
    """Effective ranks at one τ, with the same views as :class:`Result`:
    ``heads[layer][name]`` (int array [n_heads]), ``stacked[layer][name]``,
    ``subspaces[layer][name]`` and ``tensors[name]`` (ints)."""

    def __init__(self, result, tau):
        self.tau = float(tau)
        self.heads = {l: {k: metrics.effective_rank(v, tau) for k, v in d.items()}
                      for l, d in result.heads.items()}
        self.stacked = {l: {k: int(metrics.effective_rank(v, tau)) for k, v in d.items()}
                        for l, d in result.stacked.items()}
        self.subspaces = {l: {k: int(metrics.effective_rank(v, tau)) for k, v in d.items()}
                          for l, d in result.subspaces.items()}
        self.tensors = {k: int(metrics.effective_rank(v, tau))
                        for k, v in result.tensors.items()}

    def __repr__(self):
        return "<fasvd.Ranks tau=%g, %d layers>" % (self.tau, len(self.stacked))


class _RankCache(dict):
    """{τ: Ranks}, computed on first access for any τ in [0, 1]."""

    def __init__(self, result, taus):
        super().__init__()
        self._result = result
        for t in taus:
            self[float(t)]

    def __missing__(self, tau):
        r = Ranks(self._result, tau)
        self[float(tau)] = r
        return r


class LayerSpectra(dict):
    """The spectra of one layer in memory (:meth:`fasvd.Model.spectra`): a
    dict "head.VO" -> [n_heads, k], "stack.O" -> [k], "sub.KVA" -> [k] ...,
    with the same bounds as a :class:`Result` read from a file:
    ``matrix_shapes`` (name -> (rows, cols) of the matrix one row
    describes), ``max_ranks`` (name -> its structural rank bound) and
    :meth:`max_rank`."""

    def __init__(self, spectra, matrix_shapes, max_ranks):
        super().__init__(spectra)
        self.matrix_shapes = dict(matrix_shapes)
        self.max_ranks = dict(max_ranks)

    def max_rank(self, name):
        """The structural rank bound of the matrix behind spectrum `name`
        (as :meth:`Result.max_rank`: a fused head at most a head dimension,
        stories260K "head.VO" 8 of 64 x 64; a stack the sum of its blocks'
        bounds); values of the spectrum past it are rounding noise."""
        return self.max_ranks[name]


class Result:
    """The spectra of one model, as notebook-style views.

    - ``heads[layer]['VO']``: per-head spectra, float64 [n_heads, k];
    - ``stacked[layer]['O']``: the sigma1-normalised stack, [k];
    - ``subspaces[layer]['KVA']``: MLA subspaces QA, KVA, KVA_pe, [k];
    - ``tensors['model.layers.0.mlp.up_proj.weight']``: extra tensors;
    - ``effective_ranks[tau]``: a :class:`Ranks` with the same views, for
      each τ in ``taus`` (and any other τ on first access);
    - ``spectra``: every tensor by its file name ("L3.head.VO" ...);
    - ``metadata`` (strings as stored), ``config`` (the model's config.json,
      parsed), ``model_type``, ``layers`` (sorted), ``complete`` (False for
      a run that was interrupted), ``matrix_shapes`` (file name -> (rows,
      cols) of the matrix one row describes), ``max_ranks`` (file name ->
      the structural rank bound of that matrix, see :meth:`max_rank`),
      ``max_ranks_stored`` (False for a file written before libfasvd stored
      the bounds: they are then min(rows, cols), an over-estimate for fused
      and stacked matrices), ``path``.
    Arrays are read-only. τ is a fraction of SQUARED Frobenius energy lost.
    """

    def __init__(self, spectra, metadata, path=None, taus=(0.01, 0.001)):
        self.path = path
        self.spectra = spectra
        self.metadata = dict(metadata)
        self.heads, self.stacked, self.subspaces, self.tensors = {}, {}, {}, {}
        views = {"head": self.heads, "stack": self.stacked, "sub": self.subspaces}
        for key in sorted(spectra, key=_sort_key):
            arr = spectra[key]
            m = _KEY.match(key)
            if m:
                layer, kind, name = int(m.group(1)), m.group(2), m.group(3)
                want = 2 if kind == "head" else 1
                if arr.ndim != want:
                    raise errors.FormatError("%s: tensor '%s' has shape %s, the schema says "
                                             "%d-D" % (path or "spectra", key, arr.shape, want))
                views[kind].setdefault(layer, {})[name] = arr
            elif key.startswith("T."):
                self.tensors[key[2:]] = arr
        self.layers = sorted(set(self.heads) | set(self.stacked) | set(self.subspaces))
        try:
            self.config = json.loads(self.metadata.get("config", "{}") or "{}")
        except ValueError:
            self.config = {}
        self.model_type = self.metadata.get("model_type")
        self.complete = self.metadata.get("complete", "true") == "true"
        self.matrix_shapes = {}
        ms = self.metadata.get("matrix_shapes")
        if ms:
            try:
                self.matrix_shapes = {k: tuple(v) for k, v in json.loads(ms).items()}
            except (ValueError, TypeError, AttributeError):
                raise errors.FormatError("%s: metadata matrix_shapes is not a JSON object of "
                                         "[rows, cols]" % (path or "spectra")) from None
        self.max_ranks_stored = "max_ranks" in self.metadata
        stored = {}
        if self.max_ranks_stored:
            try:
                stored = {k: int(v) for k, v in json.loads(self.metadata["max_ranks"]).items()}
            except (ValueError, TypeError, AttributeError):
                raise errors.FormatError("%s: metadata max_ranks is not a JSON object of "
                                         "integers" % (path or "spectra")) from None
        self.max_ranks = {k: stored.get(k, self._plain_bound(k)) for k in spectra}
        self.taus = tuple(float(t) for t in taus)
        self.effective_ranks = _RankCache(self, self.taus)

    def _plain_bound(self, key):
        shp = self.matrix_shapes.get(key)
        if shp:
            return int(min(shp))
        return int(self.spectra[key].shape[-1])

    def max_rank(self, key):
        """The structural rank bound of the matrix behind spectra key `key`:
        the most rank it can have whatever the weights. min(rows, cols) for a
        plain matrix; a fused head (QK, KQ, VO) has at most a head dimension
        (stories260K "head.VO" is 64 x 64 with bound 8), a stack at most the
        sum of its blocks' bounds and the rank of its shared factor
        (n_kv_heads·head_dim for "stack.QK" under GQA). Values of a
        spectrum past it are rounding noise. From the file's max_ranks
        metadata; older files without it give min(rows, cols)."""
        return self.max_ranks[key]

    def model_name(self):
        """A short name of the model the spectra describe, for titles: the
        file's model_name metadata (the config's ``_name_or_path``, else the
        model folder's name), else the model_type."""
        name = self.metadata.get("model_name")
        if name:
            return name
        return self.model_type or "model"

    def effective_rank(self, tau):
        """:class:`Ranks` at `tau` (cached)."""
        return self.effective_ranks[float(tau)]

    def table(self, taus=None):
        """One dict per matrix (per head for head spectra), like the CLI's
        CSV: layer, kind, name, head, rows, cols, max_rank, sigma1,
        frobenius, stable_rank, entropy_rank, er@τ for each τ and the
        heavy-tailed metrics (:func:`fasvd.metrics.heavy_tailed`, None where
        undefined). ``pandas.DataFrame(result.table())`` gives a tidy frame."""
        taus = self.taus if taus is None else tuple(float(t) for t in taus)
        rows = []
        for key in sorted(self.spectra, key=_sort_key):
            arr = self.spectra[key]
            m = _KEY.match(key)
            if m:
                layer, kind, name = int(m.group(1)), m.group(2), m.group(3)
            elif key.startswith("T."):
                layer, kind, name = None, "tensor", key[2:]
            else:
                continue
            shp = self.matrix_shapes.get(key, (None, None))
            mat = arr if arr.ndim == 2 else arr[None, :]
            for h in range(mat.shape[0]):
                s = metrics.summary(mat[h], taus)
                row = {"layer": layer, "kind": kind, "name": name,
                       "head": h if arr.ndim == 2 else None, "rows": shp[0], "cols": shp[1],
                       "max_rank": self.max_ranks[key], "sigma1": s["spectral"], "frobenius": s["frobenius"],
                       "stable_rank": s["stable_rank"], "entropy_rank": s["entropy_rank"]}
                for t in taus:
                    row["er@%.17g" % t] = s["effective_rank"][t]
                row.update(metrics.heavy_tailed(mat[h], shp[0], shp[1], self.max_ranks[key]))
                rows.append(row)
        return rows

    def __repr__(self):
        return "<fasvd.Result %s: %d layers, %d spectra%s>" % (
            self.model_type, len(self.layers), len(self.spectra),
            "" if self.complete else ", incomplete")


def _sort_key(key):
    m = _KEY.match(key)
    if m:
        return (0, int(m.group(1)), m.group(2), m.group(3))
    return (1, 0, "", key)


def load_spectra(path, taus=(0.01, 0.001)):
    """Load a spectra file written by ``fasvd analyze`` (or
    :meth:`fasvd.Model.analyze`) as a :class:`Result`. ``taus``: the τ
    values whose effective ranks are computed up front (others on demand).
    Raises fasvd.IOError, FormatError (not a safetensors file, or not a
    spectra file: metadata format is not "fasvd.spectra"), DtypeError."""
    path = str(path)
    spectra, meta, dtypes = read_safetensors(path, with_dtypes=True)
    fmt = meta.get("format")
    if fmt != "fasvd.spectra":
        raise errors.FormatError("%s: not a spectra file (metadata format is %r, expected "
                                 "'fasvd.spectra')" % (path, fmt))
    bad = [k for k, d in dtypes.items() if d not in ("F64", "F32")]
    if bad:
        raise errors.FormatError("%s: tensor '%s' has dtype %s; spectra are F64"
                                 % (path, bad[0], dtypes[bad[0]]))
    res = Result(spectra, meta, path=path, taus=taus)
    if not res.max_ranks_stored:
        warnings.warn("%s was written before spectra files stored their rank bounds "
                      "(max_ranks): the maximum ranks are min(rows, cols), an over-estimate "
                      "for fused and stacked matrices; `fasvd analyze` again gives the true "
                      "bounds" % path, stacklevel=2)
    return res
