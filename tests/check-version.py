#!/usr/bin/env python3
"""The version is written once, in meson.build's project() (TAP output).

Usage: check-version.py SOURCE_ROOT BUILD_ROOT LIBRARY

  1. the generated BUILD_ROOT/include/fasvd/version.h carries that version
     (FASVD_VERSION_MAJOR/MINOR/PATCH/STRING);
  2. the built LIBRARY reports it (fasvd_version_string);
  3. the Python package of the checkout reports it (fasvd/_version.py);
  4. no other file of the repository writes it: no version definition
     (#define FASVD_VERSION_* with a value, __version__ = "…", version =
     "…" in a pyproject or setup file, EXPECTED_VERSION = (…), a meson
     version : '…' other than project()'s), and the version string itself
     only where a release is named on purpose (ALLOWED);
  5. the scan of 4 finds a planted definition (it is not blind).
"""
import ctypes
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

from tap import case, report

# Files that name the version on purpose: the release notes, the symbol
# version node of the linker map (V_MAJOR.MINOR.PATCH) and the ABI policy
# that explains it, and the ABI baseline generated from the library.
ALLOWED = ("meson.build", "NEWS.md", "lib/libfasvd.map", "docs/abi.md", "tests/abi/")

DEFINITIONS = [
    (re.compile(r"#\s*define\s+FASVD_VERSION_(MAJOR|MINOR|PATCH|NUMBER|STRING)\s+[\d\"(]"),
     lambda rel: not rel.endswith(".in")),
    (re.compile(r"\b__version__\s*=\s*[\"']\d"), None),
    (re.compile(r"^\s*version\s*=\s*[\"']\d", re.M),
     lambda rel: os.path.basename(rel) in ("pyproject.toml", "setup.cfg", "setup.py")),
    (re.compile(r"\bEXPECTED_VERSION\s*=\s*\(\s*\d"), None),
    (re.compile(r"\bversion\s*:\s*'\d"),
     lambda rel: os.path.basename(rel) == "meson.build" and rel != "meson.build"),
]


def load_version_module(root):
    path = os.path.join(root, "bindings", "python", "fasvd", "_version.py")
    spec = importlib.util.spec_from_file_location("fasvd_version_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def repo_files(root):
    """Tracked files (git), else every file outside build trees and .git."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True,
                             check=True).stdout.decode()
        files = [f for f in out.split("\0") if f]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for d, dirs, names in os.walk(root):
        rel_d = os.path.relpath(d, root)
        dirs[:] = [x for x in dirs if x != ".git" and not (rel_d == "." and x.startswith("build"))]
        files += [os.path.normpath(os.path.join(rel_d, n)) for n in names]
    return files


def scan(root, files, version):
    """Lines of `files` (relative to root) that write the version."""
    bad = []
    for rel in files:
        path = os.path.join(root, rel)
        try:
            with open(path, "rb") as f:
                data = f.read(1 << 20)
        except OSError:
            continue
        if b"\0" in data:
            continue  # binary (checkpoints, corpora)
        text = data.decode("utf-8", errors="replace")
        for rx, applies in DEFINITIONS:
            if applies and not applies(rel):
                continue
            for m in rx.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                bad.append("%s:%d: defines a version: %s" % (rel, line, m.group(0).strip()))
        if any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in ALLOWED):
            continue
        for m in re.finditer(r"(?<![\w.])%s(?![\w])" % re.escape(version), text):
            line = text.count("\n", 0, m.start()) + 1
            bad.append("%s:%d: writes the version %s" % (rel, line, version))
    return bad


def main():
    if len(sys.argv) != 4:
        print("usage: check-version.py SOURCE_ROOT BUILD_ROOT LIBRARY", file=sys.stderr)
        return 2
    root, build, library = sys.argv[1:]
    vmod = load_version_module(root)
    version = vmod.from_meson_build(os.path.join(root, "meson.build"))
    case("meson.build's project() gives a MAJOR.MINOR.PATCH version (%s)" % version,
         version is not None)
    if version is None:
        return report()
    major, minor, patch = version.split(".")

    hdr = os.path.join(build, "include", "fasvd", "version.h")
    try:
        with open(hdr, encoding="utf-8") as f:
            text = f.read()
        want = {"MAJOR": major, "MINOR": minor, "PATCH": patch, "STRING": '"%s"' % version}
        got = dict(re.findall(r"#define FASVD_VERSION_(MAJOR|MINOR|PATCH|STRING) (\S+)", text))
        diff = ["FASVD_VERSION_%s is %s, not %s" % (k, got.get(k), v)
                for k, v in want.items() if got.get(k) != v]
        case("generated fasvd/version.h carries %s" % version, not diff, diff)
    except OSError as e:
        case("generated fasvd/version.h carries %s" % version, False, [str(e)])

    try:
        lib = ctypes.CDLL(library)
        lib.fasvd_version_string.restype = ctypes.c_char_p
        lib.fasvd_version_number.restype = ctypes.c_uint
        s = lib.fasvd_version_string().decode()
        n = lib.fasvd_version_number()
        num = int(major) * 10000 + int(minor) * 100 + int(patch)
        case("the library reports %s (%d)" % (version, num), s == version and n == num,
             ["fasvd_version_string() = %s, fasvd_version_number() = %d" % (s, n)])
    except (OSError, AttributeError) as e:
        case("the library reports %s" % version, False, [str(e)])

    try:
        pv = vmod.package_version()
        case("the checkout's Python package reports %s" % version, pv == version,
             ["fasvd._version.package_version() = %s" % pv])
    except ImportError as e:
        case("the checkout's Python package reports %s" % version, False, [str(e)])

    bad = scan(root, repo_files(root), version)
    case("no file but meson.build writes the version (allowed: %s)" % ", ".join(ALLOWED[1:]),
         not bad, bad[:40])

    with tempfile.TemporaryDirectory(prefix="fasvd-check-version-") as tmp:
        # Written in pieces, so that this file does not match itself.
        planted = {"pkg/__init__.py": "__version" + '__ = "9.8.7"\n',
                   "pkg/pyproject.toml": '[project]\nversion = "9.8.7"\n',
                   "include/x.h": "#define FASVD_" + "VERSION_MINOR 8\n",
                   "docs/x.md": "libfasvd %s\n" % version}
        for rel, content in planted.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "w", encoding="utf-8") as f:
                f.write(content)
        found = scan(tmp, sorted(planted), version)
        missed = [rel for rel in planted if not any(b.startswith(rel + ":") for b in found)]
        case("the scan finds planted versions (%d of %d files)" % (len(planted) - len(missed),
                                                                  len(planted)),
             not missed, ["missed: %s" % ", ".join(missed)])
    return report()


if __name__ == "__main__":
    sys.exit(main())
