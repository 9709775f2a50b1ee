"""Effective-rank metrics of spectra (docs/design.md), computed by libfasvd's
metrics.h in double precision.

Every function takes singular values ``s``: finite, non-negative and
descending along the last axis, as :func:`fasvd.svdvals` and the spectra
files give them. A 1-D ``s`` gives a scalar; an array [..., k] (e.g. the
per-head spectra [n_heads, k]) gives one result per row. Invalid spectra
(negative, not descending) raise InvalidArgument, NaN/Inf NonFiniteError.

The heavy-tailed metrics (:func:`powerlaw`, :func:`alpha_weighted`,
:func:`log_norms`, :func:`marchenko_pastur`, :func:`heavy_tailed`) describe
the eigenvalues λ = s² as WeightWatcher does; where one is undefined (fewer
than 20 eigenvalues above 1e-5, an all-zero spectrum) it is None, never a
number.

τ is a fraction of SQUARED Frobenius energy (not of the Frobenius norm):
the effective rank at τ is the smallest r with
sum_{i>r} s_i^2 / sum s_i^2 <= τ. An all-zero spectrum has rank 0.
"""

import ctypes

import numpy as np

from . import _lib as L
from . import errors

__all__ = ["effective_rank", "energy_loss", "energy_kept", "components_for_energy",
           "stable_rank", "entropy_rank", "spectral_norm", "frobenius_norm", "nuclear_norm",
           "summary", "powerlaw", "alpha_weighted", "log_norms", "marchenko_pastur",
           "heavy_tailed"]


def _rows(s):
    a = np.asarray(s, dtype=np.float64)
    if a.ndim == 0:
        raise errors.ShapeError("a spectrum must be at least 1-D")
    flat = np.ascontiguousarray(a.reshape(-1, a.shape[-1]))
    return a.shape[:-1], flat


def _each(s, fn, arg, restype):
    lead, flat = _rows(s)
    out = np.empty(flat.shape[0], dtype=np.int64 if restype is L.c_int64 else np.float64)
    n = flat.shape[1]
    for i in range(flat.shape[0]):
        v = restype()
        ptr = flat[i].ctypes.data_as(L.P(L.c_double))
        if arg is None:
            L.call(fn, ctypes.byref(v), ptr, n)
        else:
            L.call(fn, ctypes.byref(v), ptr, n, arg)
        out[i] = v.value
    if not lead:
        return out[0].item()
    return out.reshape(lead)


def effective_rank(s, tau=0.01):
    """Smallest r whose lost fraction of squared Frobenius energy is <= tau.

    ``tau`` may be a number or a sequence; a sequence adds a last axis (one
    rank per τ). Reference choices: 0.01 and 0.001. τ = 0 counts the non-zero
    values, τ = 1 gives 0."""
    if np.ndim(tau) == 0:
        t = float(tau)
        if not 0.0 <= t <= 1.0:
            raise errors.InvalidArgument("tau=%r must be in [0, 1] (a fraction of squared "
                                         "Frobenius energy)" % (tau,))
        return _each(s, "fasvd_metric_energy_rank", t, L.c_int64)
    return np.stack([np.asarray(effective_rank(s, t)) for t in tau], axis=-1)


def energy_loss(s, r):
    """Fraction of squared Frobenius energy lost by truncating to rank r."""
    return _each(s, "fasvd_metric_energy_loss", int(r), L.c_double)


def energy_kept(s, r):
    """Fraction of squared Frobenius energy kept at rank r (1 - energy_loss)."""
    return _each(s, "fasvd_metric_energy_kept", int(r), L.c_double)


def components_for_energy(s, fraction):
    """Smallest r keeping at least ``fraction`` (0.6, 0.8, 0.9 ...) of the
    squared Frobenius energy."""
    if np.ndim(fraction) == 0:
        return _each(s, "fasvd_metric_components_for_energy", float(fraction), L.c_int64)
    return np.stack([np.asarray(components_for_energy(s, f)) for f in fraction], axis=-1)


def stable_rank(s):
    """Stable rank sum s_i^2 / s_1^2 (0 for the zero matrix)."""
    return _each(s, "fasvd_metric_stable_rank", None, L.c_double)


def entropy_rank(s):
    """Entropy effective rank exp(H(p)), p_i = s_i / sum s (Roy & Vetterli)."""
    return _each(s, "fasvd_metric_entropy_rank", None, L.c_double)


def spectral_norm(s):
    """Spectral norm s_1."""
    return _each(s, "fasvd_metric_spectral_norm", None, L.c_double)


def frobenius_norm(s):
    """Frobenius norm sqrt(sum s_i^2)."""
    return _each(s, "fasvd_metric_frobenius_norm", None, L.c_double)


def nuclear_norm(s):
    """Nuclear norm sum s_i."""
    return _each(s, "fasvd_metric_nuclear_norm", None, L.c_double)


