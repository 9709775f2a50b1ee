#!/usr/bin/python3
"""CLI tests of `fasvd analyze` output handling (TAP output).

usage: test-analyze.py PATH/TO/fasvd

On a copy of the stories260K checkpoint, as a new user would: stdout
carries only results (the per-layer table; progress and "wrote" on
stderr) and `analyze ... | head -1` exits 0 with a table line; a complete
spectra file is not replaced without --force; a failing run (a --json
folder that does not exist, a NaN weight in the last layer) leaves the
earlier file byte for byte and keeps the completed layers for --resume;
--json /dev/stdout and - stream into the pipe and leave /dev/stdout as it
was; the ETA after --resume counts only this run's work.
"""
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import tap  # noqa: E402

FASVD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "fasvd"
DATA = os.path.join(HERE, "..", "data", "stories260K")


def report(ok, name, diag=""):
    tap.case(name, bool(ok), str(diag).splitlines()[:20])


def run(*args):
    """Exit status, stdout and stderr of `fasvd ARGS`."""
    p = subprocess.run([FASVD] + [str(a) for a in args], capture_output=True, timeout=300)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def poke_nan(model, name):
    """Write a NaN into the tensor `name` of model/model.safetensors; the
    old four bytes and their offset."""
    path = os.path.join(model, "model.safetensors")
    b = bytearray(read(path))
    n = struct.unpack("<Q", b[:8])[0]
    off = 8 + n + json.loads(b[8:8 + n])[name]["data_offsets"][0] + 12
    old = bytes(b[off:off + 4])
    b[off:off + 4] = struct.pack("<f", float("nan"))
    with open(path, "wb") as f:
        f.write(bytes(b))
    return off, old


def mend(model, off, old):
    path = os.path.join(model, "model.safetensors")
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(old)


def first_bar(args):
    """The first progress bar line of `fasvd ARGS` on a terminal (stderr a
    pty, stdout discarded)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([FASVD] + args, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    p.wait()
    os.close(master)
    bars = [x for x in out.decode("utf-8", "replace").split("\r") if x.startswith("[")]
    return p.returncode, bars


def main():
    tmp = tempfile.mkdtemp(prefix="fasvd-cli-analyze-")
    try:
        model = os.path.join(tmp, "stories")
        shutil.copytree(DATA, model)
        out = os.path.join(tmp, "keep.safetensors")

        # stdout: results only
        rc, so, se = run("analyze", model, "-o", out)
        lines = so.splitlines()
        report(rc == 0 and lines and lines[0].startswith("layer") and
               any(x.startswith("4 ") for x in lines) and "steps" not in so and
               "wrote" not in so and "steps" in se and "wrote" in se,
               "stdout carries the per-layer table, progress goes to stderr", so + se)
        row = [x for x in lines if x.startswith("0 ")]
        report(all(len(x) <= 80 for x in lines) and row and
               row[0].split()[5:7] == ["26/31", "(32)"] and row[0].endswith("(8)"),
               "the table fits 80 columns and shows the structural bounds (stack.QK 32, "
               "fused VO 8)", so)
        keep = read(out)
        rc, so, se = run("analyze", model, "-o", out, "--force", "-q")
        report(rc == 0 and so == "" and read(out) == keep, "-q: no table, no progress",
               so + se)

        # | head -1: exit 0 with a table line
        p = subprocess.run(["bash", "-c", '"$0" analyze "$1" -o "$2" --force | head -1; '
                            'echo "status ${PIPESTATUS[0]}"', FASVD, model, out],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        so = p.stdout.decode()
        report(so.startswith("layer") and so.splitlines()[-1] == "status 0",
               "analyze | head -1 exits 0 with a results line", so + p.stderr.decode())

        # a complete file is not replaced without --force
        rc, so, se = run("analyze", model, "-o", out)
        report(rc != 0 and "--force" in se and read(out) == keep,
               "-o over a complete spectra file is refused without --force", se)

        # a --json folder that does not exist: refused before work, file kept
        for opt in ("--json", "--csv"):
            rc, so, se = run("analyze", model, "-o", out, "--force", opt,
                             os.path.join(tmp, "nonexistent_dir", "s.json"))
            report(rc == 13 and "nonexistent_dir" in se and read(out) == keep and
                   not os.path.exists(out + ".partial") and "layer 0" not in se,
                   "%s into a missing folder fails before any work, file kept" % opt, se)

        # NaN in the last layer: file kept, layers 0-3 in OUT.partial, --resume
        off, old = poke_nan(model, "model.layers.4.self_attn.o_proj.weight")
        rc, so, se = run("analyze", model, "-o", out, "--force")
        report(rc == 17 and read(out) == keep and os.path.exists(out + ".partial") and
               ".partial" in se and "--resume" not in so,
               "a NaN in the last layer leaves the earlier file byte-identical", se)
        rc, so, se = run("analyze", model, "-o", out)
        report(rc != 0 and ".partial" in se and read(out) == keep,
               "a partial file is not replaced without --resume or --force", se)
        mend(model, off, old)
        rc, bars = first_bar(["analyze", model, "-o", out, "--resume"])
        report(rc == 0 and bars and "4/5" in bars[0] and "ETA --:--" in bars[0] and
               read(out) == keep and not os.path.exists(out + ".partial"),
               "--resume finishes the partial file; its first ETA is not 0:00", bars)

        # summaries as streams into a pipe; /dev/stdout left in place
        before = os.lstat("/dev/stdout")
        for dest in ("/dev/stdout", "-"):
            rc, so, se = run("analyze", model, "-o", out, "--force", "--json", dest)
            ok = rc == 0
            try:
                ok = ok and json.loads(so)["format"] == "fasvd.summary"
            except ValueError:
                ok = False
            report(ok and read(out) == keep, "--json %s streams the summary" % dest,
                   so[:300] + se)
        # a reader that stops early: no failure, the spectra file complete
        p = subprocess.run(["bash", "-c", '"$0" analyze "$1" -o "$2" --force --json - '
                            '--tau 0.5,0.25,0.1,0.05,0.01,0.001 | head -3; '
                            'echo "status ${PIPESTATUS[0]}"', FASVD, model, out],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        so, se = p.stdout.decode(), p.stderr.decode()
        report(so.splitlines()[0] == "{" and so.splitlines()[-1] == "status 0" and
               "pipe" not in se.lower() and "fasvd:" not in se and read(out) == keep,
               "--json - | head -3 exits 0, the spectra file complete", so + se)
        after = os.lstat("/dev/stdout")
        report((before.st_mode, before.st_ino) == (after.st_mode, after.st_ino),
               "/dev/stdout is left as it was")
        fifo = os.path.join(tmp, "fifo")
        os.mkfifo(fifo)
        rc, so, se = run("analyze", model, "-o", fifo)
        report(rc != 0 and "regular file" in se and
               os.path.exists(fifo) and not os.path.isfile(fifo),
               "-o a FIFO is refused", se)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tap.report()


if __name__ == "__main__":
    sys.exit(main())
