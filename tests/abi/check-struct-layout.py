#!/usr/bin/env python3
"""Layout gate for the public structs (suite 'checks', TAP; docs/abi.md).

usage: check-struct-layout.py SOURCE_ROOT BUILD_ROOT CC
       check-struct-layout.py --write SOURCE_ROOT BUILD_ROOT CC
       check-struct-layout.py --self-test SOURCE_ROOT BUILD_ROOT CC

abidiff does not report a member appended at the end of a struct that is
only passed by pointer, so the ABI gate alone would let a frozen struct
(fasvd_allocator, fasvd_bounds) grow. This check reads every
`typedef struct NAME { ... } NAME;` of include/fasvd/*.h, compiles and runs a
small C program that prints the sizeof and alignment of each struct and the
offsetof and sizeof of each member, and compares that with the baseline
tests/abi/struct-layout.txt (the layout of the previous release):

  - every struct of the baseline still exists;
  - a struct that is not versioned (its first member is not `size_t size`)
    keeps its size, its alignment and every member's name, offset, size and
    type, and gains no member;
  - a versioned struct keeps every member's name, offset, size and type (a
    versioned struct embedded by value as the last member may grow, and then
    nothing may follow it) and gains members only after them.

A struct that is not in the baseline is new: reported, not a failure.
--write rewrites the baseline from the headers (scripts/update-abi-baseline.sh
runs it at a release); --self-test plants changes in a copy of the headers
and passes only when each forbidden one is reported and the allowed one not.
CC may be a command with arguments (split on spaces).
"""
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

from_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(from_here))
from tap import case, report  # noqa: E402

BASELINE = os.path.join("tests", "abi", "struct-layout.txt")
# Test support, not the product's ABI.
EXCLUDED_HEADERS = {"fixture.h"}


def strip(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r"^\s*#[^\n]*(\\\n[^\n]*)*", " ", text, flags=re.M)


def members(body, struct):
    """[(name, type)] of a struct body; raises on what it cannot read."""
    out = []
    for decl in body.split(";"):
        decl = " ".join(decl.split())
        if not decl:
            continue
        if "{" in decl or re.search(r"\b(union|struct)\b", decl):
            raise ValueError("%s: cannot read member '%s'" % (struct, decl))
        m = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", decl)
        if m:  # function pointer
            out.append((m.group(1), decl[:m.start(1)] + decl[m.end(1):]))
            continue
        parts = [p.strip() for p in decl.split(",")]
        m = re.match(r"(.*?)\s*(\*[\s*]*)?(\w+)\s*(\[[^\]]*\])?$", parts[0])
        if not m or not m.group(1):
            raise ValueError("%s: cannot read member '%s'" % (struct, decl))
        base = m.group(1)
        for i, p in enumerate(parts):
            m = m if i == 0 else re.match(r"()(\*[\s*]*)?(\w+)\s*(\[[^\]]*\])?$", p)
            if not m:
                raise ValueError("%s: cannot read member '%s'" % (struct, decl))
            typ = base + " " + (m.group(2) or "").replace(" ", "") + (m.group(4) or "")
            out.append((m.group(3), " ".join(typ.split())))
    return out


def structs(include_dir):
    """{name: [(member, type)]} of the public headers under include_dir."""
    found = {}
    for path in sorted(glob.glob(os.path.join(include_dir, "fasvd", "*.h"))):
        if os.path.basename(path) in EXCLUDED_HEADERS:
            continue
        with open(path, encoding="utf-8") as f:
            text = strip(f.read())
        for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{([^{}]*)\}\s*(\w+)\s*;", text):
            if m.group(1) != m.group(3):
                raise ValueError("typedef struct %s ... %s: names differ" % m.group(1, 3))
            found[m.group(1)] = members(m.group(2), m.group(1))
    return found


