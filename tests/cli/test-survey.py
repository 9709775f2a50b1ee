#!/usr/bin/python3
"""CLI tests of `fasvd survey` (TAP output).

usage: test-survey.py PATH/TO/fasvd

Over stories260K (twice, as two checkpoints of one run: names made unique
from their parent folders), a synthetic DeepSeek-V3 model (`fasvd demo`)
and all-MiniLM-L6-v2 when it can be had (tests/reference/real_models.py;
skipped with the reason otherwise): one spectra file per model,
byte-identical to `fasvd analyze`; survey.csv and survey.json hold every row
of every model with its model name and the structural rank bound; a model
that fails (a NaN weight) does not stop the others and the run ends with an
error naming it; the next run skips the models done, resumes the partial
one from its completed layers and gives the tables of an uninterrupted
survey; a survey killed with SIGKILL completes the same way; a progress line
per model on stderr.
"""
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from clitap import FASVD, finish, mend, poke_nan, report, run

HERE = os.path.dirname(os.path.abspath(__file__))
STORIES = os.path.join(HERE, "..", "data", "stories260K")
sys.path.insert(0, os.path.join(HERE, "..", "reference"))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def minilm():
    """The cached (or fetched) MiniLM folder, or the reason it is not there."""
    try:
        import real_models
        cache = os.environ.get("FASVD_MODEL_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "fasvd-test-models")
        return real_models.fetch_minilm(cache), None
    except Exception as e:  # noqa: BLE001 (any reason is a reason to skip)
        return None, str(e)


def tables(d):
    """survey.csv text and survey.json rows of folder d."""
    return read(os.path.join(d, "survey.csv")), \
        json.loads(read(os.path.join(d, "survey.json")))["matrices"]


def setup(tmp):
    for run_name in ("run1", "run2"):
        shutil.copytree(STORIES, os.path.join(tmp, run_name, "checkpoint-100"))
    run("demo", "--dir", os.path.join(tmp, "dsv3"), "--layers", "3")
    models = ["run1/checkpoint-100", "run2/checkpoint-100/", "dsv3/model"]
    names = ["run1_checkpoint-100", "run2_checkpoint-100", "model"]
    ml, why = minilm()
    report(True, "all-MiniLM-L6-v2 in the survey" if ml else
           "all-MiniLM-L6-v2 left out # SKIP %s" % why)
    if ml:
        models.append(ml)
        names.append("all-MiniLM-L6-v2")
    with open(os.path.join(tmp, "list"), "w") as f:
        f.write("# checkpoints of two runs, a synthetic DeepSeek-V3, MiniLM\n\n")
        for m in models:
            f.write("  %s\n" % m)
    return models, names


def test_clean(tmp, models, names):
    rc, out, err = run("survey", "list", "-o", "clean", "-j", "1", "--tau", "0.01,0.25")
    report(rc == 0, "fasvd survey over %d models succeeds" % len(models), err)
    lines = [x for x in err.splitlines() if x.startswith("[")]
    report(len(lines) == len(models) and all(n in lines[i] for i, n in enumerate(names)),
           "one progress line per model on stderr", err)
    same = True
    for m, n in zip(models, names):
        ref = os.path.join(tmp, "ref-%s.st" % n)
        run("analyze", m, "-o", ref, "-q", "-j", "1", "--tau", "0.01,0.25")
        same &= read(ref) == read(os.path.join("clean", n + ".spectra.safetensors"))
    report(same, "each spectra file is byte-identical to fasvd analyze's")
    text, rows = tables("clean")
    table = list(csv.DictReader(io.StringIO(text.decode())))
    cols = ["model", "layer", "kind", "name", "head", "rows", "cols", "max_rank",
            "er@0.01", "er@0.25"]
    report(table and all(c in table[0] for c in cols), "survey.csv has the tidy columns",
           text[:300])
    per_model = {n: sum(1 for _ in csv.DictReader(io.StringIO(
        read(os.path.join("clean", n + ".csv")).decode()))) for n in names}
    got = {n: sum(1 for r in table if r["model"] == n) for n in names}
    report(got == per_model and len(rows) == len(table) and
           all(r["model"] == t["model"] for r, t in zip(rows, table)),
           "survey.csv and survey.json hold every row of every model", (got, per_model))
    dsv3 = [r for r in table if r["model"] == "model" and r["kind"] == "stack"
            and r["name"] == "VO"]
    report(dsv3 and all(int(r["er@0.01"]) <= int(r["max_rank"]) <= int(r["cols"])
                        for r in dsv3), "the rank bound bounds the effective rank", dsv3[:1])
    return text, rows


def test_failure_and_resume(tmp, models, names, clean):
    b = os.path.join(tmp, "run2", "checkpoint-100")
    off, old = poke_nan(b, "model.layers.3.self_attn.q_proj.weight")
    rc, out, err = run("survey", "list", "-o", "res", "-j", "1", "--tau", "0.01,0.25")
    report(rc != 0 and "1 of %d models failed" % len(models) in err and
           "run2/checkpoint-100" in err.splitlines()[-1] and
           os.path.exists(os.path.join("res", "survey.csv")) and
           b"run2_checkpoint-100" not in read(os.path.join("res", "survey.csv")),
           "a failing model does not stop the others; the error names it", err)
    mend(b, off, old)
    rc, out, err = run("survey", "list", "-o", "res", "-j", "1", "--tau", "0.01,0.25")
    lines = [x for x in err.splitlines() if x.startswith("[")]
    report(rc == 0 and "complete already" in lines[0] and "(3 resumed)" in lines[1],
           "the rerun skips the models done and resumes the partial one", err)
    report(tables("res")[0] == clean[0] and tables("res")[1] == clean[1],
           "the resumed survey's tables equal an uninterrupted survey's")
    same = all(read(os.path.join("res", n + ".spectra.safetensors")) ==
               read(os.path.join("clean", n + ".spectra.safetensors")) for n in names)
    report(same, "and so do its spectra files")


def test_kill(clean):
    p = subprocess.Popen([FASVD, "survey", "list", "-o", "killed", "-j", "1", "--tau",
                          "0.01,0.25"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = p.stderr.readline()  # the first model is done
    p.send_signal(signal.SIGKILL)
    p.wait()
    rc, out, err = run("survey", "list", "-o", "killed", "-j", "1", "--tau", "0.01,0.25")
    report(first.startswith(b"[1/") and rc == 0 and "complete already" in err and
           tables("killed")[0] == clean[0],
           "a survey killed with SIGKILL completes on the next run", err)


def test_refusals():
    with open("dup", "w") as f:
        f.write("run1/checkpoint-100\n./run1/checkpoint-100/\n")
    rc, out, err = run("survey", "dup", "-o", "d")
    report(rc != 0 and "listed twice" in err, "a model listed twice is refused", err)
    with open("empty", "w") as f:
        f.write("# nothing\n\n")
    rc, out, err = run("survey", "empty", "-o", "d")
    report(rc == 2 and "lists no model" in err, "an empty list is a usage error", err)


def main():
    tmp = tempfile.mkdtemp(prefix="fasvd-test-survey-")
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        models, names = setup(tmp)
        clean = test_clean(tmp, models, names)
        test_failure_and_resume(tmp, models, names, clean)
        test_kill(clean)
        test_refusals()
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
