#!/usr/bin/python3
"""Truncation speed: libfasvd's randomised backend against LAPACK's full SVD
(libfasvd's gesdd backend and numpy.linalg.svd) and torch.svd_lowrank, at
equal accuracy.

usage: truncate_bench.py [--lib PATH/libfasvd.so] [--threads N] [--full]
                         [--shapes MxN,...] [--ranks R,...] [--slack S]

For each shape and rank r, a float32 matrix with a slowly decaying spectrum
(sigma_i = i^-0.5 plus a noise floor: hard for sketching) is truncated to
rank r by every method. Accuracy is the relative squared Frobenius error
||W - A B||^2 / ||W||^2 against the optimum sum_{i>r} sigma_i^2 / sum
sigma_i^2 (float64 numpy SVD). "Equal accuracy": each randomised method runs
with the fewest power iterations (0..6, oversample 10) whose error is within
a factor (1 + S) of the optimum (S = --slack, default 0.01); its time at
that setting is reported, with the ratio to libfasvd's randomised time.

Everything runs single-threaded by default (--threads 1): OPENBLAS_NUM_THREADS,
torch.set_num_threads and FASVD_CTX_THREADS agree. Times are the best of 3.
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
args = ap.parse_args()
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
lib.fasvd_factor_opts_init.argtypes = [ctypes.POINTER(FactorOpts)]
lib.fasvd_factor_report_init.argtypes = [ctypes.POINTER(FactorReport)]
lib.fasvd_factor.argtypes = [ctypes.POINTER(VP), ctypes.POINTER(VP), VP, VP,
                             ctypes.POINTER(FactorOpts), ctypes.POINTER(FactorReport)]
lib.fasvd_last_error.restype = ctypes.c_char_p

F32, COMPUTE_F32 = 2, 1
GESDD, GESVDX, RANDOMIZED = 1, 3, 5
ctx = VP()
assert lib.fasvd_ctx_new(ctypes.byref(ctx), None) == 0
assert lib.fasvd_ctx_set_param(ctx, 1, args.threads) == 0


def fasvd_factor(w, rank, backend, power_iters=2, oversample=10):
    t = VP()
    m, n = w.shape
    assert lib.fasvd_tensor_new_borrowed(ctypes.byref(t), ctx, F32, w.ctypes.data, m, n, n, 1) == 0
    o = FactorOpts()
    lib.fasvd_factor_opts_init(ctypes.byref(o))
    o.rank, o.backend, o.compute = rank, backend, COMPUTE_F32
    o.power_iters, o.oversample = power_iters, oversample
    rep = FactorReport()
    lib.fasvd_factor_report_init(ctypes.byref(rep))
    a, b = VP(), VP()
    t0 = time.perf_counter()
    rc = lib.fasvd_factor(ctypes.byref(a), ctypes.byref(b), ctx, t, ctypes.byref(o),
                          ctypes.byref(rep))
    dt = time.perf_counter() - t0
    if rc:
        raise RuntimeError(lib.fasvd_last_error().decode())

    def arr(x):
        r, c = lib.fasvd_tensor_rows(x), lib.fasvd_tensor_cols(x)
        p = ctypes.cast(lib.fasvd_tensor_data(x), ctypes.POINTER(ctypes.c_float))
        return np.ctypeslib.as_array(p, shape=(r, c)).astype(np.float64)

    A, B = arr(a), arr(b)
    for x in (a, b, t):
        lib.fasvd_tensor_free(x)
    return dt, A, B


def rel_err(w64, A, B, wnorm2):
    return float(((w64 - A @ B) ** 2).sum() / wnorm2)


def best_of(fn, reps=3):
    best, out = None, None
    for _ in range(reps):
        t, *res = fn()
        if best is None or t < best:
            best, out = t, res
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
    print("# truncate_bench: threads=%d, slack=%g, torch %s, times: best of 3 (s)"
          % (args.threads, args.slack, torch.__version__ if torch else "absent"))
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

            def search(run):
                for q in range(7):
                    t, (A, B) = best_of(lambda: run(q))
                    e = rel_err(w64, A, B, wn2)
                    if e <= target:
                        return t, q, e
                return t, q, e

            t_rand, q_rand, e_rand = search(lambda q: fasvd_factor(w, r, RANDOMIZED, q))
            rows.append(("fasvd randomized", t_rand, q_rand, e_rand))
            t, (A, B) = best_of(lambda: fasvd_factor(w, r, GESVDX))
            rows.append(("fasvd gesvdx (exact top-r)", t, "-", rel_err(w64, A, B, wn2)))
            t, (A, B) = best_of(lambda: fasvd_factor(w, r, GESDD))
            rows.append(("fasvd gesdd (full SVD)", t, "-", rel_err(w64, A, B, wn2)))

            def np_full():
                t0 = time.perf_counter()
                U, S, Vt = np.linalg.svd(w, full_matrices=False)
                dt = time.perf_counter() - t0
                return dt, (U[:, :r] * S[:r]).astype(np.float64), Vt[:r].astype(np.float64)

            t, (A, B) = best_of(np_full)
            rows.append(("numpy svd (LAPACK full)", t, "-", rel_err(w64, A, B, wn2)))
            if torch is not None:
                wt = torch.from_numpy(w)

                def tl(q):
                    torch.manual_seed(0)
                    t0 = time.perf_counter()
                    U, S, V = torch.svd_lowrank(wt, q=r + 10, niter=q)
                    dt = time.perf_counter() - t0
                    U, S, V = U[:, :r].numpy(), S[:r].numpy(), V[:, :r].numpy()
                    return dt, (U * S).astype(np.float64), V.T.astype(np.float64)

                t, q, e = search(tl)
                rows.append(("torch.svd_lowrank", t, q, e))
            for name, t, q, e in rows:
                print("%-11s %4d %-26s %9.4f %4s %11.2e %7.2fx" % (
                    "%dx%d" % (m, n), r, name, t, q, e / opt - 1, t / t_rand))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
