#!/usr/bin/python3
"""The hostile-input catalogue through the `fasvd` CLI (TAP).

    run-hostile.py FASVD MANIFEST [--timeout SECONDS] [--only ID[,ID...]]

For every case of MANIFEST (tests/hostile/gen-hostile.py) and every command
it names, run

    fasvd svdvals CHECKPOINT TENSOR
    fasvd info DIR
    fasvd analyze DIR -o SCRATCH/spectra.safetensors -q [--json ...] [--csv ...]

under `timeout` semantics (a hang is a failure) with a fresh, otherwise empty
scratch output folder, and check: no signal; for an expected failure an exit
status in 1..125 that is exactly 10 + |code| for one of the listed fasvd
error codes (tools/cli.h), exactly one line on stderr, "fasvd: ...", naming
every listed file / tensor / key, nothing on stdout from a failing analyze
beyond progress, and the scratch folder unchanged (no output file or
temporary left behind); for "ok" exit status 0; for "any" no signal, no hang
and, on failure, the same one-line stderr rule. One TAP line per check.
"""

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile

CODES = {"EINVAL": -1, "ENOMEM": -2, "EIO": -3, "EFORMAT": -4, "EDTYPE": -5, "ESHAPE": -6,
         "ENONFINITE": -7, "ERANGE": -8, "ELAPACK": -9, "ENOTFOUND": -10, "EARCH": -11,
         "ECANCELED": -12, "ESTATE": -13, "EINTERNAL": -14}
STATUS = {10 + abs(v): k for k, v in CODES.items()}


def listing(d):
    out = []
    for base, dirs, files in os.walk(d):
        dirs.sort()
        for n in sorted(dirs + files):
            out.append(os.path.relpath(os.path.join(base, n), d))
    return sorted(out)


def kept_partial(d, before, after, message):
    """A failed analysis may leave one new file: the spectra of the steps it
    completed, incomplete and resumable, named in the message ("X keeps the
    N steps done so far"). Is the change from before to after exactly that?"""
    added = sorted(set(after) - set(before))
    if len(added) != 1 or sorted(set(after) - set(added)) != before:
        return False
    path = os.path.join(d, added[0])
    if path + " keeps the" not in message:
        return False
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(n)).get("__metadata__", {})
    except (OSError, ValueError, struct.error):
        return False
    return meta.get("format") == "fasvd.spectra" and meta.get("complete") == "false"


class Scratch:
    def __init__(self):
        base = None if os.environ.get("TMPDIR") or not os.access("/dev/shm", os.W_OK) \
            else "/dev/shm"
        self.dir = tempfile.mkdtemp(prefix="fasvd-hostile-cli-", dir=base)
        self.file = os.path.join(self.dir, "file")
        self.sub = os.path.join(self.dir, "dir")
        self.ro = os.path.join(self.dir, "ro")
        with open(self.file, "w") as f:
            f.write("a regular file\n")
        os.mkdir(self.sub)
        os.mkdir(self.ro, 0o555)

    def resolve(self, p):
        for tag, path in (("@file", self.file), ("@dir", self.sub), ("@readonly", self.ro)):
            if p.startswith(tag):
                return path + p[len(tag):]
        return p if os.path.isabs(p) else os.path.join(self.dir, p)

    def close(self):
        os.chmod(self.ro, 0o755)
        shutil.rmtree(self.dir, ignore_errors=True)


def run(argv, timeout):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or b"", e.stderr or b""
    return p.returncode, p.stdout, p.stderr


