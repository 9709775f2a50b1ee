#!/usr/bin/env python3
"""Compile every public header on its own, as C99 and as C++11 (TAP output).

Usage: check-headers.py SOURCE_ROOT BUILD_ROOT CC [CXX]

For each include/fasvd/*.h (globbed at test time), and each header generated
from include/fasvd/*.h.in into BUILD_ROOT/include/fasvd (version.h):
  - a translation unit that includes only that header (twice, to exercise the
    include guard) compiles with CC -std=c99 -Wall -Wextra -Werror -pedantic
    -Wstrict-prototypes: the header is self-contained and valid C99;
  - the same with CXX -std=c++11 -Wall -Wextra -Werror -pedantic, plus a check
    that its functions get C linkage (extern "C");
and the umbrella fasvd.h includes every public header (directly or through
another public header).
CC and CXX may be commands with arguments (one shell word each is split on
spaces); an empty or missing CXX skips the C++ cases.
"""
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile

from tap import case, report

C_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wstrict-prototypes"]
CXX_FLAGS = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def compile_unit(cmd, flags, source, suffix, include_dirs, tmp):
    src = os.path.join(tmp, "unit" + suffix)
    with open(src, "w", encoding="utf-8") as f:
        f.write(source)
    argv = cmd + flags + [a for d in include_dirs for a in ("-I", d)]
    argv += ["-c", src, "-o", os.path.join(tmp, "unit.o")]
    p = subprocess.run(argv, capture_output=True, text=True)
    out = (p.stdout + p.stderr).strip().splitlines()
    return p.returncode == 0, [" ".join(shlex.quote(a) for a in argv)] + out[:40]


def main():
    if len(sys.argv) not in (4, 5):
        print("usage: check-headers.py SOURCE_ROOT BUILD_ROOT CC [CXX]", file=sys.stderr)
        return 2
    root = sys.argv[1]
    cc = shlex.split(sys.argv[3])
    cxx = shlex.split(sys.argv[4]) if len(sys.argv) == 5 else []
    include_dir = os.path.join(root, "include")
    gen_dir = os.path.join(sys.argv[2], "include")
    include_dirs = [include_dir, gen_dir]
    headers = sorted(glob.glob(os.path.join(include_dir, "fasvd", "*.h")))
    for tmpl in sorted(glob.glob(os.path.join(include_dir, "fasvd", "*.h.in"))):
        headers.append(os.path.join(gen_dir, "fasvd", os.path.basename(tmpl)[:-3]))
    if not headers:
        case("public headers found in include/fasvd", False, ["none found"])

    with tempfile.TemporaryDirectory(prefix="fasvd-check-headers-") as tmp:
        for path in headers:
            h = "fasvd/" + os.path.basename(path)
            unit = "#include <%s>\n#include <%s>\nint fasvd_check_unit(void);\n" \
                   "int fasvd_check_unit(void) { return 0; }\n" % (h, h)
            ok, diag = compile_unit(cc, C_FLAGS, unit, ".c", include_dirs, tmp)
            case("%s compiles alone as C99 (%s)" % (h, " ".join(C_FLAGS)), ok, diag)
            name = "%s compiles alone as C++11 (%s)" % (h, " ".join(CXX_FLAGS))
            if not cxx:
                case(name, True, skip="no C++ compiler")
                continue
            ok, diag = compile_unit(cxx, CXX_FLAGS, unit, ".cpp", include_dirs, tmp)
            case(name, ok, diag)

        # extern "C": take the address of every declared function in C++; a
        # header that forgot extern "C" leaves mangled (_Z...) references.
        if cxx and headers:
            decls = set()
            for path in headers:
                with open(path, encoding="utf-8") as f:
                    text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
                decls.update(re.findall(r"\bFASVD_API\b[^;{(]*?\b(fasvd_\w+)\s*\(", text))
            refs = "".join("  reinterpret_cast<fn>(&%s),\n" % d for d in sorted(decls))
            incs = "".join("#include <fasvd/%s>\n" % os.path.basename(h) for h in headers)
            unit = incs + "typedef void (*fn)(void);\n" \
                   "extern const fn fasvd_check_refs[];\nconst fn fasvd_check_refs[] = {\n%s};\n" % refs
            ok, diag = compile_unit(cxx, CXX_FLAGS, unit, ".cpp", include_dirs, tmp)
            if ok:
                p = subprocess.run(["nm", "-u", os.path.join(tmp, "unit.o")],
                                   capture_output=True, text=True)
                mangled = [l.split()[-1] for l in p.stdout.splitlines()
                           if l.split() and l.split()[-1].startswith("_Z")
                           and "fasvd_" in l.split()[-1]]
                ok = p.returncode == 0 and not mangled
                diag = ["functions with C++ linkage (missing extern \"C\"): %s"
                        % ", ".join(mangled)] if mangled else [p.stderr]
            case("every FASVD_API function has C linkage in C++ (%d functions)" % len(decls),
                 ok, diag)

    if headers:
        path = os.path.join(include_dir, "fasvd", "fasvd.h")
        try:
            with open(path, encoding="utf-8") as f:
                umbrella = f.read()
            included = set(re.findall(r"#\s*include\s*<fasvd/([\w.-]+)>", umbrella))
            by_name = {os.path.basename(h): h for h in headers}
            todo = list(included)
            while todo:  # headers the umbrella includes through another one
                h = by_name.get(todo.pop())
                if not h:
                    continue
                with open(h, encoding="utf-8") as f:
                    more = set(re.findall(r"#\s*include\s*<fasvd/([\w.-]+)>", f.read()))
                todo.extend(more - included)
                included |= more
            missing = sorted(os.path.basename(h) for h in headers
                             if os.path.basename(h) not in included | {"fasvd.h"})
            case("fasvd/fasvd.h includes every public header", not missing,
                 ["not included: %s" % ", ".join(missing)])
        except OSError as e:
            case("fasvd/fasvd.h includes every public header", False, [str(e)])

    return report()


if __name__ == "__main__":
    sys.exit(main())
