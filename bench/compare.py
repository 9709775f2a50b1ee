#!/usr/bin/python3
"""The notebook method in PyTorch, timed against libfasvd's engine.

Reads the layer written by engine-bench (DIR/meta.json, DIR/w_*.f32), computes
every spectrum of a layer (docs/spectra-schema.md) the way the published notebooks do —
torch.linalg.svdvals on materialised float32 matrices (per head, fused
products, sigma1-normalised stacks, subspaces) — with the same thread count
and the weights already in memory, checks that libfasvd's spectra
(DIR/ours.bin) agree, and prints the speed-up ratios against libfasvd's
timings (DIR/timings.json).

Usage: compare.py --dir DIR [--threads T] [--json OUT]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch


def load(d):
    meta = json.load(open(os.path.join(d, "meta.json")))
    w = {}
    for name, (r, c) in meta["tensors"].items():
        a = np.fromfile(os.path.join(d, "w_%s.f32" % name), dtype=np.float32)
        w[name] = torch.from_numpy(a.reshape(r, c))
    return meta, w


def notebook(meta, w):
    """Every spectrum, notebook style. Returns {name: float64 numpy array},
    and the seconds spent on the per-head fused VO part alone."""
    n, nope, rope, vh = meta["heads"], meta["nope"], meta["rope"], meta["v_head"]
    qlora, kvlora, hidden = meta["q_lora"], meta["kv_lora"], meta["hidden"]
    out = {}
    qb = w["q_b_proj"].view(n, nope + rope, qlora)
    kvb = w["kv_b_proj"].view(n, nope + vh, kvlora)
    heads = {
        "Q": qb[:, :nope, :],
        "Q_pe": qb[:, nope:, :],
        "K": kvb[:, :nope, :],
        "V": kvb[:, nope:, :],
        # o_proj [hidden, n*v_head]: head i = its columns, transposed.
        "O": w["o_proj"].view(hidden, n, vh).permute(1, 2, 0),
    }

    def per_head_and_stack(name, m):
        m = m.contiguous()
        s = torch.linalg.svdvals(m)                        # [n, min]
        out["head." + name] = s.double().numpy()
        s1 = s[:, 0].clamp_min(torch.finfo(torch.float32).tiny)
        stack = (m / s1[:, None, None]).reshape(-1, m.shape[-1])
        out["stack." + name] = torch.linalg.svdvals(stack).double().numpy()

    for name, m in heads.items():
        per_head_and_stack(name, m)
    q, k, v, o = heads["Q"], heads["K"], heads["V"], heads["O"]
    per_head_and_stack("QK", q.transpose(1, 2) @ k)        # [n, q_lora, kv_lora]
    per_head_and_stack("KQ", k.transpose(1, 2) @ q)        # [n, kv_lora, q_lora]
    t = time.perf_counter()
    vo = v.transpose(1, 2) @ o                             # [n, kv_lora, hidden]
    out["head.VO"] = torch.linalg.svdvals(vo).double().numpy()
    t_vo = time.perf_counter() - t
    s1 = torch.from_numpy(out["head.VO"][:, 0]).float().clamp_min(1e-38)
    out["stack.VO"] = torch.linalg.svdvals(
        (vo / s1[:, None, None]).reshape(-1, hidden)).double().numpy()
    del vo
    kva = w["kv_a_proj_with_mqa"]
    out["sub.QA"] = torch.linalg.svdvals(w["q_a_proj"]).double().numpy()
    out["sub.KVA"] = torch.linalg.svdvals(kva[:kvlora]).double().numpy()
    out["sub.KVA_pe"] = torch.linalg.svdvals(kva[kvlora:]).double().numpy()
    return out, t_vo


def read_safetensors(path):
    """{name: float64 numpy array} of the F64 tensors of a safetensors file."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, t in header.items():
            if name == "__metadata__" or t["dtype"] != "F64":
                continue
            a, b = t["data_offsets"]
            f.seek(base + a)
            out[name] = np.frombuffer(f.read(b - a), dtype="<f8").reshape(t["shape"])
    return out


def energy_rank(s, tau):
    e = np.asarray(s, dtype=np.float64) ** 2
    tot = e.sum()
    if tot <= 0:
        return 0
    tail = np.cumsum(e[::-1])[::-1]          # tail[r] = sum_{i>=r} e_i
    ok = np.nonzero(np.append(tail[1:], 0.0) / tot <= tau)[0]
    return int(ok[0]) + 1


