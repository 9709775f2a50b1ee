"""Plots of spectra files (matplotlib).

Every function takes a :class:`fasvd.Result` (from :meth:`fasvd.Model.analyze`
or :func:`fasvd.load_spectra`) or the path of a spectra file, returns a
``matplotlib.figure.Figure`` and, given ``path=``, also saves it there in the
format of its extension (.png, .svg, .pdf ...). Figures are made without pyplot (``Figure()`` rendered by
the Agg canvas), so they need no display and do not accumulate in pyplot's
figure list; in Jupyter with the inline backend a returned figure is shown.

τ is the fraction of SQUARED Frobenius energy lost by truncating to the
effective rank: rank at τ = smallest r with
1 - sum_{i<=r} s_i^2 / sum s_i^2 <= τ. Every rank axis says so.

Maximum ranks are the structural bounds of the spectra file (a fused VO head
has at most a head dimension, a stacked QK under GQA at most
n_kv_heads·head_dim; :meth:`fasvd.Result.max_rank`), not min(rows, cols), and
singular-value curves stop at them: what lies beyond is rounding noise.
Titles name the model (:meth:`fasvd.Result.model_name`).
"""

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from . import errors, metrics
from .spectra import Result, load_spectra

__all__ = ["layer_ranks", "head_ranks", "spectra", "grid", "esd", "render_all", "TAU_NOTE",
           "FORMATS"]

FORMATS = ("png", "svg", "pdf")

TAU_NOTE = "τ = fraction of squared Frobenius energy lost"
_COLORS = {"Q": "C0", "K": "C1", "V": "C2", "O": "C3", "QK": "C4", "KQ": "C5", "VO": "C6",
           "Q_pe": "C7", "QA": "C8", "KVA": "C9", "KVA_pe": "k"}
_ORDER = ["Q", "Q_pe", "K", "V", "O", "QK", "KQ", "VO", "QA", "KVA", "KVA_pe"]


def _result(r):
    if isinstance(r, Result):
        return r
    return load_spectra(r)


def _taus(res, taus):
    if taus is None:
        return res.taus
    return (float(taus),) if np.ndim(taus) == 0 else tuple(float(t) for t in taus)


def _order(names):
    known = [n for n in _ORDER if n in names]
    return known + sorted(n for n in names if n not in _ORDER)


def _color(name, i):
    return _COLORS.get(name, "C%d" % (i % 10))


def _finish(fig, path, dpi):
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def _rank_label(tau):
    return "effective rank at τ = %g\n(%s)" % (tau, TAU_NOTE)


# "auto" keeps rank axes linear up to this maximum rank: small ranks read
# best on a linear axis, whatever the ratio.
_LOG_MIN_MAX = 128


def _name(res):
    """The model's name for titles, with its architecture when that adds
    something ("stories260K (llama)")."""
    name, arch = res.model_name(), res.model_type
    return "%s (%s)" % (name, arch) if arch and arch != name else name


def _rank_scale(ax, top_data, top_max, yscale):
    """Linear rank axis, or logarithmic ("auto") only when the maximum rank
    is large (> _LOG_MIN_MAX) and would squash the data (> 4 x the largest
    rank plotted)."""
    if yscale == "auto":
        yscale = "log" if top_max > _LOG_MIN_MAX and top_max > 4 * top_data else "linear"
    if yscale == "log":
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.set_ylim(0.8, top_max * 1.25)
    else:
        ax.set_yscale(yscale)
        if yscale == "linear":
            ax.set_ylim(0, top_max * 1.08)
            ax.yaxis.get_major_locator().set_params(integer=True)


