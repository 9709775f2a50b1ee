#!/usr/bin/python3
"""Truncation speed: libfasvd's randomised backend against LAPACK's full SVD
(libfasvd's gesdd backend and numpy.linalg.svd) and torch.svd_lowrank, at
equal accuracy.

usage: truncate_bench.py [--lib PATH/libfasvd.so] [--threads N] [--full]
                         [--shapes MxN,...] [--ranks R,...] [--slack S]
                         [--methods LIST] [--reps N] [--stat best|median]
                         [--clock wall|cpu]

For each shape and rank r, a float32 matrix with a slowly decaying spectrum
(sigma_i = i^-0.5 plus a noise floor: hard for sketching) is truncated to
rank r by every method. Accuracy is the relative squared Frobenius error
||W - A B||^2 / ||W||^2 against the optimum sum_{i>r} sigma_i^2 / sum
sigma_i^2 (float64 numpy SVD). "Equal accuracy": each randomised method runs
with the fewest power iterations (oversample 10) whose error is within a
factor (1 + S) of the optimum (S = --slack, default 0.01); its time at that
setting is reported, with the ratio to libfasvd's randomised time. The
search covers q = 1..6 for fasvd_factor (whose power_iters = 0 means "the
default", 2) and q = 0..6 for torch.svd_lowrank (niter = q).

"fasvd_svd randomized" (method "svd") is the SVD alone, fasvd_svd() with
the randomised backend at fasvd randomized's q, returning U, s, Vt like
torch.svd_lowrank does (plus the error estimate that torch does not
compute); fasvd_factor also measures ||W||_F^2 (a decode of W in float64)
and writes the factors A, B.

Everything runs single-threaded by default (--threads 1): OPENBLAS_NUM_THREADS,
torch.set_num_threads and FASVD_CTX_THREADS agree. Times are the best of 3
(--reps, --stat median for the median instead) of the wall clock, or with
--clock cpu of the process's CPU time (time.process_time: all its threads),
which on a loaded shared machine is far less noisy than the wall clock for
single-threaded runs (it leaves out the time spent waiting for a CPU).
--methods picks the rows: randomized, svd, gesvdx, gesdd, numpy, torch
(default all; the ratio column is always relative to "randomized", which
always runs).
"""
import argparse
import ctypes
import os
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--lib", default=None, help="libfasvd.so (default: ../build/lib)")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--full", action="store_true", help="add DeepSeek-V3-sized shapes")
ap.add_argument("--shapes", default=None)
ap.add_argument("--ranks", default="16,64")
ap.add_argument("--slack", type=float, default=0.01)
ap.add_argument("--methods", default="randomized,svd,gesvdx,gesdd,numpy,torch")
ap.add_argument("--reps", type=int, default=3, help="timed runs per measurement")
ap.add_argument("--stat", choices=("best", "median"), default="best")
ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
args = ap.parse_args()
methods = set(args.methods.split(","))
clock = time.perf_counter if args.clock == "wall" else time.process_time
os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
os.environ["OMP_NUM_THREADS"] = str(args.threads)

import numpy as np  # noqa: E402  (after the thread variables)

try:
    import torch
    torch.set_num_threads(args.threads)
except ImportError:  # the Debian package python3-torch
    torch = None

here = os.path.dirname(os.path.abspath(__file__))
lib_path = args.lib or os.path.join(here, "..", "build", "lib", "libfasvd.so")
lib = ctypes.CDLL(lib_path)


class FactorOpts(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("rank", ctypes.c_int64), ("tau", ctypes.c_double),
                ("max_rank", ctypes.c_int64), ("split", ctypes.c_int), ("dtype", ctypes.c_int),
                ("compute", ctypes.c_int), ("backend", ctypes.c_int),
                ("oversample", ctypes.c_int64), ("power_iters", ctypes.c_int64),
                ("seed", ctypes.c_uint64), ("heads", ctypes.c_int64), ("verify", ctypes.c_int),
                ("cancel", ctypes.c_void_p), ("cancel_arg", ctypes.c_void_p)]


class BlasInfo(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t)] + [(n, ctypes.c_char_p) for n in (
        "name", "version", "config", "core")] + [(n, ctypes.c_int) for n in (
        "threads", "dynamic", "fallback")] + [("recommended", ctypes.c_char_p),
                                              ("cpu_features", ctypes.c_char_p)]


def blas_line():
    """The BLAS every method here runs on (numpy, torch and libfasvd share
    Debian's OpenBLAS), as one line (docs/blas.md)."""
    info = BlasInfo()
    lib.fasvd_blas_info_init(ctypes.byref(info))
    if lib.fasvd_blas_info_get(ctypes.byref(info)):
        return "unknown"
    return "%s %s, core %s, %d threads, fallback %s (best core for this CPU: %s)" % (
        info.name.decode(), info.version.decode(), info.core.decode(), info.threads,
        "yes" if info.fallback else "no", (info.recommended or b"none").decode())


class SvdOpts(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("compute", ctypes.c_int), ("backend", ctypes.c_int),
                ("rank", ctypes.c_int64), ("oversample", ctypes.c_int64),
                ("power_iters", ctypes.c_int64), ("seed", ctypes.c_uint64)]


