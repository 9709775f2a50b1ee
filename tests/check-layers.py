#!/usr/bin/env python3
"""Check that lib/'s layers depend on each other one way only (TAP output).

Usage: check-layers.py SOURCE_ROOT [STATIC_LIBRARY]
       check-layers.py --self-test

lib/ holds one folder per layer (docs/architecture.md). A module may use
its own layer and the layers LAYERS below allows it, nothing else:

  1. every folder of lib/ is a known layer and no source lies in lib/ itself;
  2. every private include in lib/ names its layer ("core/internal.h"),
     exists, and points to an allowed layer;
  3. with STATIC_LIBRARY (the internal static library, every module one
     object): every fasvd_* / fasvd__* symbol an object uses is defined by an
     object of its own or of an allowed layer (a call through a prototype
     written by hand is caught here even without an include);
  4. no cycle between the source files of lib/ (object A uses a symbol of
     object B and B one of A), which is how a layer's own files stay
     layered too;
  5. the allowed-layer table itself has no cycle.

--self-test runs checks 2-4 on planted violations (an upward include, an
upward call, a two-file cycle) and passes only when each is reported.
"""
import os
import re
import subprocess
import sys
import tempfile

# Layer -> the layers it may use directly. The closure is what a module may
# reach; keep docs/architecture.md in step with this table.
LAYERS = {
    "core": [],
    "tensor": ["core"],
    "linalg": ["tensor"],
    "io": ["tensor"],
    "engine": ["linalg"],
    "model": ["io", "engine"],
    "factor": ["engine"],
    "pipeline": ["model", "factor"],
}

# Private headers the build generates (lib/*/meson.build) rather than the
# source tree holds.
GENERATED = {"pipeline/lowrank_py.h"}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def closure(layers):
    """{layer: set of layers it may use, itself included}; raises on a cycle."""
    out = {}

    def visit(name, stack):
        if name in stack:
            raise ValueError("the layer table has a cycle: " + " -> ".join(stack + [name]))
        if name in out:
            return out[name]
        seen = {name}
        for dep in layers[name]:
            if dep not in layers:
                raise ValueError("layer %s uses unknown layer %s" % (name, dep))
            seen |= visit(dep, stack + [name])
        out[name] = seen
        return seen

    for name in layers:
        visit(name, [])
    return out


def lib_sources(lib_dir):
    """[(layer, relative path)] of the .c/.h files of lib/; problems."""
    files, problems = [], []
    for entry in sorted(os.listdir(lib_dir)):
        path = os.path.join(lib_dir, entry)
        if os.path.isdir(path):
            if entry not in LAYERS:
                problems.append("lib/%s/ is not a layer (known: %s)" % (entry, ", ".join(LAYERS)))
                continue
            for name in sorted(os.listdir(path)):
                if name.endswith((".c", ".h")):
                    files.append((entry, entry + "/" + name))
        elif entry.endswith((".c", ".h")):
            problems.append("lib/%s lies outside every layer folder" % entry)
    return files, problems


def check_includes(lib_dir, reach):
    files, problems = lib_sources(lib_dir)
    for layer, rel in files:
        with open(os.path.join(lib_dir, rel), encoding="utf-8") as f:
            text = f.read()
        for m in INCLUDE_RE.finditer(text):
            inc = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            where = "lib/%s:%d" % (rel, line)
            target = inc.split("/")[0] if "/" in inc else None
            if target is None:
                problems.append('%s: #include "%s" does not name its layer ("layer/%s")'
                                % (where, inc, inc))
            elif target not in LAYERS:
                problems.append('%s: #include "%s": %s is not a layer' % (where, inc, target))
            elif not os.path.isfile(os.path.join(lib_dir, inc)) and inc not in GENERATED:
                problems.append('%s: #include "%s": no such file in lib/' % (where, inc))
            elif target not in reach[layer]:
                problems.append('%s: #include "%s": layer %s may not use layer %s'
                                % (where, inc, layer, target))
    return problems


def read_symbols(archive):
    """[(object, kind, symbol)] of the fasvd symbols an archive's objects
    define ('D') or use ('U')."""
    out = subprocess.run(["nm", "-A", archive], check=True, capture_output=True,
                         text=True).stdout
    rows = []
    line_re = re.compile(r"^.*?\.a:(.*?):\s*[0-9a-fA-F]*\s+(\w)\s+(\S+)$")
    for line in out.splitlines():
        m = line_re.match(line)
        if not m or not m.group(3).startswith("fasvd_"):
            continue
        kind = m.group(2)
        if kind != "U" and not kind.isupper():
            continue  # local (static) symbols
        rows.append((os.path.basename(m.group(1)), "U" if kind == "U" else "D", m.group(3)))
    return rows


def object_module(obj):
    """'engine_heads.c.o' -> ('engine', 'engine/heads.c')."""
    base = obj[:-2] if obj.endswith(".o") else obj
    layer, _, rest = base.partition("_")
    return layer, layer + "/" + rest