def check(case, cmd, fasvd, root, timeout):
    """Returns (ok, message, skip_reason)."""
    exp = case[cmd]
    scratch = Scratch()
    try:
        if cmd == "svdvals":
            argv = [fasvd, "svdvals", os.path.join(root, case["checkpoint"]), case["tensor"]]
        elif cmd == "info":
            argv = [fasvd, "info", os.path.join(root, case["dir"])]
        else:
            args = case.get("analyze_args", {})
            out = args.get("out", "spectra.safetensors")
            if out.startswith("@readonly") and os.geteuid() == 0:
                return True, "", "running as root: a read-only folder is writable"
            argv = [fasvd, "analyze", os.path.join(root, case["dir"]), "-q", "-j", "1",
                    "-o", scratch.resolve(out)]
            if "json" in args:
                argv += ["--json", scratch.resolve(args["json"])]
            if "csv" in args:
                argv += ["--csv", scratch.resolve(args["csv"])]
        before = listing(scratch.dir)
        rc, out, err = run(argv, case.get("timeout", timeout))
        after = listing(scratch.dir)
        cmdline = " ".join(argv[1:])
        if rc is None:
            return False, "hung (killed after %d s): %s" % (case.get("timeout", timeout),
                                                             cmdline), None
        if rc < 0:
            return False, "killed by signal %s: %s\nstderr: %s" % (
                signal.Signals(-rc).name, cmdline, err.decode(errors="replace")), None
        text = err.decode(errors="replace")
        lines = text.splitlines()
        problems = []
        if rc != 0:
            if rc > 125:
                problems.append("exit status %d outside 1..125" % rc)
            if len(lines) != 1 or not text.endswith("\n"):
                problems.append("stderr has %d lines, not exactly one" % len(lines))
            elif not lines[0].startswith("fasvd: "):
                problems.append("stderr line does not start with 'fasvd: '")
            if before != after and not kept_partial(scratch.dir, before, after, text):
                problems.append("output folder changed: %s -> %s" % (before, after))
        want = exp["expect"]
        if want == "ok" and rc != 0:
            problems.append("expected success")
        if want == "fail":
            if rc == 0:
                problems.append("accepted (exit status 0); expected %s"
                                % " or ".join(exp["codes"]))
            elif rc not in (10 + abs(CODES[c]) for c in exp["codes"]):
                problems.append("exit status %d (%s), expected %s" % (
                    rc, STATUS.get(rc, "not a library error"),
                    " or ".join("%d (%s)" % (10 + abs(CODES[c]), c) for c in exp["codes"])))
            for n in exp.get("names", []):
                w = scratch.resolve(n) if n.startswith("@") else n
                if lines and w not in lines[0]:
                    problems.append("message does not name '%s'" % w)
        if rc == 0 and cmd == "svdvals":
            vals = out.split()
            try:
                bad = [v for v in vals if not (float(v) >= 0 and float(v) != float("inf"))]
            except ValueError:
                bad = vals[:1]
            if not vals or bad:
                problems.append("exit status 0 but the output is not finite singular values: "
                                "%r" % out[:200])
        msg = "%s -> %d%s" % (cmdline, rc, (": " + lines[0]) if rc and lines else "")
        if problems:
            return False, "; ".join(problems) + "\n" + msg + (
                "\nstderr:\n" + text if len(lines) != 1 else ""), None
        return True, msg, None
    finally:
        scratch.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fasvd")
    ap.add_argument("manifest")
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("--only")
    a = ap.parse_args()
    man = json.load(open(a.manifest))
    root = man["root"]
    only = set(a.only.split(",")) if a.only else None
    checks = [(c, cmd) for c in man["cases"] for cmd in ("svdvals", "info", "analyze")
              if cmd in c and (not only or c["id"] in only)]
    print("1..%d" % len(checks))
    sys.stdout.flush()
    failed = 0
    for i, (c, cmd) in enumerate(checks, 1):
        ok, msg, skip = check(c, cmd, a.fasvd, root, a.timeout)
        name = "%s/%s (%s)" % (c["id"], cmd, c["what"])
        xfail = c[cmd].get("xfail")
        if skip:
            print("ok %d - %s # SKIP %s" % (i, name, skip))
        elif xfail:
            # meson: "not ok # TODO" is an expected failure, "ok # TODO" an
            # unexpected pass (a failure: remove the XFAIL entry)
            print("%s %d - %s # TODO known bug: %s" % ("ok" if ok else "not ok", i, name,
                                                        xfail))
            print("# " + msg.replace("\n", "\n# "))
        elif ok:
            print("ok %d - %s" % (i, name))
            print("# " + msg.replace("\n", "\n# "))
        else:
            failed += 1
            print("not ok %d - %s" % (i, name))
            print("# " + msg.replace("\n", "\n# "))
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
