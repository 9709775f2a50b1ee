#!/usr/bin/env python3
"""Count individual test cases across the runs of `make test` (.ci/run).

usage: ci-summary.py [--make-status N] RUN PATH [RUN PATH ...]

Each PATH is a meson JSON test log (meson-logs/*.json: one object per test)
or a JUnit XML file (pytest --junitxml). For meson tests that speak TAP every
"ok"/"not ok" line is one case ("# SKIP" and "# TODO" directives count as
skipped); any other test is one case. A test whose process failed (crash,
sanitizer or valgrind exit status, timeout) counts one more failure unless it
already reported a failing case, and cases it planned but never reported
count as failed. A missing result file counts as one failed case (the run
crashed before testing), and so does a non-zero --make-status when no case
failed (make stopped outside any test: a build error, for instance).

Prints one line per run, the failing cases, and last exactly one line
"N passed, N failed" (", N skipped" appended when some were skipped). Exits 1
if anything failed.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

TAP_LINE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?([^#]*)(?:#\s*(\S+)(.*))?$")
TAP_PLAN = re.compile(r"^1\.\.(\d+)(?:\s*#\s*(.*))?$")
GOOD = {"OK", "EXPECTEDFAIL"}


class Count:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.failures = []

    def fail(self, what, n=1):
        self.failed += n
        self.failures.append(what)


def count_tap(test, stdout, result, c):
    plan, seen, failed_here = None, 0, 0
    for line in stdout.splitlines():
        m = TAP_PLAN.match(line)
        if m:
            plan = int(m.group(1))
            if plan == 0:
                c.skipped += 1  # "1..0 # SKIP reason": the whole test skipped
            continue
        m = TAP_LINE.match(line)
        if not m:
            continue
        seen += 1
        ok = m.group(1) == "ok"
        directive = (m.group(4) or "").upper()
        name = m.group(3).strip() or "case %s" % (m.group(2) or seen)
        if directive.startswith("SKIP") or (directive.startswith("TODO") and not ok):
            c.skipped += 1
        elif ok:
            c.passed += 1
        else:
            c.fail("%s: %s" % (test, name))
            failed_here += 1
    if plan is not None and plan > seen:
        missing = plan - seen
        c.fail("%s: %d planned case(s) never reported (%s)" % (test, missing, result), missing)
        failed_here += missing
    return seen, failed_here


def count_meson(run, path, c):
    with open(path, encoding="utf-8") as f:
        for raw in f:
            if not raw.strip():
                continue
            t = json.loads(raw)
            name, result = "%s/%s" % (run, t["name"]), t.get("result", "ERROR")
            stdout = t.get("stdout") or ""
            is_tap = any(TAP_PLAN.match(l) or TAP_LINE.match(l) for l in stdout.splitlines())
            if is_tap:
                seen, failed_here = count_tap(name, stdout, result, c)
                if result not in GOOD and result != "SKIP" and failed_here == 0:
                    c.fail("%s: %s (exit status %s)" % (name, result, t.get("returncode")))
            elif result == "SKIP":
                c.skipped += 1
            elif result in GOOD:
                c.passed += 1
            else:
                c.fail("%s: %s (exit status %s)" % (name, result, t.get("returncode")))


def count_junit(run, path, c):
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = "%s/%s::%s" % (run, case.get("classname", ""), case.get("name", ""))
        if case.find("skipped") is not None:
            c.skipped += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            c.fail(name)
        else:
            c.passed += 1


def main():
    args = sys.argv[1:]
    make_status = 0
    if args[:1] == ["--make-status"] and len(args) >= 2:
        make_status = int(args[1])
        args = args[2:]
    if len(args) % 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    total = Count()
    if not args:
        total.fail("no runs to count (make ci-logs listed none)")
    for run, path in zip(args[0::2], args[1::2]):
        c = Count()
        try:
            if path.endswith(".xml"):
                count_junit(run, path, c)
            else:
                count_meson(run, path, c)
        except FileNotFoundError:
            c.fail("%s: no results (%s missing: the run did not complete)" % (run, path))
        except (ValueError, KeyError, ET.ParseError) as e:
            c.fail("%s: unreadable results %s (%s)" % (run, path, e))
        print("%-9s %d passed, %d failed, %d skipped" % (run + ":", c.passed, c.failed, c.skipped))
        total.passed += c.passed
        total.failed += c.failed
        total.skipped += c.skipped
        total.failures += c.failures
    if make_status and not total.failed:
        total.fail("make test: exit status %d outside any test (see the log above)" % make_status)
    for f in total.failures:
        print("FAILED " + f)
    line = "%d passed, %d failed" % (total.passed, total.failed)
    if total.skipped:
        line += ", %d skipped" % total.skipped
    print(line)
    return 1 if total.failed else 0


if __name__ == "__main__":
    sys.exit(main())
