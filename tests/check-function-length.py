#!/usr/bin/env python3
"""Fail on C functions longer than MAX_LINES lines (TAP output).

Usage: check-function-length.py SOURCE_ROOT
       check-function-length.py --self-test

Every lib/**/*.c and tools/*.c is read at test time. A function is a body
that opens with `{` at column 0 and closes with `}` at column 0 (kernel
style: the brace of a function, and only of a function or a top-level
initializer, sits in column 0); its length is the number of lines strictly
between the two braces. Top-level initializers (`... = {`) and type
definitions are not functions and are skipped.

A function may exceed the limit only if it is listed below with the reason.
Keep ALLOWED empty or nearly so: split long functions into static helpers
with one purpose each instead. PENDING lists functions whose split is
scheduled; it must shrink to nothing.

--self-test runs the checker on planted files (a function of MAX_LINES
lines passes, one line more is reported, a table initializer and braces in
strings or comments are not functions, an allowed function passes, a stale
exemption is reported), so that a broken checker cannot pass silently.
"""
import glob
import os
import re
import sys
import tempfile

MAX_LINES = 80

# (relative path, function name): reason. Hot kernels only.
ALLOWED = {
}

# Functions in files that other changes are restructuring at the moment;
# each entry goes when its function is split (a stale entry fails the check).
PENDING = set()

NAME_RE = re.compile(r"([A-Za-z_]\w*)\s*\(")
# Headers of type definitions: a brace at column 0 that opens no function.
TYPE_RE = re.compile(r"^\s*(typedef\b|struct\b[^(]*$|union\b[^(]*$|enum\b[^(]*$)")


def strip_comments(text):
    """Blank out comments and string/char literals, keeping line breaks."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c
                   if j - i >= 2 else text[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(text):
    """Yield (name, line of its opening brace, body length) for each function."""
    lines = strip_comments(text).split("\n")
    i = 0
    while i < len(lines):
        if not lines[i].startswith("{"):
            i += 1
            continue
        start = i
        end = start + 1
        while end < len(lines) and not lines[end].startswith("}"):
            end += 1
        # The header: lines above `{` back to a blank line, `}`, `;` or `#`.
        head = []
        k = start - 1
        while k >= 0:
            s = lines[k].strip()
            if not s or s.startswith("#") or lines[k].startswith("}") \
               or s.endswith(";"):
                break
            head.insert(0, s)
            k -= 1
        header = " ".join(head)
        i = end + 1
        if not header or header.endswith("=") or TYPE_RE.match(header) \
           or "(" not in header:
            continue
        names = NAME_RE.findall(header.split("(")[0] + "(")
        if not names:
            continue
        yield names[-1], start + 1, end - start - 1


def scan(root, allowed, pending):
    """Return (too long, checked count, stale exemptions)."""
    files = sorted(glob.glob(os.path.join(root, "lib", "**", "*.c"), recursive=True)
               + glob.glob(os.path.join(root, "tools", "*.c")))
    bad, seen, count = [], set(), 0
    for path in files:
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for name, line, length in functions(text):
            count += 1
            if length <= MAX_LINES:
                continue
            key = (rel, name)
            if key in allowed or key in pending:
                seen.add(key)
                continue
            bad.append("%s:%d: %s() has %d lines (limit %d)"
                   % (rel, line, name, length, MAX_LINES))
    stale = sorted("%s: %s()" % k for k in (set(allowed) | set(pending)) - seen)
    return bad, count, stale


def body(n):
    return "".join("\tx += %d;\n" % i for i in range(n))


def self_test():
    """Run scan() on planted files; return [(case, problems)]."""
    short = "static int f(int x)\n{\n%s\treturn x;\n}\n" % body(MAX_LINES - 1)
    long_fn = "static int\nlong_one(int x)\n{\n%s\treturn x;\n}\n" % body(MAX_LINES)
    table = "static const int t[] = {\n%s};\n" % "".join("\t%d,\n" % i for i in range(200))
    tricky = "int g(void)\n{\n\tconst char *s = \"{\\n}\";\n/* {\n} */\n\treturn 0;\n}\n"
    out = []
    with tempfile.TemporaryDirectory(prefix="fasvd-check-fnlen-") as tmp:
        os.makedirs(os.path.join(tmp, "lib", "sub"))
        os.makedirs(os.path.join(tmp, "tools"))

        def write(rel, text):
            with open(os.path.join(tmp, rel), "w", encoding="utf-8") as f:
                f.write(text)

        write("lib/sub/a.c", short + "\n" + table + "\n" + tricky)
        bad, count, _ = scan(tmp, {}, set())
        out.append(("an %d-line function, a table and braces in strings pass" % MAX_LINES,
                    bad + ([] if count == 2 else ["%d functions found, not 2" % count])))

        write("tools/b.c", long_fn)
        bad, _, _ = scan(tmp, {}, set())
        want = ["tools/b.c:3: long_one() has %d lines (limit %d)" % (MAX_LINES + 1, MAX_LINES)]
        out.append(("a %d-line function is reported with its file and line" % (MAX_LINES + 1),
                    [] if bad == want else ["reported: %r" % bad]))

        bad, _, stale = scan(tmp, {("tools/b.c", "long_one"): "test"}, {("lib/sub/a.c", "gone")})
        out.append(("an allowed function passes, a stale exemption is reported",
                    bad + ([] if stale == ["lib/sub/a.c: gone()"] else ["stale: %r" % stale])))
    return out


def check(root):
    """Scan the tree at root; return [(case, problems)]."""
    bad, count, stale = scan(root, ALLOWED, PENDING)
    return [("no function in lib/ or tools/ over %d lines (%d functions read)"
             % (MAX_LINES, count), bad if count else ["no functions found under " + root]),
            ("every allowed or pending long function exists and is still long",
             ["stale: " + s for s in stale])]


def main(argv):
    if argv[1:] == ["--self-test"]:
        results = self_test()
    elif len(argv) == 2:
        results = check(argv[1])
    else:
        print("usage: check-function-length.py SOURCE_ROOT | --self-test", file=sys.stderr)
        return 2
    print("1..%d" % len(results))
    for i, (name, problems) in enumerate(results, 1):
        print("%s %d - %s" % ("not ok" if problems else "ok", i, name))
        for p in problems:
            print("# " + p)
    return 1 if any(problems for _, problems in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
