#!/usr/bin/python3
"""CLI tests of `fasvd analyze --shard I/N` and `fasvd merge` (TAP output).

usage: test-shard.py PATH/TO/fasvd

As a cluster user would: a 6-layer DeepSeek-V3-format model (`fasvd demo`)
analysed as shards 0/3, 1/3, 2/3 (given to merge in any order) gives a file
byte-identical to one `fasvd analyze` run with the same --threads, with
extra tensors too; a shard that failed (a NaN weight) keeps its completed
layers, is refused by merge as incomplete, and --resume completes it; merge
refuses an existing output without --force, a part given twice, a missing
part, the file of a whole run, parts of other options, and parts whose
layers overlap or leave a layer out, naming the part and the layer; the
summaries of a merged file come from --resume without recomputing it.
"""
import json
import os
import shutil
import struct
import sys
import tempfile

from clitap import finish, mend, poke_nan, report, run

HERE = os.path.dirname(os.path.abspath(__file__))
STORIES = os.path.join(HERE, "..", "data", "stories260K")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def header(path):
    b = read(path)
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def rewrite_metadata(src, dst, **changes):
    """Copy the safetensors file src to dst with metadata keys changed."""
    h, data = header(src)
    h["__metadata__"].update(changes)
    text = json.dumps(h, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def shards(model, prefix, n, *opts):
    """Run shards 0/n .. n-1/n of model into prefix{i}.st; their paths."""
    paths = []
    for i in range(n):
        p = "%s%d.st" % (prefix, i)
        rc, _, err = run("analyze", model, "-o", p, "--shard", "%d/%d" % (i, n), "-q", *opts)
        if rc:
            raise RuntimeError("shard %d/%d: %s" % (i, n, err))
        paths.append(p)
    return paths


def test_identical(tmp):
    rc, out, err = run("demo", "--dir", os.path.join(tmp, "demo"), "--layers", "6")
    model = os.path.join(tmp, "demo", "model")
    for threads in ("1", "2"):
        whole = os.path.join(tmp, "whole%s.st" % threads)
        run("analyze", model, "-o", whole, "-q", "-j", threads)
        parts = shards(model, os.path.join(tmp, "p%s-" % threads), 3, "-j", threads)
        merged = os.path.join(tmp, "merged%s.st" % threads)
        rc, out, err = run("merge", parts[2], parts[0], parts[1], "-o", merged, "-j", threads)
        report(rc == 0 and read(merged) == read(whole),
               "3 shards merged are byte-identical to one run (--threads %s)" % threads, err)
        report(out.startswith("layer") and "wrote %s from 3 parts" % merged in err,
               "merge prints the layer table on stdout, what it wrote on stderr", out + err)
    layers = [header(p)[0]["__metadata__"]["shard_layers"] for p in parts]
    report(sorted(",".join(layers).split(","), key=int) == [str(i) for i in range(6)]
           and all(len(x.split(",")) == 2 for x in layers),
           "the 6 layers of equal cost are dealt two to each shard", layers)
    # extra tensors are work items too
    pat = "*mlp.down_proj.weight"
    whole = os.path.join(tmp, "wt.st")
    run("analyze", model, "-o", whole, "-q", "-j", "1", "--tensors", pat)
    parts = shards(model, os.path.join(tmp, "t"), 4, "-j", "1", "--tensors", pat)
    merged = os.path.join(tmp, "mt.st")
    rc, _, err = run("merge", *parts, "-o", merged, "-q")
    report(rc == 0 and read(merged) == read(whole),
           "with --tensors, 4 shards merged are byte-identical to one run", err)
    # summaries of the merged file, from --resume (nothing recomputed)
    js, jw = os.path.join(tmp, "m.json"), os.path.join(tmp, "w.json")
    run("analyze", model, "-o", whole, "-q", "-j", "1", "--tensors", pat, "--resume",
        "--json", jw)
    rc, _, err = run("analyze", model, "-o", merged, "-q", "-j", "1", "--tensors", pat,
                     "--resume", "--json", js)
    same = rc == 0 and read(merged) == read(whole) and \
        json.loads(read(js))["matrices"] == json.loads(read(jw))["matrices"]
    report(same, "--resume on a merged file writes its summaries and leaves it unchanged", err)
    return model, [os.path.join(tmp, "p1-%d.st" % i) for i in range(3)]


def test_refusals(tmp, model, parts):
    def refused(args, want, name):
        rc, out, err = run("merge", *args)
        report(rc != 0 and want in err and err.count("\n") == 1 and not out, name, err)

    out = os.path.join(tmp, "r.st")
    shutil.copy(parts[0], out)
    refused(parts + ["-o", out], "exists: force (--force)", "an existing OUT needs --force")
    rc, _, err = run("merge", *parts, "-o", out, "--force", "-q")
    report(rc == 0 and read(out) == read(os.path.join(tmp, "whole1.st")),
           "--force replaces it", err)
    new = os.path.join(tmp, "new.st")
    refused([parts[0], parts[0], parts[1], "-o", new], "are both shard 0/3",
            "a part given twice is named")
    refused(parts[:2] + ["-o", new], "3 parts are needed, 2 given", "a missing part")
    refused([os.path.join(tmp, "whole1.st"), "-o", new], "spectra file of a whole run",
            "the file of a whole run is not a shard")
    other = shards(model, os.path.join(tmp, "o"), 3, "-j", "1", "--stack-norm", "frobenius")
    refused([parts[0], other[1], parts[2], "-o", new], "differ in stack_normalisation",
            "parts of other options are refused, naming the option")
    both = os.path.join(tmp, "both.st")
    l0 = header(parts[0])[0]["__metadata__"]["layers_done"].split(",")[0]
    rewrite_metadata(parts[1], both, layers_done=l0 + "," +
                     header(parts[1])[0]["__metadata__"]["layers_done"])
    refused([parts[0], both, parts[2], "-o", new], "layer %s is in both %s and %s"
            % (l0, parts[0], both), "a layer in two parts is named with both")
    none = os.path.join(tmp, "none.st")
    ld = header(parts[2])[0]["__metadata__"]["layers_done"].split(",")
    rewrite_metadata(parts[2], none, layers_done=",".join(ld[1:]))
    refused([parts[0], parts[1], none, "-o", new], "layer %s is in no part" % ld[0],
            "a layer in no part is named")
    report(not os.path.exists(new), "no refused merge leaves a file")
    rc, _, err = run("analyze", model, "-o", new, "--shard", "3/3")
    report(rc == 2 and "--shard" in err, "--shard 3/3 is a usage error", err)


def test_resume(tmp):
    model = os.path.join(tmp, "stories")
    shutil.copytree(STORIES, model)
    whole = os.path.join(tmp, "sw.st")
    run("analyze", model, "-o", whole, "-q", "-j", "1")
    parts = [os.path.join(tmp, "s%d.st" % i) for i in range(3)]
    for i in (0, 2):
        run("analyze", model, "-o", parts[i], "--shard", "%d/3" % i, "-q", "-j", "1")
    # shard 1 holds layers 1 and 4 (equal costs dealt in turn): a NaN in
    # layer 4 fails it after layer 1
    off, old = poke_nan(model, "model.layers.4.self_attn.q_proj.weight")
    rc, _, err = run("analyze", model, "-o", parts[1], "--shard", "1/3", "-q", "-j", "1")
    meta = header(parts[1])[0]["__metadata__"] if os.path.exists(parts[1]) else {}
    report(rc != 0 and meta.get("layers_done") == "1" and meta.get("complete") == "false",
           "a failed shard keeps its completed layer", err + str(meta.get("layers_done")))
    rc, _, err = run("merge", *parts, "-o", os.path.join(tmp, "sm.st"))
    report(rc != 0 and "is incomplete" in err and "--resume" in err,
           "merge refuses an incomplete part and says how to complete it", err)
    mend(model, off, old)
    rc, _, err = run("analyze", model, "-o", parts[1], "--shard", "1/3", "-q", "-j", "1",
                     "--resume")
    rc2, _, err2 = run("merge", *parts, "-o", os.path.join(tmp, "sm.st"), "-q")
    report(rc == 0 and rc2 == 0 and read(os.path.join(tmp, "sm.st")) == read(whole),
           "--resume completes the shard; the merge is byte-identical to one run", err + err2)
    rc, _, err = run("analyze", model, "-o", parts[1], "--shard", "2/3", "--resume", "-q")
    report(rc != 0 and 'its shard is "1/3"' in err, "--resume refuses another shard", err)


def main():
    tmp = tempfile.mkdtemp(prefix="fasvd-test-shard-")
    try:
        model, parts = test_identical(tmp)
        test_refusals(tmp, model, parts)
        test_resume(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