class SvdReport(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("backend", ctypes.c_int), ("fallback", ctypes.c_int),
                ("error_estimate", ctypes.c_double)]


class FactorReport(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("rows", ctypes.c_int64), ("cols", ctypes.c_int64),
                ("heads", ctypes.c_int64), ("rank", ctypes.c_int64), ("inner", ctypes.c_int64),
                ("full_rank", ctypes.c_int64), ("energy", ctypes.c_double),
                ("energy_lost", ctypes.c_double), ("spectrum_exact", ctypes.c_int),
                ("rel_error_sq", ctypes.c_double), ("params_before", ctypes.c_int64),
                ("params_after", ctypes.c_int64), ("backend", ctypes.c_int),
                ("error_estimate", ctypes.c_double)]


VP = ctypes.c_void_p
lib.fasvd_ctx_new.argtypes = [ctypes.POINTER(VP), VP]
lib.fasvd_ctx_set_param.argtypes = [VP, ctypes.c_int, ctypes.c_int64]
lib.fasvd_tensor_new_borrowed.argtypes = [ctypes.POINTER(VP), VP, ctypes.c_int, VP,
                                          ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                          ctypes.c_int64]
lib.fasvd_tensor_free.argtypes = [VP]
lib.fasvd_tensor_data.argtypes = [VP]
lib.fasvd_tensor_data.restype = VP
lib.fasvd_tensor_rows.argtypes = [VP]
lib.fasvd_tensor_rows.restype = ctypes.c_int64
lib.fasvd_tensor_cols.argtypes = [VP]
lib.fasvd_tensor_cols.restype = ctypes.c_int64
lib.fasvd_factor_opts_init.argtypes = [ctypes.POINTER(FactorOpts), ctypes.c_size_t]
lib.fasvd_factor_report_init.argtypes = [ctypes.POINTER(FactorReport), ctypes.c_size_t]
lib.fasvd_factor.argtypes = [ctypes.POINTER(VP), ctypes.POINTER(VP), VP, VP,
                             ctypes.POINTER(FactorOpts), ctypes.POINTER(FactorReport)]
lib.fasvd_last_error.restype = ctypes.c_char_p
lib.fasvd_svd_opts_init.argtypes = [ctypes.POINTER(SvdOpts), ctypes.c_size_t]
lib.fasvd_svd_report_init.argtypes = [ctypes.POINTER(SvdReport), ctypes.c_size_t]
lib.fasvd_svd.argtypes = [VP, VP, ctypes.POINTER(SvdOpts), ctypes.POINTER(VP),
                          ctypes.POINTER(ctypes.c_double), ctypes.c_int64, ctypes.POINTER(VP),
                          ctypes.POINTER(SvdReport)]

F32, COMPUTE_F32 = 2, 1
GESDD, GESVDX, RANDOMIZED = 1, 3, 5
ctx = VP()
assert lib.fasvd_ctx_new(ctypes.byref(ctx), None) == 0
assert lib.fasvd_ctx_set_param(ctx, 1, args.threads) == 0


def as_f64(x):
    """A float64 copy of the F32 tensor x (C order)."""
    r, c = lib.fasvd_tensor_rows(x), lib.fasvd_tensor_cols(x)
    p = ctypes.cast(lib.fasvd_tensor_data(x), ctypes.POINTER(ctypes.c_float))
    return np.ctypeslib.as_array(p, shape=(r, c)).astype(np.float64)


def fasvd_factor(w, rank, backend, power_iters=2, oversample=10):
    t = VP()
    m, n = w.shape
    assert lib.fasvd_tensor_new_borrowed(ctypes.byref(t), ctx, F32, w.ctypes.data, m, n, n, 1) == 0
    o = FactorOpts()
    lib.fasvd_factor_opts_init(ctypes.byref(o), ctypes.sizeof(o))
    o.rank, o.backend, o.compute = rank, backend, COMPUTE_F32
    o.power_iters, o.oversample = power_iters, oversample
    rep = FactorReport()
    lib.fasvd_factor_report_init(ctypes.byref(rep), ctypes.sizeof(rep))
    a, b = VP(), VP()
    t0 = clock()
    rc = lib.fasvd_factor(ctypes.byref(a), ctypes.byref(b), ctx, t, ctypes.byref(o),
                          ctypes.byref(rep))
    dt = clock() - t0
    if rc:
        raise RuntimeError(lib.fasvd_last_error().decode())

    A, B = as_f64(a), as_f64(b)
    for x in (a, b, t):
        lib.fasvd_tensor_free(x)
    return dt, A, B