def summary(s, taus=(0.01, 0.001)):
    """Every metric of one 1-D spectrum as a dict: n, nonzero, spectral,
    frobenius, nuclear, stable_rank, entropy_rank and ``effective_rank``
    {τ: rank} for each τ of ``taus``."""
    a = np.ascontiguousarray(s, dtype=np.float64)
    if a.ndim != 1:
        raise errors.ShapeError("summary() takes one 1-D spectrum, got shape %s" % (a.shape,))
    tv = np.ascontiguousarray([float(t) for t in taus], dtype=np.float64)
    ranks = np.zeros(max(tv.size, 1), dtype=np.int64)
    m = L.struct_init(L.MetricSummary)
    L.call("fasvd_metric_summarize", ctypes.byref(m),
           ranks.ctypes.data_as(L.P(L.c_int64)) if tv.size else None,
           a.ctypes.data_as(L.P(L.c_double)), a.size,
           tv.ctypes.data_as(L.P(L.c_double)) if tv.size else None, tv.size)
    return {"n": m.n, "nonzero": m.nonzero, "spectral": m.spectral, "frobenius": m.frobenius,
            "nuclear": m.nuclear, "stable_rank": m.stable_rank,
            "entropy_rank": m.entropy_rank,
            "effective_rank": {float(t): int(r) for t, r in zip(tv, ranks)}}


def _one(s, name):
    a = np.ascontiguousarray(s, dtype=np.float64)
    if a.ndim != 1:
        raise errors.ShapeError("%s() takes one 1-D spectrum, got shape %s" % (name, a.shape))
    return a, a.ctypes.data_as(L.P(L.c_double))


def _defined(fn, *args):
    """Call fn; False where the metric is undefined (FASVD_ERANGE)."""
    try:
        L.call(fn, *args)
    except errors.RangeError:
        return False
    return True


def powerlaw(s):
    """Power-law fit of the eigenvalues λ = s² above 1e-5 by WeightWatcher's
    method (Clauset–Shalizi–Newman MLE of α for every candidate xmin, the
    xmin of least Kolmogorov–Smirnov distance D): a dict with ``alpha``,
    ``D``, ``xmin`` and ``n_tail`` (eigenvalues >= xmin), or None where the
    fit is undefined (fewer than 20 eigenvalues above 1e-5). Pass only the
    values the matrix can have (the first r of a rank-r product)."""
    a, p = _one(s, "powerlaw")
    al, d, x, t = L.c_double(), L.c_double(), L.c_double(), L.c_int64()
    if not _defined("fasvd_metric_powerlaw", ctypes.byref(al), ctypes.byref(d),
                    ctypes.byref(x), ctypes.byref(t), p, a.size):
        return None
    return {"alpha": al.value, "D": d.value, "xmin": x.value, "n_tail": t.value}


def alpha_weighted(s):
    """α · log10 λ_max (None where α is undefined)."""
    a, p = _one(s, "alpha_weighted")
    v = L.c_double()
    return v.value if _defined("fasvd_metric_alpha_weighted", ctypes.byref(v), p, a.size) \
        else None


def log_norms(s):
    """(log10 ‖W‖_F², log10 λ_max); (None, None) for an all-zero spectrum."""
    a, p = _one(s, "log_norms")
    f, m = L.c_double(), L.c_double()
    if not _defined("fasvd_metric_log_norms", ctypes.byref(f), ctypes.byref(m), p, a.size):
        return None, None
    return f.value, m.value


def marchenko_pastur(s, rows, cols):
    """Marchenko–Pastur bulk of a rows x cols matrix with singular values s
    (at most min(rows, cols) of them): a dict with ``bulk_edge`` λ+ =
    σ²(√rows + √cols)² for σ² = ‖W‖_F² / (rows·cols), ``soft_rank`` λ+ /
    λ_max and ``spikes`` (eigenvalues above λ+), or None for an all-zero
    spectrum."""
    a, p = _one(s, "marchenko_pastur")
    e, r, k = L.c_double(), L.c_double(), L.c_int64()
    if not _defined("fasvd_metric_marchenko_pastur", ctypes.byref(e), ctypes.byref(r),
                    ctypes.byref(k), p, a.size, int(rows), int(cols)):
        return None
    return {"bulk_edge": e.value, "soft_rank": r.value, "spikes": k.value}


def heavy_tailed(s, rows=None, cols=None, max_rank=None):
    """Every heavy-tailed metric of one spectrum as a flat dict, with the
    keys of the analyze summaries: alpha, alpha_D, alpha_xmin, alpha_tail,
    alpha_weighted, log10_frobenius_sq, log10_lambda_max, mp_bulk_edge,
    mp_soft_rank, mp_spikes; None where undefined. Only the first
    ``max_rank`` values enter (a structurally rank-deficient matrix: its
    zero tail never enters a fit); the MP keys need ``rows`` and ``cols``
    and are None for such a matrix (max_rank < min(rows, cols))."""
    a = np.ascontiguousarray(s, dtype=np.float64)
    full = a.size if max_rank is None else min(a.size, int(max_rank))
    a = a[:full]
    fit = powerlaw(a)
    lf, lm = log_norms(a)
    mp = None
    if rows is not None and cols is not None and (max_rank is None or
                                                  int(max_rank) >= min(rows, cols)):
        mp = marchenko_pastur(a, rows, cols)
    return {"alpha": fit and fit["alpha"], "alpha_D": fit and fit["D"],
            "alpha_xmin": fit and fit["xmin"], "alpha_tail": fit and fit["n_tail"],
            "alpha_weighted": fit["alpha"] * lm if fit and lm is not None else None,
            "log10_frobenius_sq": lf, "log10_lambda_max": lm,
            "mp_bulk_edge": mp and mp["bulk_edge"], "mp_soft_rank": mp and mp["soft_rank"],
            "mp_spikes": mp and mp["spikes"]}
