#!/usr/bin/python3
"""Write the small example checkpoint that `make demo` analyses.

usage: gen-demo.py OUT.safetensors

One F32 tensor `attn.weight` of shape [12, 8] built as U·diag(s)·Vᵀ with
random orthonormal U, V (fixed seed) and the known singular values s below,
the last one zero (rank 7). `fasvd svdvals` should print them back, to
float32 rounding (~1e-6 relative).
"""
import json
import struct
import sys

import numpy as np

SIGMA = [8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0]
ROWS, COLS = 12, 8


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    rng = np.random.default_rng(20260101)
    u, _ = np.linalg.qr(rng.standard_normal((ROWS, COLS)))
    v, _ = np.linalg.qr(rng.standard_normal((COLS, COLS)))
    a = (u * np.array(SIGMA)) @ v.T
    data = a.astype("<f4").tobytes()
    header = {
        "__metadata__": {"format": "pt", "about": "libfasvd make demo: known singular values"},
        "attn.weight": {"dtype": "F32", "shape": [ROWS, COLS], "data_offsets": [0, len(data)]},
    }
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)
    with open(sys.argv[1], "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr + data)
    print("%s: tensor attn.weight, F32 %d x %d, made with singular values"
          % (sys.argv[1], ROWS, COLS))
    print("  " + " ".join("%g" % s for s in SIGMA))
    print("fasvd svdvals prints them back (to float32 rounding):")
    return 0


if __name__ == "__main__":
    sys.exit(main())