def check_symbols(rows, reach):
    problems = []
    defined = {}
    for obj, kind, name in rows:
        if kind == "D":
            defined[name] = obj
    edges = {}
    for obj, kind, name in rows:
        if kind != "U" or name not in defined:
            continue  # not ours (fasvd_ prefix of a dependency) or undefined
        user_layer, user = object_module(obj)
        owner_layer, owner = object_module(defined[name])
        if user_layer not in LAYERS:
            problems.append("%s: object outside every layer" % user)
            continue
        if owner_layer not in reach[user_layer]:
            problems.append("lib/%s uses %s from lib/%s: layer %s may not use layer %s"
                            % (user, name, owner, user_layer, owner_layer))
        if owner != user:
            edges.setdefault(user, {}).setdefault(owner, name)
    return problems, edges


def find_cycles(edges):
    """Cycles of the file graph, each once, as lists of files."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    nodes = set(edges) | {w for v in edges for w in edges[v]}
    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return comps


def cycle_problems(edges):
    out = []
    for comp in find_cycles(edges):
        links = ["lib/%s -> lib/%s (%s)" % (a, b, edges[a][b])
                 for a in comp for b in comp if b in edges.get(a, {})]
        out.append("cycle between %s: %s" % (", ".join("lib/" + c for c in comp),
                                               "; ".join(links)))
    return out


def run_checks(root, archive):
    results = []
    try:
        reach = closure(LAYERS)
        results.append(("the layer table has no cycle", []))
    except ValueError as e:
        return [("the layer table has no cycle", [str(e)])]
    lib_dir = os.path.join(root, "lib")
    results.append(("every private include of lib/ names an allowed layer",
                    check_includes(lib_dir, reach)))
    if archive:
        rows = read_symbols(archive)
        problems, edges = check_symbols(rows, reach)
        if not any(kind == "U" for _, kind, _ in rows):
            problems.append("%s: no fasvd symbol used by any object (not the library?)" % archive)
        results.append(("every internal call of lib/ goes to an allowed layer", problems))
        results.append(("no cycle between the source files of lib/", cycle_problems(edges)))
    return results


def self_test():
    """Plant violations in a scratch tree and synthetic symbol tables."""
    reach = closure(LAYERS)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        lib = os.path.join(tmp, "lib")
        for layer in ("core", "pipeline"):
            os.makedirs(os.path.join(lib, layer))
        with open(os.path.join(lib, "pipeline", "run.h"), "w") as f:
            f.write("/* pipeline header */\n")
        with open(os.path.join(lib, "core", "ok.c"), "w") as f:
            f.write('#include "core/ok.h"\n')
        with open(os.path.join(lib, "core", "ok.h"), "w") as f:
            f.write("/* fine */\n")
        clean = check_includes(lib, reach)
        results.append(("a clean tree passes the include check", clean))
        with open(os.path.join(lib, "core", "bad.c"), "w") as f:
            f.write('#include "core/ok.h"\n#include "pipeline/run.h"\n')
        found = check_includes(lib, reach)
        results.append(("an upward include (core -> pipeline) is reported",
                        [] if any("core/bad.c:2" in p and "may not use layer pipeline" in p
                                  for p in found) else ["not reported: %r" % found]))
        with open(os.path.join(lib, "core", "flat.c"), "w") as f:
            f.write('#include "internal.h"\n')
        found = check_includes(lib, reach)
        results.append(("an include without its layer is reported",
                        [] if any("does not name its layer" in p for p in found)
                        else ["not reported: %r" % found]))
        with open(os.path.join(lib, "stray.c"), "w") as f:
            f.write("\n")
        _, found = lib_sources(lib)
        results.append(("a source outside the layer folders is reported",
                        [] if any("stray.c" in p for p in found) else ["not reported"]))
    rows = [("core_core.c.o", "D", "fasvd__error"),
            ("pipeline_analyze.c.o", "D", "fasvd_analyze"),
            ("pipeline_analyze.c.o", "U", "fasvd__error")]
    problems, edges = check_symbols(rows, reach)
    results.append(("a downward call passes", problems + cycle_problems(edges)))
    rows.append(("core_core.c.o", "U", "fasvd_analyze"))
    problems, _ = check_symbols(rows, reach)
    results.append(("an upward call (core -> pipeline) is reported",
                    [] if any("core/core.c uses fasvd_analyze" in p for p in problems)
                    else ["not reported: %r" % problems]))
    rows = [("io_safetensors.c.o", "D", "fasvd__a"), ("io_st_writer.c.o", "D", "fasvd__b"),
            ("io_safetensors.c.o", "U", "fasvd__b"), ("io_st_writer.c.o", "U", "fasvd__a")]
    problems, edges = check_symbols(rows, reach)
    cyc = cycle_problems(edges)
    results.append(("a two-file cycle inside a layer is reported",
                    [] if cyc and "io/safetensors.c" in cyc[0] and not problems
                    else ["not reported: %r %r" % (problems, cyc)]))
    try:
        closure({"a": ["b"], "b": ["a"]})
        results.append(("a cycle in the layer table is reported", ["not reported"]))
    except ValueError:
        results.append(("a cycle in the layer table is reported", []))
    return results


def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        results = self_test()
    elif len(argv) in (2, 3):
        results = run_checks(argv[1], argv[2] if len(argv) == 3 else None)
    else:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    print("1..%d" % len(results))
    failed = 0
    for i, (name, problems) in enumerate(results, 1):
        print("%s %d - %s" % ("not ok" if problems else "ok", i, name))
        for p in problems:
            print("# " + p)
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
