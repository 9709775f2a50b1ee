"""Shared helpers of the CLI tests (tests/cli/test-*.py): TAP lines and
running the `fasvd` tool named by the script's first argument."""
import os
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
