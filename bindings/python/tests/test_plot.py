"""Plots render: the functions return figures with the expected axes, the
files exist and are PNGs, and `python3 -m fasvd plot` writes them."""

import os
import subprocess
import sys

import pytest

from support import PKG_ROOT, require_library, write_fixture

require_library()

matplotlib = pytest.importorskip("matplotlib", reason="the plots need matplotlib")
matplotlib.use("Agg")

import fasvd  # noqa: E402
from fasvd import plot  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def spectra_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("plot")
    model = write_fixture(str(d / "model"), n_layers=3)
    out = str(d / "spectra.safetensors")
    with fasvd.open(model) as m:
        m.analyze(out)
    return out


def is_png(path):
    with open(path, "rb") as f:
        head = f.read(8)
    return head == PNG and os.path.getsize(path) > 1000


def suptitle(fig):
    return fig._suptitle.get_text()  # Figure.get_suptitle is matplotlib >= 3.8


def data_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_layer_ranks(spectra_file, tmp_path):
    res = fasvd.load_spectra(spectra_file)
    p = str(tmp_path / "l.png")
    fig = plot.layer_ranks(res, path=p)
    axes = data_axes(fig)
    assert len(axes) == len(res.taus) * 2  # stacks and MLA subspaces, per tau
    assert is_png(p)
    for ax in axes:
        assert "fraction of squared Frobenius energy lost" in ax.get_ylabel()
        assert ax.get_xlabel() == "layer"
        assert len(ax.get_lines()) >= 2  # ranks and the dashed maximum
    # one tau, stacks only: one axis; the plotted ranks are the result's
    fig = plot.layer_ranks(spectra_file, taus=0.01, subspaces=[], names=["VO"])
    (ax,) = data_axes(fig)
    ranks, maxes = ax.get_lines()[0], ax.get_lines()[1]
    assert list(ranks.get_ydata()) == [res.effective_ranks[0.01].stacked[l]["VO"]
                                       for l in res.layers]
    assert set(maxes.get_ydata()) == {160}  # 4 heads x v_head 40, not min(576, 288)


def test_head_ranks(spectra_file, tmp_path):
    res = fasvd.load_spectra(spectra_file)
    p = str(tmp_path / "h.png")
    fig = plot.head_ranks(res, 1, path=p)
    axes = data_axes(fig)
    assert len(axes) == 2 * len(res.taus)  # (V, O, VO) and (Q, K, QK) per tau
    assert is_png(p)
    assert "sorted by VO rank" in axes[0].get_xlabel()
    assert "sorted by QK rank" in axes[1].get_xlabel()
    # heads are shown sorted by fused rank: the fused line never decreases
    vo = [ln for ln in axes[0].get_lines() if ln.get_label().startswith("VO")][0]
    y = list(vo.get_ydata())
    assert y == sorted(y) and sorted(y) == sorted(res.effective_ranks[res.taus[0]]
                                                  .heads[1]["VO"].tolist())
    with pytest.raises(fasvd.InvalidArgument):
        plot.head_ranks(res, 99)


def test_spectra_and_grid(spectra_file, tmp_path):
    res = fasvd.load_spectra(spectra_file)
    fig = plot.spectra(res, layers=[0, 2])
    axes = data_axes(fig)
    assert len(axes) == 4
    assert axes[0].get_yscale() == "log"
    assert "fraction of squared Frobenius energy lost" in axes[1].get_ylabel()
    fig = plot.spectra(res, layers=0, kind="head", names=["VO"])
    assert len(data_axes(fig)) == 2
    assert len(data_axes(fig)[0].get_lines()) == 4  # one line per head
    fig = plot.grid(res, path=str(tmp_path / "g.png"))
    assert len(data_axes(fig)) == len(res.layers) and is_png(str(tmp_path / "g.png"))
    fig = plot.grid(res, names=("Q", "K", "QK"), ncols=2)
    assert len(data_axes(fig)) == 3