def layout(include_dirs, cc, tmp):
    """{name: {"size", "align", "versioned", "members": [(name, off, size, type)]}}
    as the compiler lays the public structs out."""
    decl = structs(include_dirs[0])
    if not decl:
        raise ValueError("no public struct found in %s/fasvd" % include_dirs[0])
    headers = sorted(os.path.basename(p)
                     for p in glob.glob(os.path.join(include_dirs[0], "fasvd", "*.h")))
    src = ["#include <fasvd/%s>" % h for h in headers if h not in EXCLUDED_HEADERS]
    src += ["#include <stddef.h>", "#include <stdio.h>", "int main(void)", "{"]
    for s, ms in sorted(decl.items()):
        src.append('\tprintf("S %s %%zu %%zu\\n", sizeof(%s), _Alignof(%s));' % (s, s, s))
        for name, _ in ms:
            src.append('\tprintf("M %s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));'
                       % (name, s, name, s, name))
    src += ["\treturn 0;", "}", ""]
    c = os.path.join(tmp, "struct-layout.c")
    exe = os.path.join(tmp, "struct-layout")
    with open(c, "w", encoding="utf-8") as f:
        f.write("\n".join(src))
    argv = cc + ["-std=c11"] + [a for d in include_dirs for a in ("-I", d)] + [c, "-o", exe]
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode:
        raise ValueError("%s failed:\n%s" % (" ".join(argv), p.stdout + p.stderr))
    lines = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split("\n")
    out, cur, types = {}, None, {}
    for line in lines:
        f = line.split()
        if f and f[0] == "S":
            ms = decl[f[1]]
            types = dict(ms)
            cur = out[f[1]] = {"size": int(f[2]), "align": int(f[3]), "members": [],
                               "versioned": bool(ms) and ms[0] == ("size", "size_t")}
        elif f and f[0] == "M":
            cur["members"].append((f[1], int(f[2]), int(f[3]), types[f[1]]))
    return out


def write(lay, path):
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Layout of the public structs of include/fasvd/ in the previous release\n"
                "# (x86-64): written by tests/abi/check-struct-layout.py --write (run by\n"
                "# scripts/update-abi-baseline.sh), compared by check-struct-layout.\n"
                "# struct NAME SIZE ALIGN versioned|frozen / member NAME OFFSET SIZE TYPE\n")
        for name, s in sorted(lay.items()):
            f.write("struct %s %d %d %s\n" % (name, s["size"], s["align"],
                                             "versioned" if s["versioned"] else "frozen"))
            for m in s["members"]:
                f.write("\tmember %s %d %d %s\n" % m)


def read(path):
    out, cur = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            w = line.split(None, 4)
            if not w or w[0].startswith("#"):
                continue
            if w[0] == "struct":
                cur = out[w[1]] = {"size": int(w[2]), "align": int(w[3]),
                                   "versioned": w[4].strip() == "versioned", "members": []}
            elif w[0] == "member":
                cur["members"].append((w[1], int(w[2]), int(w[3]), w[4].strip()))
    return out


def compare(base, now):
    """[(struct, [problems])] for every struct of the baseline, and the names
    of the new structs."""
    versioned = {n for n, s in now.items() if s["versioned"]}
    results = []
    for name, b in sorted(base.items()):
        bad = []
        n = now.get(name)
        if n is None:
            results.append((name, ["removed (or renamed) from include/fasvd"]))
            continue
        if b["versioned"] != n["versioned"]:
            bad.append("was %s, is %s" % ("versioned" if b["versioned"] else "frozen",
                                          "versioned" if n["versioned"] else "frozen"))
        if not b["versioned"] and (b["size"], b["align"]) != (n["size"], n["align"]):
            bad.append("size/alignment %d/%d, was %d/%d (a frozen struct never changes)"
                       % (n["size"], n["align"], b["size"], b["align"]))
        bm, nm = b["members"], n["members"]
        for i, m in enumerate(bm):
            if i >= len(nm):
                bad.append("member %s removed" % m[0])
                continue
            last = i == len(bm) - 1
            grows = b["versioned"] and last and m[3] in versioned and nm[i][2] >= m[2]
            if nm[i][:2] != m[:2] or nm[i][3] != m[3] or (nm[i][2] != m[2] and not grows):
                bad.append("member %d is %s at %d (%d bytes, %s), was %s at %d (%d bytes, %s)"
                           % ((i,) + nm[i] + m))
        extra = nm[len(bm):]
        if extra and not b["versioned"]:
            bad.append("member(s) %s added to a frozen struct" % ", ".join(m[0] for m in extra))
        elif extra and bm and bm[-1][3] in versioned:
            bad.append("member(s) %s added after the embedded versioned struct %s"
                       % (", ".join(m[0] for m in extra), bm[-1][0]))
        results.append((name, bad))
    return results, sorted(set(now) - set(base))