def layer_ranks(result, taus=None, names=None, subspaces=None, yscale="auto", path=None,
                dpi=100):
    """Layer-wise effective rank of the stacked heads (left) and of the MLA
    subspaces (right, when the file has them), one row per τ; each name's
    maximum possible rank (the structural bound of its stacked matrix) is
    drawn as a dashed line of the same colour and given in the legend.
    ``yscale``: "auto" (logarithmic only when the maximum ranks are large
    and dwarf the ranks plotted), "linear" or "log". Axes: len(taus) x (1
    or 2)."""
    res = _result(result)
    taus = _taus(res, taus)
    layers = sorted(res.stacked)
    if not layers:
        raise errors.InvalidArgument("the result has no stacked spectra to plot")
    st_names = _order(set().union(*[res.stacked[l].keys() for l in layers]))
    if names is not None:
        st_names = [n for n in names if any(n in res.stacked[l] for l in layers)]
    sub_layers = sorted(res.subspaces)
    sub_names = _order(set().union(*[res.subspaces[l].keys() for l in sub_layers])) \
        if sub_layers else []
    if subspaces is not None:
        sub_names = [n for n in subspaces if n in sub_names]
    ncols = 2 if sub_names else 1
    fig = Figure(figsize=(6.5 * ncols, 3.6 * len(taus)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(taus), ncols, squeeze=False))
    groups = [("stacked heads", "stack", res.stacked, st_names, layers)]
    if sub_names:
        groups.append(("subspaces", "sub", res.subspaces, sub_names, sub_layers))
    for row, tau in enumerate(taus):
        ranks = res.effective_ranks[tau]
        for col, (title, kind, view, names_, lays) in enumerate(groups):
            ax = axes[row, col]
            rk = ranks.stacked if kind == "stack" else ranks.subspaces
            top_data, top_max = 1, 1
            for i, n in enumerate(names_):
                xs = [l for l in lays if n in view[l]]
                if not xs:
                    continue
                c = _color(n, i)
                ys = [rk[l][n] for l in xs]
                mx = [res.max_rank("L%d.%s.%s" % (l, kind, n)) for l in xs]
                ax.plot(xs, ys, marker="o", ms=3, color=c, label="%s (max %d)" % (n, mx[-1]))
                ax.plot(xs, mx, ls="--", lw=0.9, color=c, alpha=0.7)
                top_data, top_max = max(top_data, max(ys)), max(top_max, max(mx))
            _rank_scale(ax, top_data, top_max, yscale)
            ax.set_title("%s, τ = %g (dashed: maximum rank)" % (title, tau), fontsize=9)
            ax.set_xlabel("layer")
            ax.set_ylabel(_rank_label(tau), fontsize=8)
            ax.grid(alpha=0.3)
            if len(lays) <= 20:
                ax.set_xticks(lays)
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle("%s: layer-wise effective rank" % _name(res), fontsize=11)
    return _finish(fig, path, dpi)


def _gqa(i, n_heads, n_kv):
    return i // (n_heads // n_kv) if n_kv and n_heads % n_kv == 0 else i


