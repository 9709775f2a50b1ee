"""TAP output for the repository checks (tests/check-*.py): collect cases
with case(), print them with report(), whose value is the exit status."""
import sys

results = []


def case(name, ok, diag=(), skip=None):
    """One test case; `diag` lines are shown when it fails, `skip` (a
    reason) marks it skipped."""
    results.append((name, ok, list(diag), skip))


def report():
    print("1..%d" % len(results))
    for i, (name, ok, diag, skip) in enumerate(results, 1):
        if skip:
            print("ok %d - %s # SKIP %s" % (i, name, skip))
            continue
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
        if not ok:
            # Diagnostics go to stderr, which `meson test --print-errorlogs` shows.
            print("not ok %d - %s" % (i, name), file=sys.stderr)
            for d in diag:
                print("# " + d, file=sys.stderr)
    return 0 if all(ok or skip for _, ok, _, skip in results) else 1