def notebook_blas():
    """The OpenBLAS PyTorch runs the notebook on (the one mapped in this
    process), as one line: its kernels decide half of the comparison."""
    import ctypes
    with open("/proc/self/maps") as f:
        paths = sorted({x[5].strip() for x in (line.split(None, 5) for line in f)
                        if len(x) == 6 and "openblas" in os.path.basename(x[5])})
    for p in paths:
        try:
            lib = ctypes.CDLL(p)
            lib.openblas_get_config.restype = lib.openblas_get_corename.restype = ctypes.c_char_p
            return "%s, core %s, %d threads (%s)" % (
                lib.openblas_get_config().decode(), lib.openblas_get_corename().decode(),
                lib.openblas_get_num_threads(), p)
        except (OSError, AttributeError):
            continue
    return "not OpenBLAS (%s)" % (torch.__config__.show().strip().splitlines()[-1][:200])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--analyze", help="a `fasvd analyze ... -o FILE` command line to time "
                    "end to end; its spectra (FILE) are checked too")
    ap.add_argument("--analyze-out", help="the spectra file the --analyze command writes")
    ap.add_argument("--engine-again", help="an engine-bench command line re-timing the layer "
                    "after the notebook (the machine's load changes during a long run); it "
                    "must write its timings to --engine-again-timings")
    ap.add_argument("--engine-again-timings")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    blas = notebook_blas()
    print("notebook BLAS: %s; OPENBLAS_CORETYPE=%s" % (blas, os.environ.get("OPENBLAS_CORETYPE",
                                                                          "unset")))
    meta, w = load(args.dir)
    tim = json.load(open(os.path.join(args.dir, "timings.json")))
    index = json.load(open(os.path.join(args.dir, "ours.json")))
    ours_all = np.fromfile(os.path.join(args.dir, "ours.bin"), dtype=np.float64)

    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    ref, t_vo = notebook(meta, w)
    t_nb, c_nb = time.perf_counter() - t0, time.process_time() - c0
    load1 = os.getloadavg()[0]

    print("layer: %d heads, %d threads (DeepSeek-V3 dimensions)" % (meta["heads"], args.threads))
    print("%-12s %14s %12s %14s %8s" % ("spectrum", "shape", "max|d|/s1", "ranks .01/.001",
                                        "agree"))
    worst, rank_mismatch, all_ok = 0.0, 0, True
    for e in index:
        nm, nr, nc = e["name"], e["n_rows"], e["n_cols"]
        ours = ours_all[e["offset"]:e["offset"] + nr * nc].reshape(nr, nc)
        r = ref[nm].reshape(nr, -1)
        if r.shape != ours.shape:
            print("%-12s shape %s, notebook %s" % (nm, ours.shape, r.shape))
            all_ok = False
            continue
        s1 = np.maximum(r[:, :1], 1e-300)
        d = float(np.max(np.abs(ours - r) / s1))
        mism = sum(energy_rank(ours[i], t) != energy_rank(r[i], t)
                   for i in range(nr) for t in (0.01, 0.001))
        ok = d <= 1e-4
        all_ok &= ok
        worst = max(worst, d)
        rank_mismatch += mism
        print("%-12s %14s %12.2e %14s %8s" % (nm, "%dx%d" % (e["mat_rows"], e["mat_cols"]), d,
                                              "equal" if not mism else "%d differ" % mism,
                                              "yes" if ok else "NO"))
    t_an = None
    if args.analyze:
        import shlex
        import subprocess
        t = time.perf_counter()
        subprocess.run(shlex.split(args.analyze), check=True)
        t_an = time.perf_counter() - t
        got = read_safetensors(args.analyze_out)
        d_an = 0.0
        for nm, r in ref.items():
            key = "L0." + nm
            if key not in got:
                print("fasvd analyze: %s missing" % key)
                all_ok = False
                continue
            g = got[key].reshape(r.shape[0] if r.ndim > 1 else 1, -1)
            rr = r.reshape(g.shape[0], -1)
            d_an = max(d_an, float(np.max(np.abs(g - rr) / np.maximum(rr[:, :1], 1e-300))))
        all_ok &= d_an <= 1e-4
        worst = max(worst, d_an)
        print("fasvd analyze output: max |d| / sigma1 vs notebook = %.2e" % d_an)
    runs = [(tim["layer_s"], tim.get("layer_cpu_s"), tim.get("load"), "before")]
    floors = [tim.get("floor_s")]
    vo_t = tim["vo_s"]
    if args.engine_again:
        import shlex
        import subprocess
        subprocess.run(shlex.split(args.engine_again), check=True)
        t2 = json.load(open(args.engine_again_timings))
        runs.append((t2["layer_s"], t2.get("layer_cpu_s"), t2.get("load"), "after"))
        floors.append(t2.get("floor_s"))
        vo_t = min(vo_t, t2["vo_s"])
    ours_t = min(r[0] for r in runs)
    print()
    print("notebook method (torch %s):  %9.2f s wall, %8.2f s cpu   (load %.1f -> %.1f)"
          % (torch.__version__, t_nb, c_nb, load0, load1))
    for wall, cpu, ld, when in runs:
        print("libfasvd layer spectra:       %9.2f s wall, %8.2f s cpu   (load %.1f, %s the "
              "notebook)   speed-up %5.1fx wall, %5.1fx cpu"
              % (wall, cpu or 0, ld or 0, when, t_nb / wall, c_nb / cpu if cpu else 0))
    print("per-head fused VO: notebook   %9.2f s, libfasvd %6.3f s (best run)   speed-up %6.1fx"
          % (t_vo, vo_t, t_vo / vo_t))
    if t_an is not None:
        print("fasvd analyze (end to end):   %9.2f s   speed-up %6.1fx   (reads the checkpoint, "
              "writes the spectra file)" % (t_an, t_nb / t_an))
    for (wall, _, _, when), fl in zip(runs, floors):
        if fl:
            print("floor (Gram + eigensolver):   %9.2f s   libfasvd / floor %5.2f   (measured "
                  "right after the layer, %s the notebook)" % (fl, wall / fl, when))
    print("agreement: max |ours - notebook| / sigma1 = %.2e (%s); energy-rank mismatches: %d"
          % (worst, "within 1e-4" if all_ok else "NOT within 1e-4", rank_mismatch))
    if args.json:
        json.dump({"heads": meta["heads"], "threads": args.threads, "notebook_s": t_nb,
                   "notebook_cpu_s": c_nb, "notebook_load": [load0, load1],
                   "notebook_vo_s": t_vo, "layer_s": ours_t,
                   "layer_runs": [{"wall_s": r[0], "cpu_s": r[1], "load": r[2], "when": r[3]}
                                  for r in runs], "vo_s": vo_t,
                   "floor_s": floors, "analyze_s": t_an, "max_rel_diff": worst,
                   "rank_mismatches": rank_mismatch, "notebook_blas": blas},
                  open(args.json, "w"), indent=1)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
