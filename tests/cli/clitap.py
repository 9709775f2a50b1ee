"""Shared helpers of the CLI tests (tests/cli/test-*.py): TAP lines and
running the `fasvd` tool named by the script's first argument."""
import json
import os
import struct
import subprocess
import sys

FASVD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "fasvd"
results = []


def report(ok, name, diag=""):
    """One TAP line; `diag` (its first 20 lines) is shown when it fails."""
    results.append(bool(ok))
    print(("ok" if ok else "not ok") + " %d - %s" % (len(results), name))
    if not ok and diag:
        for line in str(diag).splitlines()[:20]:
            print("# " + line)
    sys.stdout.flush()


def run(*args):
    """(exit status, stdout, stderr) of `fasvd ARGS...`."""
    p = subprocess.run([FASVD] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=300)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def finish():
    """Print the TAP plan; the exit status of the script."""
    print("1..%d" % len(results))
    return 0 if all(results) else 1


def poke_nan(model, name):
    """Write a NaN into the F32 tensor `name` of model/model.safetensors (its
    fourth element); the offset and the old bytes, for mend()."""
    path = os.path.join(model, "model.safetensors")
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        off = 8 + n + json.loads(f.read(n))[name]["data_offsets"][0] + 12
        f.seek(off)
        old = f.read(4)
        f.seek(off)
        f.write(struct.pack("<f", float("nan")))
    return off, old


def mend(model, off, old):
    """Undo poke_nan()."""
    with open(os.path.join(model, "model.safetensors"), "r+b") as f:
        f.seek(off)
        f.write(old)
