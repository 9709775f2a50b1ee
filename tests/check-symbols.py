#!/usr/bin/env python3
"""Check that libfasvd's exported symbols agree everywhere (TAP output).

Usage: check-symbols.py SOURCE_ROOT LIBRARY

  1. the functions declared with FASVD_API in include/fasvd/*.h are exactly
     the symbols listed in lib/libfasvd.map (a function missing from the map
     is silently hidden by the linker; a symbol missing from the headers is
     undocumented ABI);
  2. the map is well formed: no duplicates, every name fasvd_* (never the
     internal fasvd__*), a catch-all `local: *;` in the first node;
  3. `nm -D --defined-only LIBRARY` exports exactly the map's symbols (plus the
     version nodes themselves), each bound to the node that lists it;
  4. no test support leaks into the product: no fasvd_fixture_* function
     (tests/support/) is declared, listed in the map or exported;
  5. the SONAME is libfasvd.so.0.

Headers, map and library are read at test time: nothing here lists symbols.
"""
import glob
import os
import re
import subprocess
import sys

from tap import case, report

SONAME = "libfasvd.so.0"
# Functions of the test support library (tests/support/), never library ABI.
TEST_SUPPORT = re.compile(r"fasvd_fixture_\w*")


def strip_c_comments(text):
    # Keep line breaks (and a space, so tokens do not merge).
    text = re.sub(r"/\*.*?\*/", lambda m: " " + "\n" * m.group(0).count("\n"), text,
                  flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def strip_preprocessor(text):
    # Drop directives, including continuation lines (the FASVD_API definition).
    out, cont = [], False
    for line in text.split("\n"):
        directive = cont or line.lstrip().startswith("#")
        cont = directive and line.rstrip().endswith("\\")
        out.append("" if directive else line)
    return "\n".join(out)


def header_symbols(include_dir):
    """{name: header} of FASVD_API functions; list of problems."""
    syms, problems = {}, []
    headers = sorted(glob.glob(os.path.join(include_dir, "*.h")))
    if not headers:
        problems.append("no headers found in %s" % include_dir)
    for path in headers:
        base = os.path.basename(path)
        with open(path, encoding="utf-8") as f:
            text = strip_preprocessor(strip_c_comments(f.read()))
        for m in re.finditer(r"\bFASVD_API\b([^;{]*)[;{]", text):
            decl = m.group(1)
            # The declared name is the identifier before the first '(' at
            # nesting depth 0 (a function-pointer return type would nest).
            fn = re.match(r"[^(]*?\b([A-Za-z_]\w*)\s*\(", decl)
            if not fn:
                problems.append("%s: FASVD_API on something that is not a function "
                                "(exported data is not allowed): %s" % (base, " ".join(decl.split())))
                continue
            name = fn.group(1)
            if name in syms:
                problems.append("%s: %s declared FASVD_API twice (also in %s)" % (base, name, syms[name]))
            syms[name] = base
    return syms, problems


def parse_map(path):
    """[(node, [symbols], has_local_star)] and problems."""
    with open(path, encoding="utf-8") as f:
        text = strip_c_comments(f.read())
    text = re.sub(r"#[^\n]*", "", text)
    nodes, problems = [], []
    pos = 0
    node_re = re.compile(r"\s*([A-Za-z_][\w.]*)\s*\{(.*?)\}\s*([A-Za-z_][\w.]*)?\s*;", re.S)
    while True:
        rest = text[pos:]
        if not rest.strip():
            break
        m = node_re.match(text, pos)
        if not m:
            problems.append("cannot parse the map near: %r" % rest.strip()[:60])
            break
        name, body = m.group(1), m.group(2)
        syms, local_star, section = [], False, None
        for item in body.split(";"):
            item = item.strip()
            while True:
                sm = re.match(r"(global|local)\s*:\s*", item)
                if not sm:
                    break
                section = sm.group(1)
                item = item[sm.end():].strip()
            if not item:
                continue
            if section == "local":
                if item == "*":
                    local_star = True
                else:
                    problems.append("node %s: unexpected local entry %r" % (name, item))
            elif section == "global":
                syms.append(item)
            else:
                problems.append("node %s: entry %r outside global:/local:" % (name, item))
        nodes.append((name, syms, local_star))
        pos = m.end()
    return nodes, problems


def main():
    if len(sys.argv) != 3:
        print("usage: check-symbols.py SOURCE_ROOT LIBRARY", file=sys.stderr)
        return 2
    root, lib = sys.argv[1], sys.argv[2]
    include_dir = os.path.join(root, "include", "fasvd")
    map_path = os.path.join(root, "lib", "libfasvd.map")

    hdr, hdr_problems = header_symbols(include_dir)
    case("FASVD_API declarations in include/fasvd/*.h parse (%d functions)" % len(hdr),
         not hdr_problems, hdr_problems)

    nodes, map_problems = parse_map(map_path)
    map_syms = {}
    for node, syms, _ in nodes:
        for s in syms:
            if s in map_syms:
                map_problems.append("%s listed twice (nodes %s and %s)" % (s, map_syms[s], node))
            map_syms[s] = node
    bad_names = [s for s in map_syms if not re.fullmatch(r"fasvd_[a-z0-9]\w*", s)]
    if bad_names:
        map_problems.append("names that are not fasvd_* (or are internal fasvd__*): %s"
                            % ", ".join(sorted(bad_names)))
    if not nodes:
        map_problems.append("no version node")
    elif not nodes[0][2]:
        map_problems.append("first node %s lacks the catch-all 'local: *;'" % nodes[0][0])
    case("lib/libfasvd.map is well formed (%d symbols in %d nodes)" % (len(map_syms), len(nodes)),
         not map_problems, map_problems)

    only_hdr = sorted(set(hdr) - set(map_syms))
    only_map = sorted(set(map_syms) - set(hdr))
    diag = ["declared FASVD_API in %s but missing from lib/libfasvd.map (hidden by the linker): %s"
            % (hdr[s], s) for s in only_hdr]
    diag += ["in lib/libfasvd.map but not declared FASVD_API in any public header: %s" % s
             for s in only_map]
    case("header declarations == map symbols", not only_hdr and not only_map, diag)

    try:
        nm = subprocess.run(["nm", "-D", "--defined-only", "--with-symbol-versions", lib],
                            capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        case("nm -D %s" % os.path.basename(lib), False, [str(e)])
        nm = None
    exported = {}
    if nm is not None:
        node_names = {n for n, _, _ in nodes}
        exported, diag = {}, []
        for line in nm.splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            sym = parts[-1]
            name, _, version = sym.partition("@")
            version = version.lstrip("@")
            if parts[-2] == "A" and name in node_names:
                continue  # the version node itself
            exported[name] = version
        for s in sorted(set(exported) - set(map_syms)):
            diag.append("exported but not in the map: %s" % s)
        for s in sorted(set(map_syms) - set(exported)):
            diag.append("in the map but not defined by the library: %s" % s)
        for s in sorted(set(exported) & set(map_syms)):
            if exported[s] != map_syms[s]:
                diag.append("%s is bound to version %r, the map lists it in %s"
                            % (s, exported[s], map_syms[s]))
        case("nm -D %s exports exactly the map (%d symbols, all fasvd_*)"
             % (os.path.basename(lib), len(exported)), not diag, diag)

    diag = ["%s: %s" % (where, s)
            for where, names in (("declared in include/fasvd", hdr),
                                 ("listed in lib/libfasvd.map", map_syms),
                                 ("exported by %s" % os.path.basename(lib), exported))
            for s in sorted(names) if TEST_SUPPORT.fullmatch(s)]
    case("no test support (fasvd_fixture_*) declared, mapped or exported", not diag, diag)

    try:
        dyn = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True,
                             check=True).stdout
        m = re.search(r"\(SONAME\).*\[(.*)\]", dyn)
        soname = m.group(1) if m else None
        case("SONAME is %s" % SONAME, soname == SONAME, ["SONAME is %r" % soname])
    except (OSError, subprocess.CalledProcessError) as e:
        case("SONAME is %s" % SONAME, False, [str(e)])

    return report()


if __name__ == "__main__":
    sys.exit(main())