def fasvd_svd(w, rank, power_iters, oversample=10):
    t = VP()
    m, n = w.shape
    assert lib.fasvd_tensor_new_borrowed(ctypes.byref(t), ctx, F32, w.ctypes.data, m, n, n, 1) == 0
    o = SvdOpts()
    lib.fasvd_svd_opts_init(ctypes.byref(o), ctypes.sizeof(o))
    o.rank, o.backend, o.compute = rank, RANDOMIZED, COMPUTE_F32
    o.power_iters, o.oversample = power_iters, oversample
    rep = SvdReport()
    lib.fasvd_svd_report_init(ctypes.byref(rep), ctypes.sizeof(rep))
    s = (ctypes.c_double * rank)()
    u, vt = VP(), VP()
    t0 = clock()
    rc = lib.fasvd_svd(ctx, t, ctypes.byref(o), ctypes.byref(u), s, rank, ctypes.byref(vt),
                       ctypes.byref(rep))
    dt = clock() - t0
    if rc:
        raise RuntimeError(lib.fasvd_last_error().decode())

    U, Vt = as_f64(u), as_f64(vt)
    for x in (u, vt, t):
        lib.fasvd_tensor_free(x)
    return dt, U * np.array(s[:]), Vt


def rel_err(w64, A, B, wnorm2):
    return float(((w64 - A @ B) ** 2).sum() / wnorm2)


def best_of(fn):
    """The best (or median, --stat) of --reps timed runs, and the results
    of the fastest run."""
    times, best, out = [], None, None
    for _ in range(args.reps):
        t, *res = fn()
        times.append(t)
        if best is None or t < best:
            best, out = t, res
    if args.stat == "median":
        times.sort()
        best = times[len(times) // 2]
    return best, out


def make(m, n, seed=0):
    rng = np.random.default_rng(seed)
    p = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, p)))
    v, _ = np.linalg.qr(rng.standard_normal((n, p)))
    s = np.arange(1, p + 1) ** -0.5 + 0.02
    return ((u * s) @ v.T).astype(np.float32), s


def main():
    shapes = [(2048, 1024), (3072, 1536)]
    if args.full:
        shapes += [(7168, 1536), (1536, 7168)]
    if args.shapes:
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    ranks = [int(r) for r in args.ranks.split(",")]
    print("# truncate_bench: threads=%d, slack=%g, torch %s, times: %s of %d, %s clock (s)"
          % (args.threads, args.slack, torch.__version__ if torch else "absent", args.stat,
             args.reps, args.clock))
    print("# BLAS: %s" % blas_line())
    print("# err = ||W - AB||^2/||W||^2 relative to the optimum; q = power iterations used")
    hdr = "%-11s %4s %-26s %9s %4s %11s %8s" % ("shape", "r", "method", "time", "q",
                                                "err/opt-1", "ratio")
    print(hdr)
    for (m, n) in shapes:
        w, s = make(m, n)
        w64 = w.astype(np.float64)
        wn2 = float((w64 ** 2).sum())
        sv = np.linalg.svd(w64, compute_uv=False)
        for r in ranks:
            opt = float((sv[r:] ** 2).sum() / (sv ** 2).sum())
            target = opt * (1 + args.slack)
            rows = []

            def search(run, q0):
                for q in range(q0, 7):
                    t, (A, B) = best_of(lambda: run(q))
                    e = rel_err(w64, A, B, wn2)
                    if e <= target:
                        return t, q, e
                return t, q, e

            t_rand, q_rand, e_rand = search(lambda q: fasvd_factor(w, r, RANDOMIZED, q), 1)
            rows.append(("fasvd randomized", t_rand, q_rand, e_rand))
            if "svd" in methods:
                t, (A, B) = best_of(lambda: fasvd_svd(w, r, q_rand))
                rows.append(("fasvd_svd randomized", t, q_rand, rel_err(w64, A, B, wn2)))
            if "gesvdx" in methods:
                t, (A, B) = best_of(lambda: fasvd_factor(w, r, GESVDX))
                rows.append(("fasvd gesvdx (exact top-r)", t, "-", rel_err(w64, A, B, wn2)))
            if "gesdd" in methods:
                t, (A, B) = best_of(lambda: fasvd_factor(w, r, GESDD))
                rows.append(("fasvd gesdd (full SVD)", t, "-", rel_err(w64, A, B, wn2)))

            def np_full():
                t0 = clock()
                U, S, Vt = np.linalg.svd(w, full_matrices=False)
                dt = clock() - t0
                return dt, (U[:, :r] * S[:r]).astype(np.float64), Vt[:r].astype(np.float64)

            if "numpy" in methods:
                t, (A, B) = best_of(np_full)
                rows.append(("numpy svd (LAPACK full)", t, "-", rel_err(w64, A, B, wn2)))
            if torch is not None and "torch" in methods:
                wt = torch.from_numpy(w)

                def tl(q):
                    torch.manual_seed(0)
                    t0 = clock()
                    U, S, V = torch.svd_lowrank(wt, q=r + 10, niter=q)
                    dt = clock() - t0
                    U, S, V = U[:, :r].numpy(), S[:r].numpy(), V[:, :r].numpy()
                    return dt, (U * S).astype(np.float64), V.T.astype(np.float64)

                t, q, e = search(tl, 0)
                rows.append(("torch.svd_lowrank", t, q, e))
            for name, t, q, e in rows:
                print("%-11s %4d %-26s %9.4f %4s %11.2e %7.2fx" % (
                    "%dx%d" % (m, n), r, name, t, q, e / opt - 1, t / t_rand))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
