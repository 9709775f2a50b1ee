#!/usr/bin/env python3
"""Repository check (suite 'checks', TAP) of the struct-versioning rule of
docs/abi.md ("Versioned structs").

usage: check-versioned.py SOURCE_ROOT

A versioned struct is a public struct of include/fasvd/*.h whose first
member is `size_t size`. The check fails when
  1. a public function taking a pointer to one is missing from the calls
     table of tests/test-versioning.c (which tries every size case on it);
  2. tests/abi/libfasvd.abignore, which lists the only structs whose
     appended members the ABI gate accepts, does not name exactly these
     structs (each by `name =`: a frozen struct must never be hidden);
  3. a versioned struct that a public function takes has no
     `int fasvd_X_init(fasvd_X *p, size_t size)`, or an init of a versioned
     struct has another signature (it must take the caller's size, so that a
     newer library never writes past an older caller's struct).
"""
import glob
import os
import re
import sys

# Test support, not the product's ABI (to leave the public headers).
EXCLUDED_HEADERS = {"fixture.h"}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def headers(root):
    for path in sorted(glob.glob(os.path.join(root, "include", "fasvd", "*.h"))):
        if os.path.basename(path) not in EXCLUDED_HEADERS:
            with open(path, encoding="utf-8") as f:
                yield path, strip_comments(f.read())


def versioned_structs(root):
    names = set()
    for _, text in headers(root):
        for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{\s*size_t\s+size\s*;", text):
            names.add(m.group(1))
    return names


def functions_taking(root, structs):
    """{function: [struct, ...]} for the FASVD_API functions whose parameters
    point to a versioned struct."""
    out = {}
    for _, text in headers(root):
        for m in re.finditer(r"FASVD_API\s+[^;{]*?\b(fasvd_\w+)\s*\(([^;]*?)\)\s*;", text, re.S):
            name, params = m.group(1), m.group(2)
            if name.endswith("_init"):
                continue
            used = [s for s in sorted(structs) if re.search(r"\b%s\s*\*" % s, params)]
            if used:
                out[name] = used
    return out


def init_problems(root, structs, funcs):
    """Versioned structs a public function takes without an init taking the
    caller's size, and inits of versioned structs of another signature."""
    inits = {}
    for _, text in headers(root):
        for m in re.finditer(r"FASVD_API\s+([^;{]*?)\b(fasvd_\w+)_init\s*\(([^;]*?)\)\s*;",
                             text, re.S):
            inits[m.group(2)] = (" ".join(m.group(1).split()), " ".join(m.group(3).split()))
    bad = []
    for s in sorted(set(s for used in funcs.values() for s in used)):
        if s not in inits:
            bad.append("%s (taken by a public function) has no %s_init" % (s, s))
    for s, (ret, params) in sorted(inits.items()):
        if s in structs and (ret != "int" or
                             not re.fullmatch(r"%s \*\s*\w+, size_t size" % s, params)):
            bad.append("%s %s_init(%s): want int %s_init(%s *p, size_t size)"
                       % (ret, s, params, s, s))
    return bad


def main():
    root = sys.argv[1]
    structs = versioned_structs(root)
    funcs = functions_taking(root, structs)
    with open(os.path.join(root, "tests", "test-versioning.c"), encoding="utf-8") as f:
        test = f.read()
    with open(os.path.join(root, "tests", "abi", "libfasvd.abignore"), encoding="utf-8") as f:
        named = set(re.findall(r"^\s*name\s*=\s*(\S+)", f.read(), re.M))

    print("1..3")
    failed = 0
    untested = [fn for fn in sorted(funcs) if '{"%s",' % fn not in test]
    if not structs or not funcs or untested:
        failed = 1
        print("not ok 1 - every function taking a versioned struct is in "
              "tests/test-versioning.c")
        for fn in untested:
            print("# %s (takes %s) is not in the calls table" % (fn, ", ".join(funcs[fn])))
        if not structs or not funcs:
            print("# found no versioned struct or no function taking one in include/fasvd")
    else:
        print("ok 1 - every function taking a versioned struct (%d functions, %d structs) is "
              "in tests/test-versioning.c" % (len(funcs), len(structs)))
    unlisted = sorted(structs - named)
    frozen = sorted(named - structs)
    if unlisted or frozen or not named:
        failed = 1
        print("not ok 2 - tests/abi/libfasvd.abignore names exactly the versioned structs")
        for s in unlisted:
            print("# %s is not named (`name = %s`)" % (s, s))
        for s in frozen:
            print("# %s is named but is not a versioned struct" % s)
    else:
        print("ok 2 - tests/abi/libfasvd.abignore names exactly the versioned structs")
    bad = init_problems(root, structs, funcs)
    if bad:
        failed = 1
        print("not ok 3 - every versioned struct's *_init takes the caller's size")
        for b in bad:
            print("# " + b)
    else:
        print("ok 3 - every versioned struct's *_init takes the caller's size")
    return failed


if __name__ == "__main__":
    sys.exit(main())