def _head_panel(ax, res, ranks, layer, trio, tau, yscale="auto", sort=True):
    """Per-head ranks of (A, B, fused) for one layer; heads sorted by the
    fused rank. Returns False when the layer lacks the fused spectrum."""
    heads = res.heads.get(layer, {})
    a, b, f = trio
    if f not in heads:
        return False
    rf = np.asarray(ranks.heads[layer][f])
    n = rf.size
    order = np.argsort(rf, kind="stable") if sort else np.arange(n)
    x = np.arange(n)
    top = 1
    for i, name in enumerate((a, b, f)):
        if name not in heads:
            continue
        r = np.asarray(ranks.heads[layer][name])
        if r.size != n:  # K / V of GQA: head i uses KV head g(i)
            r = np.array([r[_gqa(i_, n, r.size)] for i_ in range(n)])
        mxn = res.max_rank("L%d.head.%s" % (layer, name))
        # markers shrink from A to the fused one, drawn last: where the
        # three ranks coincide (a full-rank head) all three stay visible
        ax.plot(x, r[order], marker="o" if n <= 64 else None, ms=(6, 4.5, 3)[i],
                lw=1.2 if name == f else 1,
                color=_color(name, i), label="%s (max %d)" % (name, mxn))
        top = max(top, int(r.max()) if r.size else 1)
    mx = res.max_rank("L%d.head.%s" % (layer, f))
    ax.axhline(mx, ls="--", lw=0.9, color=_color(f, 2), alpha=0.7)
    _rank_scale(ax, top, mx, yscale)
    if n <= 32:
        ax.set_xticks(x)
        ax.set_xticklabels([str(int(h)) for h in order], fontsize=6)
    ax.set_xlabel("head (sorted by %s rank)" % f if sort else "head")
    ax.set_ylabel(_rank_label(tau), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return True


def head_ranks(result, layer, taus=None, yscale="auto", path=None, dpi=100):
    """Head-wise effective ranks of one layer: V, O and the fused VO side by
    side with Q, K and the fused QK, heads sorted by the fused rank (GQA: a
    query head shows its KV head's V / K rank); the fused matrix's maximum
    rank is dashed. One row per τ; axes: len(taus) x (number of fused
    pairs present, 1 or 2). ``yscale`` as :func:`layer_ranks`."""
    res = _result(result)
    taus = _taus(res, taus)
    if layer not in res.heads:
        raise errors.InvalidArgument("layer %r has no per-head spectra (layers: %s)"
                                     % (layer, res.layers))
    trios = [t for t in (("V", "O", "VO"), ("Q", "K", "QK")) if t[2] in res.heads[layer]]
    if not trios:
        raise errors.InvalidArgument("layer %d has neither VO nor QK spectra" % layer)
    fig = Figure(figsize=(6 * len(trios), 3.4 * len(taus)), layout="constrained")
    axes = fig.subplots(len(taus), len(trios), squeeze=False)
    for row, tau in enumerate(taus):
        ranks = res.effective_ranks[tau]
        for col, trio in enumerate(trios):
            ax = axes[row, col]
            _head_panel(ax, res, ranks, layer, trio, tau, yscale)
            ax.set_title("layer %d: %s, %s and fused %s, τ = %g" % (layer, trio[0], trio[1],
                                                                   trio[2], tau), fontsize=9)
    fig.suptitle("%s: head-wise effective rank, layer %d (dashed: maximum fused rank)"
                 % (_name(res), layer), fontsize=11)
    return _finish(fig, path, dpi)


def _key(layer, kind, name):
    return "L%d.%s.%s" % (layer, kind, name)


def _default_layers(res):
    ls = res.layers
    if not ls:
        return []
    return sorted({ls[0], ls[len(ls) // 2], ls[-1]})


def spectra(result, layers=None, kind="stack", names=None, taus=None, path=None, dpi=100):
    """Singular-value curves (left, σ_i / σ_1 on a log scale) and cumulative
    energy (right, Σ_{j<=r} σ_j² / Σ σ_j², with a line at 1 − τ for each τ)
    for the chosen layers (default: first, middle and last), one row per
    layer. ``kind``: "stack" (default), "sub" or "head" (one thin line per
    head). The energy axis is zoomed on where the curves reach 1 − τ.
    Axes: 2 x len(layers)."""
    res = _result(result)
    taus = _taus(res, taus)
    view = {"stack": res.stacked, "sub": res.subspaces, "head": res.heads}.get(kind)
    if view is None:
        raise errors.InvalidArgument("kind=%r: use 'stack', 'sub' or 'head'" % (kind,))
    layers = _default_layers(res) if layers is None else (
        [int(layers)] if np.ndim(layers) == 0 else [int(l) for l in layers])
    layers = [l for l in layers if l in view]
    if not layers:
        raise errors.InvalidArgument("no %s spectra for the layers asked (layers with them: %s)"
                                     % (kind, sorted(view)))
    fig = Figure(figsize=(11, 3.3 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), 2, squeeze=False)
    for row, l in enumerate(layers):
        ns = _order(view[l].keys()) if names is None else [n for n in names if n in view[l]]
        ax_s, ax_e = axes[row]
        reach = 1  # the largest rank at the smallest τ: where the energy curves flatten
        widest = 1  # the largest maximum rank drawn
        for i, n in enumerate(ns):
            arr = np.atleast_2d(view[l][n])
            # past the structural rank the values are rounding noise: not drawn
            arr = arr[:, :max(1, res.max_rank(_key(l, kind, n)))]
            widest = max(widest, arr.shape[1])
            c = _color(n, i)
            for h, s in enumerate(arr):
                lab = n if h == 0 else None
                lw = 1.2 if arr.shape[0] == 1 else 0.6
                s1 = s[0] if s.size and s[0] > 0 else 1.0
                pos = s > 0
                idx = np.arange(1, s.size + 1)
                ax_s.plot(idx[pos], s[pos] / s1, color=c, lw=lw, label=lab)
                e = s.astype(np.float64) ** 2
                tot = e.sum()
                cum = np.concatenate([[0.0], np.cumsum(e) / tot]) if tot > 0 else \
                    np.zeros(s.size + 1)
                ax_e.plot(np.arange(s.size + 1), cum, color=c, lw=lw, label=lab)
                if taus and tot > 0:
                    reach = max(reach, int(np.searchsorted(cum, 1 - min(taus) - 1e-12)))
        ax_s.set_yscale("log")
        ax_s.set_xlabel("index i")
        ax_s.set_ylabel("$\\sigma_i / \\sigma_1$")
        ax_s.set_title("layer %d: singular values (%s)" % (l, kind), fontsize=9)
        ax_s.grid(alpha=0.3, which="both")
        ax_s.legend(fontsize=7, ncol=2)
        for j, t in enumerate(taus):
            ax_e.axhline(1 - t, ls=":", color="0.3", lw=0.9)
            ax_e.annotate("1 − τ, τ = %g" % t, (1.0, 1 - t), xycoords=("axes fraction", "data"),
                          fontsize=6, color="0.3", ha="right", va="top",
                          xytext=(-2, -1), textcoords="offset points")
        ax_e.set_xlim(0, min(int(reach * 1.6) + 2, widest + 1))
        ax_e.legend(fontsize=7, ncol=2, loc="lower right")
        ax_e.set_xlabel("rank r")
        ax_e.set_ylabel("energy kept $\\sum_{j\\leq r}\\sigma_j^2 / \\sum_j \\sigma_j^2$\n(%s)"
                        % TAU_NOTE, fontsize=8)
        ax_e.set_title("layer %d: cumulative energy (%s)" % (l, kind), fontsize=9)
        ax_e.set_ylim(min(0.9, 1 - 2 * max(taus)) if taus else 0.9, 1.0005)
        ax_e.grid(alpha=0.3)
    fig.suptitle("%s: spectra (curves end at each matrix's maximum rank)" % _name(res),
                 fontsize=11)
    return _finish(fig, path, dpi)


def grid(result, tau=None, names=("V", "O", "VO"), ncols=None, yscale="auto", path=None,
         dpi=100):
    """One small panel per layer (a grid over all layers): the head-wise
    effective ranks at ``tau`` (default: the result's first τ) of ``names``
    (two factors and their fusion, default V, O, VO), heads sorted by the
    last name's rank. Axes: one per layer with per-head spectra."""
    res = _result(result)
    tau = res.taus[0] if tau is None else float(tau)
    names = tuple(names)
    layers = [l for l in sorted(res.heads) if names[-1] in res.heads[l]]
    if not layers:
        raise errors.InvalidArgument("no layer has %s head spectra" % names[-1])
    n = len(layers)
    ncols = ncols or min(n, max(1, int(math.ceil(math.sqrt(n)))))
    nrows = int(math.ceil(n / ncols))
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    ranks = res.effective_ranks[tau]
    trio = names if len(names) == 3 else (names + (None, None, None))[:3]
    for k, l in enumerate(layers):
        ax = axes[k // ncols, k % ncols]
        _head_panel(ax, res, ranks, l, trio, tau, yscale)
        ax.set_title("layer %d" % l, fontsize=8)
        ax.set_xlabel("head (sorted)", fontsize=7)
        ax.set_ylabel(_rank_label(tau) if k % ncols == 0 else "", fontsize=6)
        if k > 0 and ax.get_legend():
            ax.get_legend().remove()
    for k in range(n, nrows * ncols):
        fig.delaxes(axes[k // ncols, k % ncols])
    fig.suptitle("%s: head-wise effective rank of %s per layer,\nτ = %g (%s)"
                 % (_name(res), ", ".join(n_ for n_ in names if n_), tau,
                    TAU_NOTE), fontsize=10)
    return _finish(fig, path, dpi)


def _tail_density(fit, n_fit, x):
    """Density in log10 λ of the fitted power-law tail, weighted by the
    tail's share of the fitted eigenvalues: at λ = 10^x >= xmin,
    (n_tail / N) · (α − 1)/xmin · (λ/xmin)^(−α) · λ · ln 10."""
    a, xmin = fit["alpha"], fit["xmin"]
    lam = 10.0 ** x
    return (fit["n_tail"] / n_fit) * (a - 1) / xmin * (lam / xmin) ** (-a) * lam * np.log(10)


def esd(result, layers=None, names=("O",), kind="stack", bins=40, path=None, dpi=100):
    """Empirical spectral density of the eigenvalues λ = σ² (above 1e-5,
    the values up to each matrix's maximum rank) as a density in log10 λ,
    with the power-law tail fitted as WeightWatcher fits it
    (:func:`fasvd.metrics.powerlaw`: the curve from xmin on, a dashed line at
    xmin) and the Marchenko–Pastur bulk edge λ+ (dotted) where defined; the
    legend gives α, D and the spike count, or says that α is undefined.
    One panel per layer (default: first, middle and last) and name."""
    res = _result(result)
    view = {"stack": res.stacked, "sub": res.subspaces}.get(kind)
    if view is None:
        raise errors.InvalidArgument("kind=%r: use 'stack' or 'sub'" % (kind,))
    layers = _default_layers(res) if layers is None else (
        [int(layers)] if np.ndim(layers) == 0 else [int(l) for l in layers])
    panels = [(l, n) for l in layers if l in view for n in names if n in view[l]]
    if not panels:
        raise errors.InvalidArgument("no %s spectra named %s for the layers asked"
                                     % (kind, ", ".join(names)))
    fig = Figure(figsize=(5.0 * len(names), 3.0 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), len(names), squeeze=False)
    for r, l in enumerate(layers):
        for c, n in enumerate(names):
            ax = axes[r, c]
            if (l, n) not in panels:
                ax.set_visible(False)
                continue
            key = _key(l, kind, n)
            s = np.asarray(view[l][n], dtype=np.float64)[:max(1, res.max_rank(key))]
            lam = s ** 2
            lam = lam[lam > 1e-5]
            x = np.log10(lam) if lam.size else np.zeros(0)
            ax.hist(x, bins=bins, density=True, color=_color(n, c), alpha=0.5,
                    label="λ = σ² (%d)" % lam.size)
            fit = metrics.powerlaw(s)
            rows, cols = res.matrix_shapes.get(key, (None, None))
            ht = metrics.heavy_tailed(s, rows, cols, res.max_rank(key))
            if fit is not None:
                xt = np.linspace(np.log10(fit["xmin"]), x.max(), 200)
                ax.plot(xt, _tail_density(fit, lam.size, xt), color="k", lw=1.2,
                        label="power law α = %.3g, D = %.3g" % (fit["alpha"], fit["D"]))
                ax.axvline(np.log10(fit["xmin"]), color="k", ls="--", lw=0.8,
                           label="xmin (tail of %d)" % fit["n_tail"])
            else:
                ax.plot([], [], " ", label="α undefined (%d eigenvalues above 1e-5)"
                        % lam.size)
            if ht["mp_bulk_edge"] is not None:
                ax.axvline(np.log10(ht["mp_bulk_edge"]), color="0.4", ls=":", lw=1.0,
                           label="MP bulk edge (%d spikes)" % ht["mp_spikes"])
            ax.set_xlabel("log10 λ")
            ax.set_ylabel("density")
            ax.set_title("layer %d: %s.%s" % (l, kind, n), fontsize=9)
            ax.legend(fontsize=6)
            ax.grid(alpha=0.3)
    fig.suptitle("%s: eigenvalue densities with the fitted power-law tail" % _name(res),
                 fontsize=11)
    return _finish(fig, path, dpi)


def render_all(result, outdir, taus=None, layers=None, spectra_layers=None, dpi=100,
               fmt="png"):
    """Write every plot of a result into ``outdir`` (created if needed) as
    ``fmt`` files ("png", "svg" or "pdf"): layer_ranks, heads_L{l} for each
    layer of ``layers`` (default all), spectra (stacks, default first /
    middle / last layer), esd (the stacked O's eigenvalue densities with the
    fitted tail, same layers), and the grids grid_VO and grid_QK. Returns the
    list of paths written."""
    import os
    if fmt not in FORMATS:
        raise errors.InvalidArgument("fmt=%r: use one of %s" % (fmt, ", ".join(FORMATS)))
    res = _result(result)
    os.makedirs(outdir, exist_ok=True)
    out = []

    def save(fig, name):
        p = os.path.join(outdir, "%s.%s" % (name, fmt))
        fig.savefig(p, dpi=dpi)
        out.append(p)

    if res.stacked:
        save(layer_ranks(res, taus=taus), "layer_ranks")
    for l in (sorted(res.heads) if layers is None else layers):
        if l in res.heads and ("VO" in res.heads[l] or "QK" in res.heads[l]):
            save(head_ranks(res, l, taus=taus), "heads_L%d" % l)
    sl = _default_layers(res) if spectra_layers is None else spectra_layers
    sl = [l for l in sl if l in res.stacked]
    if sl:
        save(spectra(res, layers=sl, taus=taus), "spectra")
        if any("O" in res.stacked[l] for l in sl):
            save(esd(res, layers=sl), "esd")
    t0 = _taus(res, taus)[0]
    for trio in (("V", "O", "VO"), ("Q", "K", "QK")):
        if any(trio[2] in res.heads[l] for l in res.heads):
            save(grid(res, tau=t0, names=trio), "grid_%s" % trio[2])
    return out
