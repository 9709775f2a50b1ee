#!/usr/bin/python3
"""CLI tests of the BLAS kernels the `fasvd` tool runs (TAP output).

usage: test-blas.py PATH/TO/fasvd [PATH/TO/libfake-flexiblas.so]

`fasvd --version --verbose` reports the BLAS, its core and the CPU. When
OpenBLAS runs generic kernels the CPU outclasses, the tool re-executes itself
once with OPENBLAS_CORETYPE set to the best core the CPU supports. This
machine's OpenBLAS may well know its CPU, so the test hook
FASVD_TEST_FORCE_FALLBACK=1 makes the tool take any core for a fallback: the
re-execution must then choose a core whose instructions /proc/cpuinfo lists,
that OpenBLAS then reports running, happen once although the re-executed
process sees the hook too (a second one would loop: the run would time
out), and never happen when the user set OPENBLAS_CORETYPE or
FASVD_NO_REEXEC. With the second argument, a library holding FlexiBLAS's
query functions is preloaded: the report must then name FlexiBLAS, its
version and backend, and still OpenBLAS's core.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tap  # noqa: E402

FASVD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "fasvd"
FAKE_FLEXIBLAS = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None

# The instructions each OpenBLAS core's kernels need (/proc/cpuinfo names),
# best first: what the tool may choose on this CPU.
AVX512 = {"avx", "fma", "avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}
CORES = [("Cooperlake", AVX512 | {"avx512_bf16"}), ("SkylakeX", AVX512),
         ("Zen", {"avx", "fma", "avx2"}), ("Haswell", {"avx", "fma", "avx2"}),
         ("Sandybridge", {"avx"})]


def report(ok, name, diag=""):
    tap.case(name, bool(ok), str(diag).splitlines()[:20])


def cpu():
    """(set of flags, vendor) of /proc/cpuinfo."""
    flags, vendor = set(), ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
            elif key.strip() == "vendor_id" and not vendor:
                vendor = value.strip()
    return flags, vendor


def expected_core(flags, vendor):
    amd = vendor in ("AuthenticAMD", "HygonGenuine")
    for name, needs in CORES:
        if needs <= flags and (name != "Zen" or amd) and (name != "Haswell" or not amd):
            return name
    return None


def run(env_changes, *args):
    """Run the tool with OPENBLAS_CORETYPE and the fasvd variables unset but
    for env_changes: (status, stdout, stderr, {report key: value})."""
    env = {k: v for k, v in os.environ.items()
           if k != "OPENBLAS_CORETYPE" and not k.startswith("FASVD_")}
    env.update(env_changes)
    p = subprocess.run([FASVD] + list(args or ["--version", "--verbose"]), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    info = {}
    m = re.search(r"^BLAS: (\S+) (\S*), core (\S+), (\d+) threads?, fallback (yes|no)"
                  r"(?: \(best core for this CPU: (\w+)\))?$", out, re.M)
    if m:
        info = dict(zip(("name", "version", "core", "threads", "fallback", "best"), m.groups()))
    for key in ("BLAS config", "CPU", "OPENBLAS_CORETYPE"):
        m = re.search(r"^%s: (.*)$" % key, out, re.M)
        info[key] = m.group(1) if m else None
    return p.returncode, out, p.stderr.decode("utf-8", "replace"), info


def flexiblas(plain):
    """Under FlexiBLAS (its query functions preloaded) the report names it,
    its version and backend, then the backend's own description."""
    if not FAKE_FLEXIBLAS:
        tap.case("the report under FlexiBLAS", True, skip="no stand-in library given")
        return
    # An ASan build wants its runtime first; the stand-in needs none.
    st, out, err, info = run({"LD_PRELOAD": FAKE_FLEXIBLAS,
                              "ASAN_OPTIONS": "verify_asan_link_order=0"})
    config = "FlexiBLAS 9.8.7, backend TEST-BACKEND: %s" % plain.get("BLAS config")
    report(st == 0 and info.get("name") == "FlexiBLAS" and info.get("version") == "9.8.7"
           and info.get("BLAS config") == config and info.get("core") == plain.get("core"),
           "under FlexiBLAS the report names it, its version and backend, and OpenBLAS's "
           "core", out + err)


def main():
    flags, vendor = cpu()
    best = expected_core(flags, vendor)
    force = {"FASVD_TEST_FORCE_FALLBACK": "1"}
    set_by_fasvd = "%s (set by fasvd, which re-executed itself once)" % best

    st, out, err, info = run({})
    report(st == 0 and not err and info.get("name") == "OpenBLAS" and info.get("CPU"),
           "--version --verbose reports the BLAS, its core and the CPU", out + err)
    report(info.get("best") == best,
           "the best core for this CPU is %s, as its /proc/cpuinfo flags give" % best, out)
    if info.get("fallback") == "yes":
        report(info["core"] == best and info["OPENBLAS_CORETYPE"] == set_by_fasvd,
               "a real fallback was replaced by %s" % best, out)
    else:
        report(info["OPENBLAS_CORETYPE"] == "unset",
               "OpenBLAS's own choice (%s) is kept when it is no fallback" % info.get("core"),
               out)

    flexiblas(info)
    if not best or "DYNAMIC_ARCH" not in (info.get("BLAS config") or ""):
        tap.case("re-execution", True, skip="no AVX, or an OpenBLAS built for one CPU type: "
                 "nothing to re-execute with")
        return tap.report()

    st, out, err, info = run(force)
    report(st == 0 and not err, "the forced re-execution runs without a message", out + err)
    report(info.get("OPENBLAS_CORETYPE") == set_by_fasvd,
           "it re-executes once, with OPENBLAS_CORETYPE=%s" % best, out)
    report(info.get("core") == best and best in (info.get("BLAS config") or "").split(),
           "OpenBLAS then runs the chosen core (its corename and its config say so)", out)
    report(info.get("fallback") == "no", "which is no fallback", out)

    st, out, err, info = run(dict(force, FASVD_REEXEC="1"))
    report(st == 0 and info.get("OPENBLAS_CORETYPE") == "unset",
           "the marker FASVD_REEXEC stops a re-execution", out + err)

    st, out, err, info = run(dict(force, OPENBLAS_CORETYPE="Prescott"))
    report(st == 0 and info.get("core") == "Prescott" and info.get("fallback") == "yes"
           and info.get("OPENBLAS_CORETYPE") == "Prescott (from the environment)",
           "the user's OPENBLAS_CORETYPE is kept, and reported as a fallback", out + err)

    st, out, err, info = run(dict(force, FASVD_NO_REEXEC="1"))
    report(st == 0 and info.get("OPENBLAS_CORETYPE") == "unset",
           "FASVD_NO_REEXEC=1 turns the re-execution off", out + err)
    st, out, err, info = run(dict(force, FASVD_NO_REEXEC="0"))
    report(info.get("OPENBLAS_CORETYPE") == set_by_fasvd, "FASVD_NO_REEXEC=0 does not", out)

    # The re-executed process gets the same arguments.
    plain = run({}, "help", "analyze")
    forced = run(force, "help", "analyze")
    report(plain[0] == forced[0] == 0 and plain[1] == forced[1] and "usage: fasvd analyze"
           in plain[1] and not forced[2], "a command re-executed gets its arguments",
           forced[1] + forced[2])
    st, out, err, _ = run(force, "--threads", "x", "info")
    report(st == 2 and not out and err.count("\n") == 1 and "'x'" in err,
           "a usage error after the re-execution is still one line", err)
    return tap.report()


if __name__ == "__main__":
    sys.exit(main())