def check(root, include_dirs, cc):
    base_path = os.path.join(root, BASELINE)
    if not os.path.exists(base_path):
        case("baseline %s exists" % BASELINE, False,
             ["write it with scripts/update-abi-baseline.sh"])
        return
    with tempfile.TemporaryDirectory(prefix="fasvd-struct-layout-") as tmp:
        try:
            now = layout(include_dirs, cc, tmp)
        except (ValueError, subprocess.CalledProcessError) as e:
            case("the public structs' layout is known", False, str(e).splitlines())
            return
    results, new = compare(read(base_path), now)
    for name, bad in results:
        case("%s keeps its layout (%s)" % (name, BASELINE), not bad, bad)
    for name in new:
        print("# new struct %s (not in %s)" % (name, BASELINE))


# Planted changes: (what, header, old text, new text, must be reported).
PLANTS = [
    ("a member appended to the frozen fasvd_allocator", "core.h",
     "\tvoid *opaque;\n} fasvd_allocator;", "\tvoid *opaque;\n\tint extra;\n} fasvd_allocator;",
     True),
    ("a member retyped in the frozen fasvd_bounds (same size)", "core.h",
     "\tint64_t upper;\n} fasvd_bounds;", "\tdouble upper;\n} fasvd_bounds;", True),
    ("a member inserted in the versioned fasvd_svd_opts", "svd.h",
     "\tfasvd_backend backend;", "\tint inserted;\n\tfasvd_backend backend;", True),
    ("a member appended to the versioned fasvd_factor_report, which"
     " fasvd_truncate_entry embeds", "factor.h",
     "} fasvd_factor_report;", "\tdouble appended;\n} fasvd_factor_report;", False),
    ("a member appended after the embedded fasvd_factor_report", "truncate.h",
     "\tfasvd_factor_report report;", "\tfasvd_factor_report report;\n\tint after;", True),
    ("the frozen fasvd_bounds renamed", "*", "fasvd_bounds", "fasvd_limits", True),
]


def plant(folder, header, old, new):
    """Replace old by new once in header, or as a word in every header
    ("*"); False when old is not there."""
    paths = glob.glob(os.path.join(folder, "*.h")) if header == "*" else \
        [os.path.join(folder, header)]
    found = False
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if header == "*":
            changed = re.sub(r"\b%s\b" % old, new, text)
        else:
            changed = text.replace(old, new, 1)
        found = found or changed != text
        with open(path, "w", encoding="utf-8") as f:
            f.write(changed)
    return found


def self_test(root, include_dirs, cc):
    with tempfile.TemporaryDirectory(prefix="fasvd-struct-layout-self-") as tmp:
        base = layout(include_dirs, cc, tmp)
        for what, header, old, new, forbidden in PLANTS:
            inc = os.path.join(tmp, "include")
            shutil.rmtree(inc, ignore_errors=True)
            shutil.copytree(include_dirs[0], inc)
            if not plant(os.path.join(inc, "fasvd"), header, old, new):
                case("plant: %s" % what, False, ["'%s' not in %s" % (old, header)])
                continue
            try:
                results, _ = compare(base, layout([inc] + include_dirs[1:], cc, tmp))
            except ValueError as e:
                case("plant: %s" % what, False, str(e).splitlines())
                continue
            bad = [b for _, bs in results for b in bs]
            verdict = "reported" if forbidden else "accepted"
            case("%s is %s" % (what, verdict), bool(bad) == forbidden,
                 bad or ["not reported"])
        results, _ = compare(base, base)
        case("the unchanged headers pass", not any(b for _, b in results))


def main():
    args = sys.argv[1:]
    mode = args.pop(0) if args and args[0].startswith("--") else None
    if len(args) != 3 or mode not in (None, "--write", "--self-test"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    root, build, cc = args[0], args[1], shlex.split(args[2])
    include_dirs = [os.path.join(root, "include"), os.path.join(build, "include")]
    if mode == "--write":
        with tempfile.TemporaryDirectory(prefix="fasvd-struct-layout-") as tmp:
            lay = layout(include_dirs, cc, tmp)
        write(lay, os.path.join(root, BASELINE))
        print("wrote %s (%d structs)" % (BASELINE, len(lay)))
        return 0
    if mode == "--self-test":
        self_test(root, include_dirs, cc)
    else:
        check(root, include_dirs, cc)
    return report()


if __name__ == "__main__":
    sys.exit(main())
