"""python3 -m fasvd COMMAND ...

Commands:
  plot SPECTRA.safetensors -o DIR   render the plots of a spectra file (PNG, SVG, PDF)
  summary SPECTRA.safetensors       print the effective ranks of the stacks
  info MODEL_DIR [--json]           describe a model folder
  demo DIR                          run `fasvd demo` into DIR, plot its spectra

Exit status: 0 success, 1 a fasvd error (message on stderr), 2 usage error.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys


def _taus(text):
    try:
        taus = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("--tau wants numbers separated by commas") from None
    if not taus or any(not 0 <= t <= 1 for t in taus):
        raise argparse.ArgumentTypeError("--tau values must be in [0, 1]")
    return taus


def _layers(text):
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError("layers: use A-B or A,B,C") from None
    return out


def _parser():
    p = argparse.ArgumentParser(prog="python3 -m fasvd",
                                description="fasvd Python tools: plots of spectra files, "
                                "summaries, model info, the demo.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    pl = sub.add_parser("plot", help="render the plots of a spectra file (PNG, SVG or PDF)",
                        description="Render the plots of a spectra file written by "
                        "`fasvd analyze`: layer_ranks (stacked heads and subspaces per "
                        "layer at each tau), heads_L<l> (head-wise ranks, V/O/VO and "
                        "Q/K/QK), spectra (singular values and cumulative energy of chosen "
                        "layers), esd (eigenvalue densities of stacked O with the fitted "
                        "power-law tail) and grid_VO / grid_QK (all layers). tau is the "
                        "fraction of squared Frobenius energy lost.")
    pl.add_argument("spectra", help="spectra file (.safetensors)")
    pl.add_argument("-o", "--output", required=True, help="folder for the plots")
    pl.add_argument("--format", choices=("png", "svg", "pdf"), default="png",
                    help="file format of the plots (default png)")
    pl.add_argument("--tau", type=_taus, default=[0.01, 0.001],
                    help="tau values, comma-separated (default 0.01,0.001)")
    pl.add_argument("--layers", type=_layers, default=None,
                    help="layers for the head-wise plots (default all), e.g. 0-3,7")
    pl.add_argument("--spectra-layers", type=_layers, default=None,
                    help="layers of the spectra plot (default first, middle, last)")
    pl.add_argument("--dpi", type=int, default=100)

    sm = sub.add_parser("summary", help="print effective ranks of a spectra file")
    sm.add_argument("spectra")
    sm.add_argument("--tau", type=_taus, default=[0.01, 0.001])

    inf = sub.add_parser("info", help="describe a model folder")
    inf.add_argument("model")
    inf.add_argument("--json", action="store_true", help="print JSON")

    dm = sub.add_parser("demo", help="run `fasvd demo` and plot its spectra",
                        description="Runs the command-line tool's `fasvd demo --dir DIR` "
                        "(a DeepSeek-V3-layout checkpoint, F8_E4M3 with 128x128 block "
                        "scales, 3 shards, 4 layers, 8 heads, in DIR/model, analysed into "
                        "DIR/spectra.safetensors) and renders the plots into DIR/plots. "
                        "The tool is $FASVD_CLI, else `fasvd` on the PATH.")
    dm.add_argument("dir")
    dm.add_argument("--layers", type=int, default=4, help="layers (default 4)")
    dm.add_argument("--heads", type=int, default=8, help="attention heads (default 8)")
    dm.add_argument("--dpi", type=int, default=100)
    return p


def _summary(res, taus, out):
    for l in res.layers:
        parts = []
        for kind, view in (("stack", res.stacked), ("sub", res.subspaces)):
            for n in sorted(view.get(l, {})):
                mx = res.max_rank("L%d.%s.%s" % (l, kind, n))
                rk = " ".join("%d/%d" % (res.effective_ranks[t].stacked[l][n] if kind == "stack"
                                         else res.effective_ranks[t].subspaces[l][n], mx)
                              for t in taus)
                parts.append("%s.%s %s" % (kind, n, rk))
        out.write("layer %d: %s\n" % (l, ", ".join(parts)))
    for n in sorted(res.tensors):
        mx = res.max_rank("T." + n)
        rk = " ".join("%d/%d" % (res.effective_ranks[t].tensors[n], mx) for t in taus)
        out.write("T.%s: %s\n" % (n, rk))


def _run_cli_demo(args):
    """`fasvd demo --dir DIR ...`: the path of the spectra it wrote, or None
    (the reason on stderr)."""
    tool = os.environ.get("FASVD_CLI") or shutil.which("fasvd")
    if not tool:
        sys.stderr.write("fasvd: demo needs the `fasvd` command-line tool: put it on the "
                         "PATH or name it in FASVD_CLI\n")
        return None
    cmd = [tool, "demo", "--dir", args.dir, "--layers", str(args.layers),
           "--heads", str(args.heads)]
    if subprocess.run(cmd, check=False).returncode != 0:
        return None
    return os.path.join(args.dir, "spectra.safetensors")


def main(argv=None):
    args = _parser().parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import fasvd
    from fasvd import plot
    try:
        if args.cmd == "plot":
            res = fasvd.load_spectra(args.spectra, taus=args.tau)
            paths = plot.render_all(res, args.output, taus=args.tau, layers=args.layers,
                                    spectra_layers=args.spectra_layers, dpi=args.dpi,
                                    fmt=args.format)
            for p in paths:
                print(p)
        elif args.cmd == "summary":
            res = fasvd.load_spectra(args.spectra, taus=args.tau)
            print("%s (%s), effective rank at tau = %s (%s) of the structural maximum"
                  % (res.model_name(), res.model_type, " and ".join("%g" % t for t in args.tau),
                     plot.TAU_NOTE))
            _summary(res, args.tau, sys.stdout)
        elif args.cmd == "info":
            with fasvd.open(args.model) as m:
                if args.json:
                    print(json.dumps(m.info, indent=1))
                else:
                    for k, v in m.info.items():
                        print("%-14s %s" % (k, v))
        elif args.cmd == "demo":
            out = _run_cli_demo(args)
            if out is None:
                return 1
            res = fasvd.load_spectra(out)
            for p in plot.render_all(res, os.path.join(args.dir, "plots"), dpi=args.dpi):
                print(p)
        sys.stdout.flush()
    except fasvd.Error as e:
        sys.stderr.write("fasvd: %s\n" % e)
        return 1
    except BrokenPipeError:
        # the reader stopped early (`| head`): it has what it wanted, as
        # with the command-line tool; nothing more goes to the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
