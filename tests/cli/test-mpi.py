#!/usr/bin/python3
"""Tests of fasvd-mpi, the MPI driver (TAP output).

usage: test-mpi.py PATH/TO/fasvd PATH/TO/fasvd-mpi MPIRUN

`mpirun -np 3 --oversubscribe fasvd-mpi analyze` on a 6-layer DeepSeek-V3-
format model writes a file byte-identical to `fasvd analyze` with the same
--threads (with extra tensors too); a rank that fails (a NaN weight) fails
the run naming the rank, item and message, and --resume completes it after
the weight is mended; a rank killed with SIGKILL fails the run, and
--resume completes it; an existing output needs --force; `fasvd-mpi survey`
writes the spectra files and tables of `fasvd survey`, and a rerun finds
every model complete.
Open MPI refuses to run as root without an explicit opt-in: this script
(only) sets it when it runs as root.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from clitap import finish, mend, poke_nan, report, run

HERE = os.path.dirname(os.path.abspath(__file__))
STORIES = os.path.join(HERE, "..", "data", "stories260K")
MPI = os.path.abspath(sys.argv[2])
MPIRUN = sys.argv[3]
ENV = dict(os.environ)
if os.geteuid() == 0:
    ENV.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
# Under AddressSanitizer, LeakSanitizer reports Open MPI's own allocations
# (its components are dlopen'ed and unloaded by MPI_Finalize, so their
# leaks cannot even be attributed): leak checking is off for the ranks only.
# libfasvd's side of this path (shard analyses, the merge) is leak-checked
# by cli-shard.
ENV["ASAN_OPTIONS"] = ":".join(
    [o for o in ENV.get("ASAN_OPTIONS", "").split(":") if o and not o.startswith("detect_leaks")]
    + ["detect_leaks=0"])
NP = [MPIRUN, "-np", "3", "--oversubscribe"]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def mpi(*args):
    p = subprocess.run(NP + [MPI, "-j", "1"] + [str(a) for a in args], capture_output=True,
                       env=ENV, timeout=300)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def test_identical(tmp):
    run("demo", "--dir", os.path.join(tmp, "d"), "--layers", "6")
    model = os.path.join(tmp, "d", "model")
    for extra in ([], ["--tensors", "*mlp.down_proj.weight"]):
        whole, out = os.path.join(tmp, "w.st"), os.path.join(tmp, "m.st")
        run("analyze", model, "-o", whole, "-q", "-j", "1", "--force", *extra)
        rc, _, err = mpi("analyze", model, "-o", out, "--force", *extra)
        report(rc == 0 and read(out) == read(whole) and not os.path.exists(out + ".parts"),
               "mpirun -np 3 fasvd-mpi analyze %sis byte-identical to fasvd analyze"
               % ("--tensors " if extra else ""), err)
    rc, _, err = mpi("analyze", model, "-o", out)
    report(rc != 0 and "exists: --force" in err, "an existing output needs --force", err)


def test_verbose(tmp):
    """--verbose: a timing line per rank, whose items add up to the run's;
    rank 0 hands items out from a thread, so a run on one rank (no other
    rank to serve) and on three give the same file."""
    model, out = os.path.join(tmp, "d", "model"), os.path.join(tmp, "v.st")
    whole = os.path.join(tmp, "vw.st")
    run("analyze", model, "-o", whole, "-q", "-j", "1")
    rc, _, err = mpi("analyze", model, "-o", out, "--force", "-v", "-q")
    lines = [l for l in err.splitlines() if l.startswith("timing: rank ")]
    items = sum(int(l.split(": ")[2].split()[0]) for l in lines)
    report(rc == 0 and len(lines) == 3 and items == 6 and "prepare" in err and
           "merge" in err and read(out) == read(whole),
           "fasvd-mpi -v reports every rank's items, compute and idle seconds", err)
    p = subprocess.run([MPIRUN, "-np", "1", MPI, "-j", "1", "analyze", model, "-o", out,
                        "--force", "-v"], capture_output=True, env=ENV, timeout=300)
    err = p.stderr.decode("utf-8", "replace")
    report(p.returncode == 0 and "timing: rank 0: 6 items" in err and
           read(out) == read(whole),
           "fasvd-mpi on one rank computes every item itself", err)


def test_failing_rank(tmp):
    model = os.path.join(tmp, "stories")
    shutil.copytree(STORIES, model)
    whole, out = os.path.join(tmp, "sw.st"), os.path.join(tmp, "sm.st")
    run("analyze", model, "-o", whole, "-q", "-j", "1")
    off, old = poke_nan(model, "model.layers.2.self_attn.q_proj.weight")
    rc, _, err = mpi("analyze", model, "-o", out)
    report(rc != 0 and "rank " in err and "failed on item" in err and "NaN" in err and
           "--resume" in err and err.count("fasvd:") == 1,
           "a failing rank fails the run with the rank, item and message, once", err)
    mend(model, off, old)
    rc, _, err = mpi("analyze", model, "-o", out, "--resume")
    report(rc == 0 and read(out) == read(whole), "--resume completes it, byte-identical", err)


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


def test_kill(tmp):
    run("demo", "--dir", os.path.join(tmp, "big"), "--layers", "12", "--heads", "64")
    model = os.path.join(tmp, "big", "model")
    whole, out = os.path.join(tmp, "bw.st"), os.path.join(tmp, "bm.st")
    run("analyze", model, "-o", whole, "-q", "-j", "1")
    p = subprocess.Popen(NP + [MPI, "-j", "1", "analyze", model, "-o", out, "-q"], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts, killed, t0 = out + ".parts", None, time.time()
    while p.poll() is None and time.time() - t0 < 120:
        done = [f for f in os.listdir(parts)] if os.path.isdir(parts) else []
        ranks = children(p.pid)
        if len([f for f in done if f.startswith("part-")]) >= 2 and ranks:
            killed = ranks[-1]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.01)
    p.wait(timeout=120)
    report(killed and p.returncode != 0 and not os.path.exists(out),
           "a rank killed with SIGKILL fails the run", p.stderr.read().decode()[-500:])
    rc, _, err = mpi("analyze", model, "-o", out, "--resume", "-q")
    report(rc == 0 and read(out) == read(whole), "--resume completes it, byte-identical", err)


def test_survey(tmp):
    for r in ("run1", "run2"):
        shutil.copytree(STORIES, os.path.join(tmp, r, "ck"))
    with open(os.path.join(tmp, "list"), "w") as f:
        f.write("# two checkpoints and a DeepSeek-V3\n%s\n%s\n%s\n" % (
            os.path.join(tmp, "run1", "ck"), os.path.join(tmp, "run2", "ck"),
            os.path.join(tmp, "d", "model")))
    one, many = os.path.join(tmp, "s1"), os.path.join(tmp, "sp")
    run("survey", os.path.join(tmp, "list"), "-o", one, "-q", "-j", "1")
    rc, _, err = mpi("survey", os.path.join(tmp, "list"), "-o", many)
    names = ("run1_ck", "run2_ck", "model")
    same = rc == 0 and all(
        read(os.path.join(one, n + ".spectra.safetensors")) ==
        read(os.path.join(many, n + ".spectra.safetensors")) for n in names) and \
        read(os.path.join(one, "survey.csv")) == read(os.path.join(many, "survey.csv"))
    report(same, "fasvd-mpi survey writes the spectra files and table of fasvd survey", err)
    rc, _, err = mpi("survey", os.path.join(tmp, "list"), "-o", many)
    report(rc == 0 and err.count("complete already") == 3,
           "a second fasvd-mpi survey finds every model complete", err)


def main():
    tmp = tempfile.mkdtemp(prefix="fasvd-test-mpi-")
    try:
        test_identical(tmp)
        test_verbose(tmp)
        test_failing_rank(tmp)
        test_kill(tmp)
        test_survey(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