def test_python_m_fasvd_plot(spectra_file, tmp_path):
    out = tmp_path / "pngs"
    env = dict(os.environ, PYTHONPATH=PKG_ROOT)
    r = subprocess.run([sys.executable, "-m", "fasvd", "plot", spectra_file, "-o", str(out),
                        "--layers", "2", "--spectra-layers", "0", "--dpi", "60"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    names = sorted(os.listdir(out))
    assert names == sorted(["layer_ranks.png", "heads_L2.png", "spectra.png", "esd.png",
                            "grid_VO.png", "grid_QK.png"])
    for n in names:
        assert is_png(str(out / n))
    assert sorted(r.stdout.split()) == sorted(str(out / n) for n in names)
    # a file that is not a spectra file: exit 1 and a message naming it
    r = subprocess.run([sys.executable, "-m", "fasvd", "plot", str(tmp_path / "none"), "-o",
                        str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "none" in r.stderr
    r = subprocess.run([sys.executable, "-m", "fasvd", "summary", spectra_file],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "stack.VO" in r.stdout and "layer 2" in r.stdout


STORIES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "data",
                       "stories260K")


def test_python_m_fasvd_into_a_closed_pipe():
    """`python -m fasvd info M --json | head -1`: a reader that stops early
    is no failure (exit 0, nothing on stderr), as with the tool."""
    env = dict(os.environ, PYTHONPATH=PKG_ROOT)
    p = subprocess.Popen([sys.executable, "-m", "fasvd", "info", STORIES, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait() == 0 and err == "", err


@pytest.fixture(scope="module")
def stories_file(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stories") / "spectra.safetensors")
    with fasvd.open(STORIES) as m:
        m.analyze(out)
    return out


def test_stories260k_plots_use_the_true_bounds(stories_file, tmp_path):
    """A fused VO head of stories260K is a 64 x 64 matrix of rank <= 8: the
    plots say "max 8" on a linear axis (not "max 64" on a log axis that
    squeezed the lines into a band), title the model, and the spectra
    curves stop at each bound (8 per head, 32 for stack.QK)."""
    res = fasvd.load_spectra(stories_file)
    fig = plot.head_ranks(res, 0)
    assert "stories260K" in suptitle(fig)
    for ax in data_axes(fig):
        assert ax.get_yscale() == "linear"
        labels = [ln.get_label() for ln in ax.get_lines()]
        assert any(l in ("VO (max 8)", "QK (max 8)") for l in labels), labels
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert dashed and set(dashed[0].get_ydata()) == {8}
        assert ax.get_ylim()[1] < 10
    fig = plot.layer_ranks(res, names=["QK", "VO"])
    for ax in data_axes(fig):
        assert ax.get_yscale() == "linear"
        assert [ln.get_label() for ln in ax.get_lines()][::2] == ["QK (max 32)", "VO (max 64)"]
    assert "stories260K" in suptitle(fig)
    fig = plot.spectra(res, layers=[0], names=["QK", "VO"])
    ax_s, ax_e = data_axes(fig)
    qk, vo = ax_s.get_lines()[:2]
    assert max(qk.get_xdata()) == 32 and max(vo.get_xdata()) == 64
    assert max(ax_e.get_lines()[0].get_xdata()) == 32
    fig = plot.spectra(res, layers=[0], kind="head", names=["VO"])
    assert all(max(ln.get_xdata()) <= 8 for ln in data_axes(fig)[0].get_lines())


def test_vector_formats(stories_file, tmp_path):
    res = fasvd.load_spectra(stories_file)
    plot.layer_ranks(res, path=str(tmp_path / "l.svg"))
    plot.head_ranks(res, 1, path=str(tmp_path / "h.pdf"))
    assert (tmp_path / "l.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "h.pdf").read_bytes().startswith(b"%PDF")
    env = dict(os.environ, PYTHONPATH=PKG_ROOT)
    out = tmp_path / "svgs"
    r = subprocess.run([sys.executable, "-m", "fasvd", "plot", stories_file, "-o", str(out),
                        "--layers", "0", "--format", "svg"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == sorted(["layer_ranks.svg", "heads_L0.svg", "spectra.svg",
                                              "esd.svg", "grid_VO.svg", "grid_QK.svg"])
    with pytest.raises(fasvd.InvalidArgument):
        plot.render_all(res, str(tmp_path / "x"), fmt="gif")
    r = subprocess.run([sys.executable, "-m", "fasvd", "summary", stories_file],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "stories260K" in r.stdout
    assert "stack.QK 26/32 31/32" in r.stdout.splitlines()[1], r.stdout


def test_esd_draws_the_fitted_tail(stories_file):
    """The eigenvalue density of stories260K's stacked O (64 values) with
    the power-law tail of fasvd.metrics.powerlaw: the curve starts at
    log10 xmin and is the fitted density there; the MP edge is drawn."""
    import numpy as np
    res = fasvd.load_spectra(stories_file)
    fig = plot.esd(res, layers=[0, 1], names=("O", "QK"))
    axes = data_axes(fig)
    assert len(axes) == 4
    s = np.asarray(res.stacked[0]["O"], dtype=np.float64)
    fit = fasvd.metrics.powerlaw(s)
    ax = axes[0]
    curve = ax.get_lines()[0]
    x0 = curve.get_xdata()[0]
    assert x0 == pytest.approx(np.log10(fit["xmin"]))
    n = int(np.sum(s ** 2 > 1e-5))
    want = fit["n_tail"] / n * (fit["alpha"] - 1) / fit["xmin"] * np.log(10) * fit["xmin"]
    assert curve.get_ydata()[0] == pytest.approx(want, rel=1e-9)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert any(l.startswith("power law α = ") for l in labels), labels
    assert any(l.startswith("MP bulk edge") for l in labels), labels
    # stacked QK has rank <= 32 < min(rows, cols) = 64: no MP edge
    assert not any(l.startswith("MP bulk edge") for l in
                   (ln.get_label() for ln in axes[1].get_lines()))
    with pytest.raises(fasvd.InvalidArgument):
        plot.esd(res, names=("nothing",))
